"""MLflow's web UI over a store that raylar's tracker wrote, read in headless Chromium.

The runs come from a real Ray Tune sweep of a small function trainable: what
is under test is that the tracker's runs show up in ``mlflow server``'s UI.
"""

import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

import raylar  # noqa: F401 - selects Ray Train V1
from raylar.tracking import MLflowTrialTracker, tracking_server

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def chromium():
    """Path of Debian's chromium, installed with apt-get when it is missing."""
    if not os.path.exists(CHROMIUM):
        # A new machine may have empty package lists, which make the install fail.
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, timeout=300)
        install = subprocess.run(
            ["apt-get", "install", "-y", "chromium"], capture_output=True, text=True, timeout=600
        )
        if install.returncode != 0:
            pytest.fail(f"apt-get install -y chromium failed: {install.stderr[-2000:]}")
    return CHROMIUM


def short_trainable(config):
    from ray import tune

    trial_dir = Path(tune.get_context().get_trial_dir())
    (trial_dir / "metrics.json").write_text('{"status": "completed"}')
    for step in range(1, 4):
        tune.report({"loss": config["optimizer"]["lr"] * 100 / step, "step": step, "elapsed_s": step * 0.1})


@pytest.fixture(scope="module")
def tracked_store(ray_cluster, tmp_path_factory):
    """An MLflow SQLite store holding the runs of a three-trial sweep; returns (uri, folder, run names)."""
    from ray import tune

    folder = tmp_path_factory.mktemp("ui_store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    tracker = MLflowTrialTracker(
        uri,
        "ui-check",
        {"raylar.sweep": "ui-check"},
        describe_trial=lambda config: {"model": "jishnet"},
        run_directory=lambda trial, result: Path(trial.local_path),
        artifact_location=(folder / "artifacts").as_uri(),
    )
    tuner = tune.Tuner(
        tune.with_resources(short_trainable, {"CPU": 0.5}),
        param_space={"optimizer": {"lr": tune.grid_search([0.001, 0.01, 0.1])}},
        run_config=tune.RunConfig(name="ui-check", storage_path=str(folder / "ray"), callbacks=[tracker]),
    )
    results = tuner.fit()
    assert not results.errors

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("ui-check")
    names = [run.info.run_name for run in client.search_runs([experiment.experiment_id])]
    return uri, folder, experiment.experiment_id, names


def run_chromium(chromium: str, url: str, *outputs: str) -> str:
    """Load ``url`` in a fresh headless Chromium profile and return its standard output.

    ``--timeout`` makes Chromium write its outputs and exit after 30 s of page
    time even when the single-page app keeps polling the server.
    """
    with tempfile.TemporaryDirectory() as profile_dir:
        command = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile_dir}", "--window-size=1600,1000",
            "--virtual-time-budget=10000", "--timeout=30000", *outputs, url,
        ]  # fmt: skip
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
        except subprocess.TimeoutExpired:
            return ""


def dump_page(chromium: str, url: str, screenshot: Path) -> str:
    """Save a screenshot of ``url`` and return its rendered DOM."""
    dom = run_chromium(chromium, url, "--dump-dom")
    run_chromium(chromium, url, f"--screenshot={screenshot}")
    return dom


def test_sweep_has_three_runs(tracked_store):
    _, _, _, names = tracked_store
    assert len(names) == 3


def test_runs_page_lists_run_names(tracked_store, chromium, artifact_dir):
    uri, folder, experiment_id, names = tracked_store
    screenshot = Path(artifact_dir) / "mlflow_runs_page.png"
    with tracking_server(uri, folder / "artifacts") as url:
        page_url = f"{url}/#/experiments/{experiment_id}/runs"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
        dom = ""
        for _ in range(3):
            dom = dump_page(chromium, page_url, screenshot)
            if all(name in dom for name in names):
                break
            time.sleep(2)
    missing = [name for name in names if name not in dom]
    assert not missing, f"run names missing from {page_url}: {missing}"
    assert screenshot.is_file()
    assert screenshot.stat().st_size > 10_000

