"""Run the same training at several worker counts and measure how it scales.

Every run of a study uses the same events, seed, per-worker batch size and
per-worker resources (CPUs, or one GPU each); only the number of workers
changes. Each run is an MLflow run in one experiment, and
``raylar.scaling.figures`` turns the runs into the study's figures.
"""

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from raylar.log import get_logger
from raylar.train.config import TrainConfig
from raylar.train.metrics import read_worker_csv, worker_csv_path

logger = get_logger(__name__)


class ScalingError(ValueError):
    """A scaling study that cannot run, found before any training starts."""


def parse_worker_counts(text: str) -> list[int]:
    """Parse ``"1,2,4"`` into sorted worker counts; raise ``ScalingError`` for an empty or malformed list."""
    items = [item.strip() for item in str(text).split(",")]
    if not any(items):
        raise ScalingError("empty worker list; give worker counts such as --workers 1,2,4")
    counts = []
    for item in items:
        if not item.isdigit() or int(item) < 1:
            raise ScalingError(
                f"invalid worker count {item!r} in --workers {text!r}: each count must be a "
                "positive integer, separated by commas, such as --workers 1,2,4"
            )
        if int(item) in counts:
            raise ScalingError(
                f"worker count {int(item)} appears twice in --workers {text!r}; list each count once"
            )
        counts.append(int(item))
    return sorted(counts)


def check_shards(num_events: int, val_fraction: float, batch_size: int, max_workers: int) -> None:
    """Raise ``ScalingError`` when the largest worker count leaves a shard smaller than one batch.

    The validation split rounds per class, so this counts the training
    events low by up to one per class. The training run repeats the check
    with the exact split.
    """
    train_events = num_events - math.ceil(num_events * val_fraction) - 5
    shard = train_events // max_workers
    if shard < batch_size:
        raise ScalingError(
            f"{max_workers} workers would get about {max(shard, 0)} training events each, fewer than the "
            f"per-worker batch size {batch_size}; use more events, a smaller --batch-size or fewer workers"
        )


def config_for(base: TrainConfig, workers: int, output: Path) -> TrainConfig:
    """Return the base configuration with ``workers`` workers, writing to ``output/workers-N``."""
    config = copy.deepcopy(base)
    config.backend.workers = workers
    config.run.output = str(output / f"workers-{workers}")
    return config


@dataclass
class WorkerCountRun:
    """The measured figures of one training run of the study."""

    workers: int
    run_dir: Path
    summary: dict
    rows: dict[int, list[dict]] = field(repr=False)
    throughput: float = math.nan  # images per second, all workers together
    time_per_epoch_s: float = math.nan
    epoch_time_measured: bool = False  # False: estimated from the throughput
    dlt_s: float = math.nan
    train_events: int = 0
    mlflow_run_id: str | None = None

    @property
    def time_to_target_s(self) -> float:
        value = self.summary.get("time_to_target_s")
        return math.nan if value is None else float(value)

    @property
    def global_batch(self) -> int:
        return self.workers * int(self.summary["config"]["run"]["batch_size"])

    @property
    def rank0(self) -> list[dict]:
        return self.rows[0]


def measure_run(workers: int, run_dir: str | Path, summary: dict) -> WorkerCountRun:
    """Read a finished run's worker CSVs and ``metrics.json`` into a ``WorkerCountRun``.

    Throughput is the sum over workers of each worker's median images per
    second, which leaves out the slow first steps. The time per epoch is the
    wall-clock span of the slowest worker, averaged over finished epochs.
    When no epoch finished within the budget, it is estimated as the
    training events divided by the throughput.
    """
    run_dir = Path(run_dir)
    rows = {}
    for rank in range(workers):
        path = worker_csv_path(run_dir, rank)
        if not path.is_file():
            raise ScalingError(
                f"the run in {run_dir} has no per-batch log for rank {rank} ({path})"
            )
        rows[rank] = read_worker_csv(path)
    store = summary.get("store", {})
    run = WorkerCountRun(workers=workers, run_dir=run_dir, summary=summary, rows=rows)
    run.dlt_s = float(store.get("dlt_s", math.nan))
    run.train_events = int(summary.get("train_events") or _train_events(run_dir, summary))
    rates = [
        np.median([row["images_per_s"] for row in worker_rows])
        for worker_rows in rows.values()
        if worker_rows
    ]
    run.throughput = float(np.sum(rates)) if len(rates) == workers else math.nan

    finished = [
        entry["epoch"] for entry in summary.get("history", []) if entry.get("epoch_finished")
    ]
    spans = [_epoch_span(rows, epoch) for epoch in finished]
    spans = [span for span in spans if span > 0]
    if spans:
        run.time_per_epoch_s = float(np.mean(spans))
        run.epoch_time_measured = True
    elif run.throughput > 0 and run.train_events:
        run.time_per_epoch_s = run.train_events / run.throughput
    return run


def _epoch_span(rows: dict[int, list[dict]], epoch: int) -> float:
    """Return the wall-clock time the slowest worker spent on the batches of ``epoch``."""
    spans = []
    for worker_rows in rows.values():
        epoch_rows = [row for row in worker_rows if row["epoch"] == epoch]
        if epoch_rows:
            start = min(row["time_s"] - row["step_s"] for row in epoch_rows)
            spans.append(max(row["time_s"] for row in epoch_rows) - start)
    return max(spans) if spans else math.nan


def _train_events(run_dir: Path, summary: dict) -> int:
    import json

    store_file = run_dir / "store.json"
    if store_file.is_file():
        return int(json.loads(store_file.read_text()).get("train_events", 0))
    return 0


def speedups(runs: list[WorkerCountRun]) -> dict[int, dict]:
    """Return, per worker count, throughput and epoch-time ratios to the smallest count.

    ``efficiency`` is the measured speed-up divided by the ideal one,
    (throughput(n) / throughput(n0)) / (n / n0), where n0 is the smallest count.
    """
    base = runs[0]
    result = {}
    for run in runs:
        ideal = run.workers / base.workers
        speedup = run.throughput / base.throughput if base.throughput else math.nan
        result[run.workers] = {
            "speedup": speedup,
            "efficiency": speedup / ideal,
            "epoch_time_ratio": run.time_per_epoch_s / base.time_per_epoch_s
            if base.time_per_epoch_s
            else math.nan,
        }
    return result
