"""The figures and the summary table of a scaling study, from its measured runs."""

import math
from pathlib import Path

import numpy as np

from raylar.geometry import CLASS_SYMBOLS
from raylar.scaling.study import WorkerCountRun

FIGURE_NAMES = (
    "throughput.png",
    "epoch_time.png",
    "loss_vs_time.png",
    "accuracy_vs_time.png",
    "confusion_matrix.png",
)
# Steps in the running mean that smooths the per-step loss and accuracy curves.
SMOOTHING_STEPS = 5


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def running_mean(values: np.ndarray, steps: int = SMOOTHING_STEPS) -> np.ndarray:
    """Return the mean over the last ``steps`` values at each point (fewer at the start)."""
    values = np.asarray(values, dtype=float)
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, values.size + 1), steps)
    return (sums[1:] - sums[np.arange(values.size) + 1 - counts]) / counts


def write_figures(runs: list[WorkerCountRun], ratios: dict, folder: Path) -> list[Path]:
    """Draw every figure of the study into ``folder`` and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        plot_throughput(runs, folder / "throughput.png"),
        plot_epoch_time(runs, ratios, folder / "epoch_time.png"),
        plot_loss(runs, folder / "loss_vs_time.png"),
        plot_accuracy(runs, folder / "accuracy_vs_time.png"),
        plot_confusion_tables(runs, folder / "confusion_matrix.png"),
    ]


def plot_throughput(runs: list[WorkerCountRun], path: Path) -> Path:
    """Plot throughput against workers, with the ideal line through the smallest count."""
    plt = _pyplot()
    workers = np.array([run.workers for run in runs])
    rates = np.array([run.throughput for run in runs])
    figure, axes = plt.subplots(figsize=(5.5, 4))
    axes.plot(workers, rates[0] * workers / workers[0], "--", color="gray", label="ideal (linear)")
    axes.plot(workers, rates, "o-", label="measured")
    for count, rate in zip(workers, rates, strict=True):
        axes.annotate(
            f"{rate:.1f}", (count, rate), textcoords="offset points", xytext=(4, -12), fontsize=8
        )
    axes.set_xlabel("workers")
    axes.set_ylabel("throughput (images / s, all workers)")
    axes.set_xticks(workers)
    axes.set_ylim(bottom=0)
    axes.set_title("Training throughput")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_epoch_time(runs: list[WorkerCountRun], ratios: dict, path: Path) -> Path:
    """Plot the time per epoch divided by that of the smallest worker count, with the ideal n0 / n."""
    plt = _pyplot()
    workers = np.array([run.workers for run in runs])
    normalised = np.array([ratios[run.workers]["epoch_time_ratio"] for run in runs])
    figure, axes = plt.subplots(figsize=(5.5, 4))
    axes.plot(workers, workers[0] / workers, "--", color="gray", label="ideal")
    axes.plot(workers, normalised, "o-", label="measured")
    for run, value in zip(runs, normalised, strict=True):
        note = "" if run.epoch_time_measured else " (est.)"
        axes.annotate(
            f"{run.time_per_epoch_s:.1f} s{note}",
            (run.workers, value),
            textcoords="offset points",
            xytext=(4, 6),
            fontsize=8,
        )
    axes.set_xlabel("workers")
    axes.set_ylabel(f"time per epoch / time with {workers[0]} worker(s)")
    axes.set_xticks(workers)
    axes.set_ylim(bottom=0)
    axes.set_title("Time per epoch, normalised")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_loss(runs: list[WorkerCountRun], path: Path) -> Path:
    """Plot the allreduced training loss against wall-clock time, with insets for time to loss and DLT."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        times = np.array([row["time_s"] for row in run.rank0])
        axes.plot(
            times,
            running_mean([row["global_loss"] for row in run.rank0]),
            label=f"{run.workers} worker(s)",
        )
    target = runs[0].summary.get("target_loss")
    if target is not None:
        axes.axhline(
            target, color="gray", linestyle=":", linewidth=1, label=f"target loss {target:g}"
        )
    axes.set_xlabel("wall-clock time since the run started (s)")
    axes.set_ylabel(f"training loss (running mean of {SMOOTHING_STEPS} steps)")
    axes.set_title("Loss against time")
    axes.legend(loc="lower left", fontsize=8)

    positions = np.arange(len(runs))
    labels = [str(run.workers) for run in runs]
    to_target = [run.time_to_target_s for run in runs]
    insets = [
        (
            [0.58, 0.62, 0.18, 0.3],
            [0 if math.isnan(v) else v for v in to_target],
            "time to loss (s)",
            "tab:orange",
        ),
        ([0.8, 0.62, 0.18, 0.3], [run.dlt_s for run in runs], "data loading (s)", "tab:green"),
    ]
    for bounds, heights, title, color in insets:
        inset = axes.inset_axes(bounds)
        inset.bar(positions, heights, color=color)
        inset.set_xticks(positions, labels)
        inset.set_title(title, fontsize=7)
        inset.set_xlabel("workers", fontsize=7)
        inset.set_ylim(bottom=0)
        inset.tick_params(labelsize=6)
    time_inset = axes.child_axes[0]
    for index, value in enumerate(to_target):
        if math.isnan(value):
            time_inset.text(index, 0, "not\nreached", ha="center", va="bottom", fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_accuracy(runs: list[WorkerCountRun], path: Path) -> Path:
    """Plot the allreduced training accuracy against wall-clock time."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 4))
    for run in runs:
        times = np.array([row["time_s"] for row in run.rank0])
        accuracy = running_mean([row["global_accuracy"] for row in run.rank0])
        axes.plot(times, 100 * accuracy, label=f"{run.workers} worker(s)")
    axes.axhline(100 / len(CLASS_SYMBOLS), color="gray", linestyle=":", linewidth=1, label="chance")
    axes.set_xlabel("wall-clock time since the run started (s)")
    axes.set_ylabel(f"training accuracy, % (running mean of {SMOOTHING_STEPS} steps)")
    axes.set_title("Training accuracy against time")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_confusion_tables(runs: list[WorkerCountRun], path: Path) -> Path:
    """Draw one table per worker count: the validation confusion matrix in percent of the true class."""
    plt = _pyplot()
    figure, axes_list = plt.subplots(len(runs), 1, figsize=(6, 2.2 * len(runs)), squeeze=False)
    for axes, run in zip(axes_list[:, 0], runs, strict=True):
        percent = run.summary.get("val_confusion_percent")
        axes.axis("off")
        if percent is None:
            axes.set_title(f"{run.workers} worker(s): no validation", fontsize=9)
            continue
        cells = [[f"{value:.1f}" for value in row] for row in percent]
        table = axes.table(
            cellText=cells,
            rowLabels=[f"true {s}" for s in CLASS_SYMBOLS],
            colLabels=[f"pred. {s}" for s in CLASS_SYMBOLS],
            loc="center",
            cellLoc="center",
        )
        table.scale(1, 1.2)
        accuracy = run.summary.get("val_accuracy", math.nan) * 100
        error = run.summary.get("val_accuracy_err", math.nan) * 100
        axes.set_title(
            f"{run.workers} worker(s): validation accuracy {accuracy:.1f} ± {error:.1f} % "
            f"on {run.summary.get('val_events')} events",
            fontsize=9,
        )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _number(value: float, digits: int = 2) -> str:
    return (
        "–"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.{digits}f}"
    )


def summary_markdown(runs: list[WorkerCountRun], ratios: dict, title: str) -> str:
    """Return the study's Markdown summary: one row per worker count, then the confusion tables."""
    base = runs[0].workers
    lines = [
        f"# {title}",
        "",
        f"Speed-up and efficiency are relative to {base} worker(s); efficiency is the speed-up divided by "
        f"(workers / {base}). Throughput sums each worker's median images per second. Time per epoch is "
        'measured over finished epochs; "est." marks a run that finished none, where it is the training '
        "events divided by the throughput.",
        "",
        "| workers | global batch | throughput (images/s) | speed-up | efficiency | time per epoch (s) "
        "| normalised epoch time | DLT (s) | time to target loss (s) | val. accuracy (%) | status |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        ratio = ratios[run.workers]
        epoch_time = _number(run.time_per_epoch_s, 1) + ("" if run.epoch_time_measured else " est.")
        accuracy = run.summary.get("val_accuracy")
        error = run.summary.get("val_accuracy_err")
        accuracy_text = (
            "–" if accuracy is None else f"{100 * accuracy:.1f} ± {100 * (error or 0):.1f}"
        )
        lines.append(
            f"| {run.workers} | {run.global_batch} | {_number(run.throughput, 1)} | {_number(ratio['speedup'])} "
            f"| {_number(ratio['efficiency'])} | {epoch_time} | {_number(ratio['epoch_time_ratio'])} "
            f"| {_number(run.dlt_s)} | {_number(run.time_to_target_s, 1)} | {accuracy_text} "
            f"| {run.summary.get('status')} |"
        )
    lines += ["", "Figures: " + ", ".join(f"[{name}]({name})" for name in FIGURE_NAMES), ""]
    for run in runs:
        percent = run.summary.get("val_confusion_percent")
        if percent is None:
            continue
        lines += [
            f"## Validation confusion matrix, {run.workers} worker(s) (% of the true class)",
            "",
            "| true \\ predicted | " + " | ".join(CLASS_SYMBOLS) + " |",
            "|---|" + "---:|" * len(CLASS_SYMBOLS),
        ]
        for symbol, row in zip(CLASS_SYMBOLS, percent, strict=True):
            lines.append(f"| {symbol} | " + " | ".join(f"{value:.1f}" for value in row) + " |")
        lines.append("")
    return "\n".join(lines)
