"""Time the default sweep (``python -m raylar.tune``, quickstart profile) end to end.

Runs the sweep command as a user would, in a fresh output folder, then reads
its MLflow store: wall time, trials and how each ended, time per trial, the
best validation accuracy, and how many metric values MLflow stores per run.
Writes ``benchmarks/results/bench_tune.json``.

    .venv/bin/python benchmarks/bench_tune.py [--profile quickstart] [--object-store-gb 1]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow

RESULTS = Path(__file__).resolve().parent / "results" / "bench_tune.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quickstart", help="run profile to time (default quickstart)")
    parser.add_argument("--object-store-gb", type=float, default=1.0, help="object store size of the local Ray cluster, in GB (default 1)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_tune_") as folder:
        output = Path(folder) / "out"
        command = [
            sys.executable, "-m", "raylar.tune", "--profile", args.profile, "--output", str(output),
            "--name", "bench", "--object-store-gb", str(args.object_store_gb),
        ]  # fmt: skip
        start = time.perf_counter()
        finished = subprocess.run(command, capture_output=True, text=True)
        wall_s = time.perf_counter() - start
        if finished.returncode != 0:
            print(finished.stdout[-3000:], finished.stderr[-3000:], file=sys.stderr)
            return finished.returncode

        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{output / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("bench")
        runs = client.search_runs([experiment.experiment_id])
        trials = []
        for run in runs:
            history = client.get_metric_history(run.info.run_id, "loss")
            trials.append({
                "run_name": run.info.run_name,
                "status": run.data.tags.get("raylar.status"),
                "lr": float(run.data.params.get("optimizer.lr", "nan")),
                "elapsed_s": run.data.metrics.get("elapsed_s"),
                "wall_s": (run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else None,
                "val_accuracy": run.data.metrics.get("val_accuracy"),
                "loss_values_logged": len(history),
            })  # fmt: skip

    result = {
        "command": " ".join(["python -m raylar.tune", "--profile", args.profile]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "sweep_wall_s": round(wall_s, 1),
        "trials": sorted(trials, key=lambda trial: trial["run_name"]),
        "statuses": {status: sum(t["status"] == status for t in trials) for status in {t["status"] for t in trials}},
        "best_val_accuracy": max((t["val_accuracy"] or 0.0) for t in trials) if trials else None,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
