"""Measure training throughput with 1 and 2 Horovod workers on the same events.

Writes benchmarks/results/bench_train.json with, for each run, the global
images per second and the fractions of step time spent waiting for data and in
allreduce, and the scaling efficiency median rate(2) / (2 x median rate(1))
over interleaved rounds. Every
worker reserves one CPU and runs one torch thread, so on a 2-core machine each
worker has its own core. The first steps of each run (start-up) are excluded.

    .venv/bin/python benchmarks/bench_train.py --events 400 --model jishnet
"""

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import raylar  # noqa: F401 - selects Ray Train V1 before ray.train is imported
from raylar.log import get_logger

logger = get_logger("raylar.benchmarks.train")
RESULTS = Path(__file__).parent / "results" / "bench_train.json"


def step_figures(run_dir: Path, world_size: int, skip_steps: int) -> dict:
    """Sum the per-step times of all workers' CSVs, after the first ``skip_steps`` steps."""
    from raylar.train.metrics import read_worker_csv, worker_csv_path

    per_rank = [read_worker_csv(worker_csv_path(run_dir, rank))[skip_steps:] for rank in range(world_size)]
    steps = min(len(rows) for rows in per_rank)
    if steps == 0:
        raise RuntimeError(f"no steps left after skipping {skip_steps}; give more --events or fewer --skip-steps")
    totals = {key: 0.0 for key in ("step_s", "data_wait_s", "forward_s", "backward_s", "allreduce_s", "optimizer_s")}
    for rows in per_rank:
        for row in rows[:steps]:
            for key in totals:
                totals[key] += row[key]
    images = sum(row["batch_size"] for rows in per_rank for row in rows[:steps])
    # Workers step in lockstep (every step ends with an allreduce), so the wall time of the
    # measured steps is the mean over workers of their summed step times.
    wall_s = totals["step_s"] / world_size
    return {
        "workers": world_size,
        "steps": steps,
        "images": int(images),
        "images_per_s": images / wall_s,
        "step_s_median": float(np.median([row["step_s"] for row in per_rank[0][:steps]])),
        "data_wait_fraction": totals["data_wait_s"] / totals["step_s"],
        "allreduce_fraction": totals["allreduce_s"] / totals["step_s"],
        "forward_fraction": totals["forward_s"] / totals["step_s"],
        "backward_fraction": totals["backward_s"] / totals["step_s"],
        "optimizer_fraction": totals["optimizer_s"] / totals["step_s"],
    }


def parse_model_options(parser: argparse.ArgumentParser, pairs: list[str]) -> dict:
    """Turn ``NAME=VALUE`` pairs into model options, reading each value as YAML."""
    import yaml

    options = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name:
            parser.error(f"invalid --model-option {pair!r}: expected NAME=VALUE, e.g. fused_first_block=true")
        options[name] = yaml.safe_load(value)
    return options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=400, help="simulated training events (default 400)")
    parser.add_argument("--downsample", type=int, default=9, help="image downsampling factor (default 9)")
    parser.add_argument("--model", default="jishnet", choices=["jishnet", "scnet"])
    parser.add_argument("--backend", default="horovod", choices=["horovod", "torch"],
                        help="distributed backend (default horovod)")
    parser.add_argument("--batch-size", type=int, default=8, help="events per batch per worker (default 8)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run (default 1)")
    parser.add_argument("--skip-steps", type=int, default=3, help="start-up steps left out (default 3)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of (1 worker, 2 workers), interleaved so both see similar load (default 2)")
    parser.add_argument("--model-option", action="append", default=[], metavar="NAME=VALUE",
                        help="model option, repeatable, e.g. fused_first_block=true (YAML values)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    model_options = parse_model_options(parser, args.model_option)

    import ray

    from raylar.cluster import start_ray
    from raylar.data import EventStore, SimulatedSource
    from raylar.train.backends import run_training
    from raylar.train.collective import horovod_cycle_time
    from raylar.train.config import TrainConfig

    start_ray(address="local", num_cpus=2, object_store_memory=512 * 1024**2)
    workdir = Path(tempfile.mkdtemp(prefix="bench_train_"))
    try:
        # A tiny validation set: the benchmark measures training steps only.
        source = SimulatedSource(args.events, seed=11, sim_config={"downsample": args.downsample})
        store = EventStore.load(source, val_fraction=0.02, seed=11)
        runs = []
        for round_index, workers in [(r, w) for r in range(args.rounds) for w in (1, 2)]:
            config = TrainConfig()
            config.data.simulate = args.events
            config.data.downsample = args.downsample
            config.data.val_fraction = 0.02
            config.model.name = args.model
            config.model.options = dict(model_options)
            config.run.epochs = args.epochs
            config.run.batch_size = args.batch_size
            config.run.output = str(workdir / f"round{round_index}-workers{workers}")
            config.backend.name = args.backend
            config.backend.workers = workers
            config.backend.cpus_per_worker = 1
            started = time.perf_counter()
            summary = run_training(config, store=store)
            figures = step_figures(Path(config.run.output), workers, args.skip_steps)
            figures["run_wall_s"] = time.perf_counter() - started
            figures["status"] = summary["status"]
            figures["round"] = round_index
            runs.append(figures)
            logger.info("%d worker(s): %.1f images/s, data wait %.1f %%, allreduce %.1f %%", workers,
                        figures["images_per_s"], 100 * figures["data_wait_fraction"],
                        100 * figures["allreduce_fraction"])
        rates = {workers: [run["images_per_s"] for run in runs if run["workers"] == workers] for workers in (1, 2)}
        round_efficiency = [two / (2 * one) for one, two in zip(rates[1], rates[2], strict=True)]
        efficiency = float(np.median(rates[2]) / (2 * np.median(rates[1])))
        result = {
            "benchmark": "bench_train",
            "machine": {"node": platform.node(), "processor": platform.processor() or platform.machine(),
                        "cpus": ray.cluster_resources().get("CPU")},
            "command": "benchmarks/bench_train.py " + " ".join(
                f"--{key.replace('_', '-')} {value}" for key, value in vars(args).items()
                if key not in ("output", "model_option")) + "".join(
                f" --model-option {pair}" for pair in args.model_option),
            "model": args.model,
            "backend": args.backend,
            # what the CPU workers' HorovodCollective sets, or the exported variable
            "horovod_cycle_time_ms": (horovod_cycle_time(None, use_gpu=False)
                                      or float(os.environ["HOROVOD_CYCLE_TIME"]))
            if args.backend == "horovod" else None,
            "model_options": model_options,
            "image_size": 3600 // args.downsample,
            "batch_size_per_worker": args.batch_size,
            "training_events": len(store.train),
            "runs": runs,
            "median_images_per_s": {str(workers): float(np.median(values)) for workers, values in rates.items()},
            "scaling_efficiency": efficiency,
            "scaling_efficiency_per_round": round_efficiency,
            "targets": {"data_wait_fraction_below": 0.05, "scaling_efficiency_at_least": 0.9},
            "meets_targets": {
                "data_wait": all(run["data_wait_fraction"] < 0.05 for run in runs),
                "efficiency": efficiency >= 0.9,
            },
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
    finally:
        ray.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
