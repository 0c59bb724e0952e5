"""Comparison of a sweep's trials from MLflow: ``python -m raylar.report --experiment NAME``.

Writes, into the output folder:

- ``loss_vs_time.png``: the averaged training loss of every trial against elapsed training time;
- ``best_val_accuracy_vs_<param>.png``: each trial's best validation accuracy (with its
  uncertainty) against every parameter that differs between trials;
- ``trials.csv``: one row per trial with those parameters, status and best figures.
"""

import argparse
import csv
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from raylar.log import get_logger

logger = get_logger(__name__)

DEFAULT_STORE = "sqlite:///outputs/quickstart/mlflow.db"


class ReportError(ValueError):
    """An experiment that cannot be reported on."""


@dataclass
class TrialRecord:
    """One MLflow run of a sweep, with the histories the report draws."""

    run_id: str
    name: str
    status: str
    params: dict
    loss_curve: list[tuple[float, float]] = field(default_factory=list)  # (elapsed_s, loss)
    best_val_accuracy: float | None = None
    best_val_accuracy_err: float | None = None
    final_loss: float | None = None


def _history(client, run_id: str, key: str) -> dict[int, float]:
    return {metric.step: metric.value for metric in client.get_metric_history(run_id, key)}


def load_trials(client, experiment_name: str) -> list[TrialRecord]:
    """Read every run of ``experiment_name`` with its loss curve and best validation accuracy."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        names = [e.name for e in client.search_experiments()]
        raise ReportError(
            f"experiment {experiment_name!r} not found in the tracking store; it has: "
            f"{', '.join(names) or 'no experiments'}"
        )
    runs = client.search_runs([experiment.experiment_id], max_results=10000, order_by=["attributes.start_time ASC"])
    if not runs:
        raise ReportError(f"experiment {experiment_name!r} has no runs yet")

    trials = []
    for run in runs:
        run_id = run.info.run_id
        loss = _history(client, run_id, "loss")
        elapsed = _history(client, run_id, "elapsed_s")
        accuracy = _history(client, run_id, "val_accuracy")
        accuracy_err = _history(client, run_id, "val_accuracy_err")
        record = TrialRecord(
            run_id=run_id,
            name=run.info.run_name,
            status=run.data.tags.get("raylar.status", run.info.status),
            params=dict(run.data.params),
            loss_curve=sorted((elapsed[step], value) for step, value in loss.items() if step in elapsed),
        )
        if loss:
            record.final_loss = loss[max(loss)]
        if accuracy:
            best_step = max(accuracy, key=lambda step: accuracy[step])
            record.best_val_accuracy = accuracy[best_step]
            record.best_val_accuracy_err = accuracy_err.get(best_step)
        trials.append(record)
    return trials


def varied_parameters(trials: list[TrialRecord]) -> list[str]:
    """Return the params whose values differ between trials: the searched ones."""
    names = sorted({name for trial in trials for name in trial.params})
    return [name for name in names if len({trial.params.get(name) for trial in trials}) > 1]


def _as_number(text: str | None) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def plot_loss_vs_time(trials: list[TrialRecord], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for trial in trials:
        if trial.loss_curve:
            times, losses = zip(*trial.loss_curve, strict=True)
            axes.plot(times, losses, label=trial.name, linewidth=1)
    axes.set_xlabel("elapsed training time (s)")
    axes.set_ylabel("training loss (averaged over workers)")
    axes.set_title("Loss against time per trial")
    if len(trials) <= 12:
        axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_accuracy_vs_parameter(trials: list[TrialRecord], name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [trial for trial in trials if trial.best_val_accuracy is not None]
    numbers = [_as_number(trial.params.get(name)) for trial in scored]
    numeric = all(value is not None for value in numbers) and numbers
    figure, axes = plt.subplots(figsize=(6, 4))
    if numeric:
        xs = numbers
    else:
        labels = sorted({str(trial.params.get(name)) for trial in scored})
        xs = [labels.index(str(trial.params.get(name))) for trial in scored]
        axes.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
    ys = [trial.best_val_accuracy for trial in scored]
    errors = [trial.best_val_accuracy_err or 0.0 for trial in scored]
    axes.errorbar(xs, ys, yerr=errors, fmt="o", capsize=3)
    if numeric and min(xs) > 0 and max(xs) / min(xs) > 50:
        axes.set_xscale("log")
    axes.set_xlabel(name)
    axes.set_ylabel("best validation accuracy")
    axes.set_title(f"Best validation accuracy against {name}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_table(trials: list[TrialRecord], parameters: list[str], path: Path) -> None:
    columns = ["run_name", "run_id", "status", *parameters, "best_val_accuracy", "best_val_accuracy_err", "final_loss"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for trial in trials:
            writer.writerow(
                [trial.name, trial.run_id, trial.status, *(trial.params.get(p) for p in parameters),
                 trial.best_val_accuracy, trial.best_val_accuracy_err, trial.final_loss]
            )  # fmt: skip


def write_report(experiment_name: str, tracking_uri: str, output: str | Path) -> list[Path]:
    """Write the comparison plots and table of one experiment; return the files written."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    trials = load_trials(client, experiment_name)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)

    parameters = varied_parameters(trials)
    written = [output / "loss_vs_time.png", output / "trials.csv"]
    plot_loss_vs_time(trials, written[0])
    write_table(trials, parameters, written[1])
    if not any(trial.best_val_accuracy is not None for trial in trials):
        logger.warning("no trial of %s reported val_accuracy; no accuracy plots", experiment_name)
        parameters = []
    for name in parameters:
        path = output / f"best_val_accuracy_vs_{name.replace('/', '_')}.png"
        plot_accuracy_vs_parameter(trials, name, path)
        written.append(path)
    logger.info("report of %s (%d trials): %s", experiment_name, len(trials), ", ".join(map(str, written)))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m raylar.report", description="Plot and tabulate the trials of a sweep from MLflow."
    )
    parser.add_argument("--experiment", required=True, help="MLflow experiment name, which is the sweep name")
    parser.add_argument(
        "--tracking-uri",
        help=f"MLflow tracking URI; default $MLFLOW_TRACKING_URI, else {DEFAULT_STORE} (the quickstart store)",
    )
    parser.add_argument("--output", help="folder for the plots and table; default reports/EXPERIMENT")
    args = parser.parse_args(argv)

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_STORE
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        print(f"error: MLflow store {uri} not found; pass --tracking-uri of the sweep's store", file=sys.stderr)
        return 2
    try:
        written = write_report(args.experiment, uri, args.output or Path("reports") / args.experiment)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
