"""Per-batch logs, running figures and validation statistics of a training run."""

import csv
import math
import os
from collections import deque
from pathlib import Path

import numpy as np

from raylar.geometry import NUM_CLASSES

# Columns of every worker's per-batch CSV. Times are seconds; `loss` and
# `accuracy` are this worker's local values, `global_loss` and
# `global_accuracy` the allreduced means over all workers at the same step.
CSV_COLUMNS = (
    "attempt",
    "epoch",
    "batch",
    "step",
    "time_s",
    "batch_size",
    "loss",
    "accuracy",
    "global_loss",
    "global_accuracy",
    "lr",
    "data_wait_s",
    "forward_s",
    "backward_s",
    "allreduce_s",
    "optimizer_s",
    "step_s",
    "images_per_s",
)


def worker_csv_path(run_dir: str | Path, rank: int) -> Path:
    return Path(run_dir) / "workers" / f"rank{rank}.csv"


class WorkerLog:
    """Append-only per-batch CSV of one worker; flushed every row so a killed worker loses none."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        is_new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=CSV_COLUMNS)
        if is_new:
            self._writer.writeheader()
            self._file.flush()

    def write(self, row: dict) -> None:
        self._writer.writerow({key: row.get(key, "") for key in CSV_COLUMNS})
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_worker_csv(path: str | Path) -> list[dict]:
    """Read a worker CSV back as a list of dicts with numbers converted to float."""
    rows = []
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            rows.append({key: float(value) if value != "" else math.nan for key, value in row.items()})
    return rows


def record_attempt(run_dir: str | Path, rank: int) -> int:
    """Append this worker's process id to its pid file and return the attempt number (0, 1, ...).

    Ray Train restarts every worker after a failure, so the number of lines
    already in the file is how many times this rank has started before. Tests
    read the file to find a worker process to kill.
    """
    path = Path(run_dir) / "pids" / f"rank{rank}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    attempt = len(path.read_text().splitlines()) if path.exists() else 0
    with open(path, "a") as file:
        file.write(f"{os.getpid()}\n")
    return attempt


class RunningWindow:
    """Sums over the last ``size`` steps of a few named quantities."""

    def __init__(self, size: int):
        self.rows = deque(maxlen=size)

    def add(self, **values: float) -> None:
        self.rows.append(values)

    def mean(self, key: str) -> float:
        return float(np.mean([row[key] for row in self.rows])) if self.rows else math.nan

    def total(self, key: str) -> float:
        return float(sum(row[key] for row in self.rows))

    def __len__(self) -> int:
        return len(self.rows)


def binomial_error(correct: int, total: int) -> float:
    """Return the standard error of an accuracy ``correct / total``: sqrt(p (1 - p) / n).

    This is the normal approximation to the binomial distribution of the
    number of correct predictions among ``total`` independent events. It is
    zero when p is 0 or 1, where a Wilson interval would be the better figure.
    """
    if total <= 0:
        return math.nan
    p = correct / total
    return math.sqrt(p * (1.0 - p) / total)


def confusion_counts(true_labels, predicted_labels, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Return the (true, predicted) count matrix of integer labels."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(true_labels, dtype=np.int64), np.asarray(predicted_labels, dtype=np.int64)), 1)
    return counts


def validation_summary(counts: np.ndarray, loss_sum: float) -> dict:
    """Turn summed confusion counts and summed loss into the validation figures.

    The confusion matrix in the result is in percent of the true class (each
    row sums to 100, or is zero for a class with no events); per-class
    accuracy is its diagonal divided by 100.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    correct = int(np.trace(counts))
    per_true = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        percent = np.where(per_true[:, None] > 0, 100.0 * counts / np.maximum(per_true[:, None], 1), 0.0)
        per_class = np.where(per_true > 0, np.diag(counts) / np.maximum(per_true, 1), math.nan)
    return {
        "val_loss": loss_sum / total if total else math.nan,
        "val_accuracy": correct / total if total else math.nan,
        "val_accuracy_err": binomial_error(correct, total),
        "val_events": total,
        "val_per_class_accuracy": [float(value) for value in per_class],
        "val_confusion_percent": percent.round(3).tolist(),
        "val_confusion_counts": counts.tolist(),
    }
