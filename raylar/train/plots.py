"""PNG plots of a run: loss and accuracy against time, and the validation confusion matrix."""

import json
from pathlib import Path

import numpy as np

from raylar.geometry import CLASS_SYMBOLS
from raylar.train.metrics import read_worker_csv, worker_csv_path


def plot_run(run_dir: str | Path) -> list[Path]:
    """Draw ``loss_accuracy.png`` and ``confusion_matrix.png`` into ``run_dir`` and return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "metrics.json").read_text())
    rows = read_worker_csv(worker_csv_path(run_dir, 0))
    return [plot_loss_accuracy(rows, summary["history"], run_dir / "loss_accuracy.png"),
            plot_confusion(summary["val_confusion_percent"], summary, run_dir / "confusion_matrix.png")]


def plot_loss_accuracy(rows: list[dict], history: list[dict], path: Path) -> Path:
    """Plot the allreduced training loss and accuracy per step and the validation figures against time."""
    import matplotlib.pyplot as plt

    # After a worker failure the steps since the last checkpoint are trained again; keep the last
    # attempt's row of every step, because the earlier updates were discarded.
    rows = sorted({row["step"]: row for row in rows}.values(), key=lambda row: row["step"])
    times = np.array([row["time_s"] for row in rows])
    loss = np.array([row["global_loss"] for row in rows])
    accuracy = np.array([row["global_accuracy"] for row in rows])
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(11, 4))
    loss_axes.plot(times, loss, ".", markersize=3, alpha=0.4, label="training (allreduced batch)")
    accuracy_axes.plot(times, accuracy, ".", markersize=3, alpha=0.4, label="training (allreduced batch)")
    if history:
        val_times = [entry["elapsed_s"] for entry in history]
        loss_axes.plot(val_times, [entry["val_loss"] for entry in history], "o-", label="validation")
        accuracy_axes.errorbar(val_times, [entry["val_accuracy"] for entry in history],
                               yerr=[entry["val_accuracy_err"] for entry in history], fmt="o-", label="validation")
    loss_axes.set(xlabel="elapsed time [s]", ylabel="cross-entropy loss", title="loss")
    accuracy_axes.set(xlabel="elapsed time [s]", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    accuracy_axes.axhline(0.2, color="grey", linestyle=":", label="chance (5 classes)")
    loss_axes.legend()
    accuracy_axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_confusion(percent: list[list[float]], summary: dict, path: Path) -> Path:
    """Plot the confusion matrix in percent of the true class, as in the published tables."""
    import matplotlib.pyplot as plt

    matrix = np.asarray(percent, dtype=float)
    figure, axes = plt.subplots(figsize=(5.5, 4.8))
    image = axes.imshow(matrix, cmap="Blues", vmin=0, vmax=100)
    for true in range(matrix.shape[0]):
        for predicted in range(matrix.shape[1]):
            color = "white" if matrix[true, predicted] > 60 else "black"
            axes.text(predicted, true, f"{matrix[true, predicted]:.1f}", ha="center", va="center", color=color)
    ticks = range(len(CLASS_SYMBOLS))
    axes.set_xticks(ticks, CLASS_SYMBOLS)
    axes.set_yticks(ticks, CLASS_SYMBOLS)
    axes.set(xlabel="predicted class", ylabel="true class")
    axes.set_title(f"validation accuracy {summary['val_accuracy']:.3f} ± {summary['val_accuracy_err']:.3f} "
                   f"({summary['val_events']} events)", fontsize=9)
    figure.colorbar(image, ax=axes, label="% of true class")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
