"""Real sweeps of raylar's Horovod trainer, checked through MLflow's client.

Two sweeps share the module's 2-CPU cluster: four concurrent one-worker trials
(MLflow contents, nothing lost, the report), and two trials one after another
under ASHA and a short per-trial budget (early stopping, budget stop).
"""

import json
import re
from pathlib import Path

import mlflow
import pytest
import yaml

import raylar  # noqa: F401 - selects Ray Train V1
from raylar.report import write_report
from raylar.tune.cli import summarize
from raylar.tune.profiles import load_profile
from raylar.tune.sweep import prepare_sweep, run_sweep

BUDGET_S = 22.0


def write_profile(folder: Path, train: dict, sweep: dict, parameters: dict) -> str:
    (folder / "space.yaml").write_text(yaml.safe_dump({"name": "space", "parameters": parameters}))
    profile = {"name": "test", "train": train, "sweep": {"search_space": str(folder / "space.yaml"), **sweep}}
    (folder / "profile.yaml").write_text(yaml.safe_dump(profile))
    return str(folder / "profile.yaml")


def start_sweep(folder: Path, name: str, train: dict, sweep: dict, parameters: dict):
    profile = load_profile(write_profile(folder, train, sweep, parameters))
    plan = prepare_sweep(profile, profile.sweep, None, str(folder / "out"), None, name=name)
    results = run_sweep(plan)
    client = mlflow.MlflowClient(tracking_uri=plan.tracking_uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return plan, results, client, runs


@pytest.fixture(scope="module")
def concurrent_sweep(ray_cluster, tmp_path_factory):
    """Four one-worker trials at once (half a CPU each), one epoch on 16 simulated events."""
    train = {
        "data": {"simulate": 16, "downsample": 9},
        "backend": {"workers": 1, "cpus_per_worker": 0.5},
        "run": {"epochs": 1, "batch_size": 4, "report_every": 1},
    }
    sweep = {"num_samples": 4, "scheduler": "none", "budget": "120s", "concurrent_trials": 4}
    parameters = {"optimizer.lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-2}}
    return start_sweep(tmp_path_factory.mktemp("concurrent"), "concurrent", train, sweep, parameters)


@pytest.fixture(scope="module")
def asha_sweep(ray_cluster, tmp_path_factory):
    """A learning trial, then a frozen one (learning rate 1e-12), under ASHA on loss and a 22 s budget."""
    train = {
        "data": {"simulate": 16, "downsample": 9},
        "backend": {"workers": 1},
        "run": {"epochs": 200, "batch_size": 4, "report_every": 2},
    }
    sweep = {
        "num_samples": 1, "scheduler": "asha", "budget": f"{BUDGET_S:g}s", "grace_period": "12s",
        "metric": "loss", "concurrent_trials": 1,
    }  # fmt: skip
    parameters = {"optimizer.lr": {"distribution": "grid", "values": [0.003, 1e-12]}}
    return start_sweep(tmp_path_factory.mktemp("asha"), "asha", train, sweep, parameters)


def run_of(runs, trial_id):
    return next(run for run in runs if run.data.tags["raylar.trial_id"] == trial_id)


def test_concurrent_trials_ran_together(concurrent_sweep):
    plan, results, _, _ = concurrent_sweep
    assert plan.concurrent_trials == 4
    assert not results.errors
    assert len(results) == 4


def test_one_run_per_trial(concurrent_sweep):
    _, results, _, runs = concurrent_sweep
    trial_ids = sorted(result.metrics["trial_id"] for result in results)
    assert sorted(run.data.tags["raylar.trial_id"] for run in runs) == trial_ids


def test_no_metric_lost(concurrent_sweep):
    _, results, client, runs = concurrent_sweep
    for result in results:
        run = run_of(runs, result.metrics["trial_id"])
        frame = result.metrics_dataframe
        for key in ("loss", "accuracy", "throughput", "data_wait_fraction", "val_accuracy", "val_accuracy_err"):
            reported = int(frame[key].notna().sum())
            logged = len(client.get_metric_history(run.info.run_id, key))
            assert logged == reported, f"{key} of {run.info.run_name}: {logged} logged, {reported} reported"
            assert reported > 0


def test_run_tags(concurrent_sweep):
    plan, _, _, runs = concurrent_sweep
    for run in runs:
        tags = run.data.tags
        assert tags["raylar.sweep"] == plan.name
        assert tags["model"] == "jishnet"
        assert tags["backend"] == "horovod"
        assert tags["world_size"] == "1"
        assert tags["image_size"] == "400x400"
        assert tags["codec"] == "sparse"
        assert re.fullmatch(r"[0-9a-f]{40}|unknown", tags["git_commit"])
        for package in ("raylar", "ray", "torch", "horovod", "spconv"):
            assert tags[f"version.{package}"] not in ("", "not installed"), package
        assert run.info.run_name.startswith("HorovodTrainer_")


def test_run_params_are_trial_config(concurrent_sweep):
    _, results, _, runs = concurrent_sweep
    for result in results:
        params = run_of(runs, result.metrics["trial_id"]).data.params
        config = result.config["train_loop_config"]
        assert params["optimizer.lr"] == str(config["optimizer"]["lr"])
        assert params["run.batch_size"] == "4"
        assert params["data.downsample"] == "9"
        assert params["backend.workers"] == "1"


def test_run_artifacts(concurrent_sweep):
    _, _, client, runs = concurrent_sweep
    for run in runs:
        top = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
        workers = {artifact.path for artifact in client.list_artifacts(run.info.run_id, "workers")}
        for name in ("confusion_matrix.png", "confusion_matrix.csv", "loss_accuracy.png", "metrics.json"):
            assert name in top, f"{name} missing from {run.info.run_name}: {sorted(top)}"
        assert "workers/rank0.csv" in workers


def test_confusion_csv_matches_metrics(concurrent_sweep):
    _, _, client, runs = concurrent_sweep
    run_id = runs[0].info.run_id
    folder = Path(client.download_artifacts(run_id, ""))
    summary = json.loads((folder / "metrics.json").read_text())
    lines = (folder / "confusion_matrix.csv").read_text().splitlines()
    assert len(lines) == 1 + 25
    events = sum(int(line.split(",")[3]) for line in lines[1:])
    assert events == summary["val_events"]


def test_runs_finished(concurrent_sweep):
    _, _, _, runs = concurrent_sweep
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert {run.data.tags["raylar.status"] for run in runs} == {"completed"}


def test_best_trial_has_checkpoint(concurrent_sweep):
    _, results, _, _ = concurrent_sweep
    summary = summarize(results, "val_loss", "min")
    assert summary is not None
    assert Path(summary["checkpoint"]).is_dir()
    assert summary["best_val_loss"] == min(r.metrics_dataframe["val_loss"].min() for r in results)


def test_report_writes_plots(concurrent_sweep, tmp_path):
    plan, _, _, _ = concurrent_sweep
    written = write_report(plan.name, plan.tracking_uri, tmp_path)
    names = {path.name for path in written}
    assert {"loss_vs_time.png", "trials.csv", "best_val_accuracy_vs_optimizer.lr.png"} <= names
    for path in written:
        assert path.stat().st_size > 0
    assert len((tmp_path / "trials.csv").read_text().splitlines()) == 1 + 4


def test_budget_stops_trial_with_checkpoint(asha_sweep):
    _, results, _, runs = asha_sweep
    good = next(r for r in results if r.config["train_loop_config"]["optimizer"]["lr"] == 0.003)
    assert good.metrics["status"] == "budget reached"
    assert good.metrics["elapsed_s"] <= BUDGET_S + 5
    assert good.checkpoint is not None
    assert run_of(runs, good.metrics["trial_id"]).data.tags["raylar.status"] == "budget reached"


def test_asha_stops_poor_trial_early(asha_sweep):
    _, results, _, runs = asha_sweep
    poor = next(r for r in results if r.config["train_loop_config"]["optimizer"]["lr"] == 1e-12)
    assert poor.metrics["elapsed_s"] < BUDGET_S * 0.8
    assert poor.metrics["status"] == "running"
    assert run_of(runs, poor.metrics["trial_id"]).data.tags["raylar.status"] == "stopped early"


def test_report_cli_unknown_experiment(concurrent_sweep, capsys):
    from raylar.report import main as report_main

    plan, _, _, _ = concurrent_sweep
    code = report_main(["--experiment", "no-such-sweep", "--tracking-uri", plan.tracking_uri])
    error = capsys.readouterr().err
    assert code == 2
    assert "experiment 'no-such-sweep' not found" in error
    assert plan.name in error
