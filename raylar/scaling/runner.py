"""Check a scaling study against the cluster, run it, and record each run in MLflow."""

import json
import time
from pathlib import Path

from raylar.log import get_logger
from raylar.scaling.study import (
    ScalingError,
    WorkerCountRun,
    config_for,
    measure_run,
)
from raylar.train.config import TrainConfig

logger = get_logger(__name__)

# MLflow accepts at most 1000 metrics in one log_batch call.
MLFLOW_BATCH = 1000


def check_cluster(counts: list[int], config: TrainConfig) -> None:
    """Fix the per-worker resources for the largest count; raise ``ScalingError`` if it never fits.

    Every run then reserves the same CPUs (or one GPU) per worker, so a
    1-worker run does not get the whole machine while a 2-worker run shares it.
    """
    from raylar.train.resources import ResourceRequestError, plan_workers

    try:
        plan = plan_workers(
            max(counts),
            use_gpu=config.backend.use_gpu,
            cpus_per_worker=config.backend.cpus_per_worker,
        )
    except ResourceRequestError as error:
        raise ScalingError(
            f"worker count {max(counts)} is larger than the cluster allows: {error}"
        ) from None
    config.backend.use_gpu = plan.use_gpu
    config.backend.cpus_per_worker = plan.cpus_per_worker


def count_events(config: TrainConfig) -> int:
    if config.data.path is not None:
        from raylar.sim.eventfile import count_events as count_file_events

        return count_file_events(config.data.path)
    return config.data.simulate


def prepare_events(config: TrainConfig, output: Path) -> None:
    """Simulate the study's events once into ``output/events.h5``, so every run reads the same file."""
    if config.data.path is not None:
        return
    from raylar.train.__main__ import simulate_to_file

    run_output = config.run.output
    config.run.output = str(output)
    simulate_to_file(config)
    config.run.output = run_output


class StudyTracker:
    """One MLflow experiment for the study, one MLflow run per worker count."""

    def __init__(self, tracking_uri: str, experiment: str, study_id: str, artifact_dir: Path | None = None):
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.study_id = study_id
        found = self.client.get_experiment_by_name(experiment)
        artifact_location = None
        if artifact_dir is not None and tracking_uri.startswith("sqlite:///"):
            # Without it MLflow puts a SQLite store's artifacts in ./mlruns of the current directory.
            artifact_location = Path(artifact_dir).resolve().as_uri()
        self.experiment_id = (
            found.experiment_id
            if found
            else self.client.create_experiment(experiment, artifact_location=artifact_location)
        )

    def start(self, workers: int, config: TrainConfig) -> str:
        from raylar.tracking import git_commit, param_values, software_versions

        tags = {
            "raylar.study": self.study_id,
            "raylar.world_size": str(workers),
            "raylar.model": config.model.name,
            "raylar.backend": config.backend.name,
            "raylar.downsample": str(config.data.downsample),
            "raylar.git_commit": git_commit(),
            **software_versions(),
        }
        run = self.client.create_run(self.experiment_id, run_name=f"workers-{workers}", tags=tags)
        run_id = run.info.run_id
        params = param_values(config.to_dict())
        from mlflow.entities import Param

        items = [Param(key, value[:6000]) for key, value in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start : start + 100])
        return run_id

    def finish(self, run_id: str, run: WorkerCountRun) -> None:
        """Log the per-step curves, the study's figures of this run, and its files."""
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        metrics = []
        for row in run.rank0:
            step = int(row["step"])
            for key, column in (
                ("loss", "global_loss"),
                ("accuracy", "global_accuracy"),
                ("elapsed_s", "time_s"),
            ):
                value = row[column]
                if value == value:  # skip NaN
                    metrics.append(Metric(key, float(value), now_ms, step))
        figures = {
            "throughput": run.throughput,
            "time_per_epoch_s": run.time_per_epoch_s,
            "dlt_s": run.dlt_s,
            "time_to_target_s": run.time_to_target_s,
            "val_accuracy": run.summary.get("val_accuracy"),
            "val_accuracy_err": run.summary.get("val_accuracy_err"),
            "val_loss": run.summary.get("val_loss"),
        }
        for key, value in figures.items():
            if isinstance(value, int | float) and value == value:
                metrics.append(Metric(key, float(value), now_ms, 0))
        for start in range(0, len(metrics), MLFLOW_BATCH):
            self.client.log_batch(run_id, metrics=metrics[start : start + MLFLOW_BATCH])
        for path in sorted(run.run_dir.glob("*.png")) + sorted(run.run_dir.glob("*.json")):
            self.client.log_artifact(run_id, str(path))
        workers_dir = run.run_dir / "workers"
        if workers_dir.is_dir():
            self.client.log_artifacts(run_id, str(workers_dir), artifact_path="workers")
        self.client.set_tag(run_id, "raylar.status", str(run.summary.get("status")))
        self.client.set_terminated(run_id, "FINISHED")

    def fail(self, run_id: str, error: BaseException) -> None:
        self.client.set_tag(run_id, "raylar.error", str(error)[:5000])
        self.client.set_terminated(run_id, "FAILED")


def run_study(
    counts: list[int], config: TrainConfig, output: Path, tracker: StudyTracker
) -> list[WorkerCountRun]:
    """Train once per worker count, in increasing order, and return the measured runs."""
    from raylar.train.backends import run_training

    runs = []
    for workers in counts:
        run_config = config_for(config, workers, output)
        logger.info("scaling study: run with %d worker(s) into %s", workers, run_config.run.output)
        run_id = tracker.start(workers, run_config)
        try:
            summary = run_training(run_config)
            run = measure_run(workers, run_config.run.output, summary)
        except BaseException as error:
            tracker.fail(run_id, error)
            raise
        run.mlflow_run_id = run_id
        tracker.finish(run_id, run)
        runs.append(run)
        logger.info(
            "%d worker(s): %.1f images/s, %.1f s per epoch%s, DLT %.2f s, status %s",
            workers,
            run.throughput,
            run.time_per_epoch_s,
            "" if run.epoch_time_measured else " (estimated)",
            run.dlt_s,
            summary.get("status"),
        )
    return runs


def write_study_json(runs: list[WorkerCountRun], ratios: dict, path: Path) -> None:
    records = []
    for run in runs:
        records.append(
            {
                "workers": run.workers,
                "run_dir": str(run.run_dir),
                "mlflow_run_id": run.mlflow_run_id,
                "throughput": run.throughput,
                "time_per_epoch_s": run.time_per_epoch_s,
                "epoch_time_measured": run.epoch_time_measured,
                "dlt_s": run.dlt_s,
                "time_to_target_s": run.time_to_target_s,
                "status": run.summary.get("status"),
                "val_accuracy": run.summary.get("val_accuracy"),
                "val_accuracy_err": run.summary.get("val_accuracy_err"),
                **ratios[run.workers],
            }
        )
    path.write_text(json.dumps({"runs": records}, indent=2, default=float))
