"""Command line: ``python -m raylar.scaling --workers 1,2,4 --model jishnet --budget 10m``."""

import argparse
import json
import sys
from pathlib import Path

import raylar  # noqa: F401 - selects Ray Train V1 before ray.train is imported
from raylar.log import get_logger
from raylar.scaling.runner import count_events
from raylar.scaling.study import ScalingError, check_shards, parse_worker_counts, speedups
from raylar.train.config import BACKENDS, MODELS, ConfigError, TrainConfig, parse_duration

logger = get_logger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m raylar.scaling",
        description=(
            "Run the same training at several worker counts (same events, seed, per-worker batch size "
            "and per-worker resources), log each run to one MLflow experiment, and write the scaling "
            "figures and a Markdown summary table."
        ),
    )
    parser.add_argument(
        "--workers", required=True, help="comma-separated worker counts, such as 1,2,4"
    )
    parser.add_argument("--model", choices=MODELS, help="network to train (default: the profile's)")
    parser.add_argument(
        "--budget",
        help="wall-clock budget of each run, such as 10m, 1h or 90s (default: the profile's)",
    )
    parser.add_argument(
        "--profile",
        default="quickstart",
        help="run profile from search_spaces/ (quickstart, summitdev) or a YAML file; its training section is the base configuration",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", help="raylar HDF5 event file to train on")
    source.add_argument(
        "--simulate", type=int, help="simulate this many events once, shared by every run"
    )
    parser.add_argument(
        "--downsample", type=int, help="integer factor that shrinks the 3600 x 3600 image"
    )
    parser.add_argument(
        "--batch-size", type=int, help="events per batch on each worker, the same at every count"
    )
    parser.add_argument("--epochs", type=int, help="maximum epochs of each run")
    parser.add_argument("--seed", type=int, help="seed of the events, the split and the shuffles")
    parser.add_argument(
        "--backend", choices=BACKENDS, help="distributed backend (default: the profile's)"
    )
    parser.add_argument(
        "--cpus-per-worker",
        type=float,
        help="CPUs each worker reserves at every count (default: the cluster's CPUs / the largest count)",
    )
    parser.add_argument(
        "--output",
        help="folder for the runs, figures and summary; must be new or empty (default runs/scaling-MODEL)",
    )
    parser.add_argument("--experiment", help="MLflow experiment name (default scaling-MODEL)")
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else SQLite in the output folder)",
    )
    parser.add_argument(
        "--address", help="Ray cluster address (default: RAY_ADDRESS, else a new local cluster)"
    )
    return parser


def base_config(args: argparse.Namespace) -> TrainConfig:
    """Return the profile's training configuration with the command-line values applied."""
    from raylar.tune.profiles import load_profile
    from raylar.tune.space import SearchSpaceError

    try:
        values = load_profile(args.profile).train
    except SearchSpaceError as error:
        raise ConfigError(str(error)) from None
    config = TrainConfig.from_dict(values)
    overrides = {
        ("model", "name"): args.model,
        ("data", "downsample"): args.downsample,
        ("data", "seed"): args.seed,
        ("run", "batch_size"): args.batch_size,
        ("run", "epochs"): args.epochs,
        ("run", "budget_s"): parse_duration(args.budget) if args.budget is not None else None,
        ("backend", "name"): args.backend,
        ("backend", "cpus_per_worker"): args.cpus_per_worker,
    }
    for (section, key), value in overrides.items():
        if value is not None:
            setattr(getattr(config, section), key, value)
    if args.data:
        config.data.path, config.data.simulate = args.data, 0
    if args.simulate is not None:
        config.data.path, config.data.simulate = None, args.simulate
    return config


def check_output(output: Path) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ScalingError(
            f"output folder {output} already exists and is not empty; choose a new --output"
        )


def main(argv: list[str] | None = None) -> int:
    from raylar.tracking import TrackingError, check_tracking_store, resolve_tracking_uri

    args = build_parser().parse_args(argv)
    try:
        counts = parse_worker_counts(args.workers)
        config = base_config(args)
        config.validate()
        output = Path(args.output or f"runs/scaling-{config.model.name}").resolve()
        check_output(output)
        check_shards(
            count_events(config), config.data.val_fraction, config.run.batch_size, max(counts)
        )
        tracking_uri = resolve_tracking_uri(args.tracking_uri, output)
        check_tracking_store(tracking_uri)
    except (ScalingError, ConfigError, TrackingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    import ray

    from raylar.cluster import start_ray
    from raylar.scaling.figures import summary_markdown, write_figures
    from raylar.scaling.runner import (
        StudyTracker,
        check_cluster,
        prepare_events,
        run_study,
        write_study_json,
    )

    start_ray(address=args.address, object_store_memory=1024**3 if not args.address else None)
    try:
        check_cluster(counts, config)
        output.mkdir(parents=True, exist_ok=True)
        prepare_events(config, output)
        experiment = args.experiment or f"scaling-{config.model.name}"
        tracker = StudyTracker(tracking_uri, experiment, study_id=str(output), artifact_dir=output / "mlartifacts")
        runs = run_study(counts, config, output, tracker)
    except (ScalingError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        ray.shutdown()

    ratios = speedups(runs)
    for run in runs:
        tracker.client.log_batch(run.mlflow_run_id, metrics=_ratio_metrics(ratios[run.workers]))
    figures = write_figures(runs, ratios, output)
    title = f"Scaling study: {config.model.name}, workers {', '.join(map(str, counts))}"
    (output / "summary.md").write_text(summary_markdown(runs, ratios, title))
    write_study_json(runs, ratios, output / "study.json")
    (output / "tracking.json").write_text(
        json.dumps(
            {
                "tracking_uri": tracking_uri,
                "experiment": experiment,
                "experiment_id": tracker.experiment_id,
            },
            indent=2,
        )
    )
    print(f"scaling study of {config.model.name} at {', '.join(map(str, counts))} workers:")
    for run in runs:
        ratio = ratios[run.workers]
        print(
            f"  {run.workers} worker(s): {run.throughput:.1f} images/s, efficiency {ratio['efficiency']:.2f}, "
            f"{run.time_per_epoch_s:.1f} s per epoch, status {run.summary.get('status')}"
        )
    print(f"figures: {', '.join(path.name for path in figures)}; summary: {output / 'summary.md'}")
    print(f"MLflow: experiment {experiment!r} in {tracking_uri}")
    return 0


def _ratio_metrics(ratio: dict) -> list:
    import time

    from mlflow.entities import Metric

    now_ms = int(time.time() * 1000)
    return [Metric(key, float(value), now_ms, 0) for key, value in ratio.items() if value == value]


if __name__ == "__main__":
    sys.exit(main())
