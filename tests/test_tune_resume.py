"""Resume: a sweep whose driver is killed mid-way continues with ``--resume`` and loses nothing.

The sweep driver runs as ``python -m raylar.tune`` in a child process that
joins the module's Ray cluster, so the test can kill it by its process id.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml

import raylar  # noqa: F401 - selects Ray Train V1

TRIALS = 2


def tune_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "raylar.tune", *arguments]


def trial_states(experiment_path: Path) -> dict:
    """Return {trial_id: (status, has_checkpoint)} from Tune's newest saved experiment state."""
    states = sorted(experiment_path.glob("experiment_state-*.json"))
    if not states:
        return {}
    try:
        saved = json.loads(states[-1].read_text())
    except (json.JSONDecodeError, OSError):
        return {}
    result = {}
    for trial_json, metadata_json in saved.get("trial_data", []):
        trial = json.loads(trial_json)
        manager = json.loads(metadata_json).get("checkpoint_manager") or {}
        # The checkpoint manager is saved pickled; its bytes name the checkpoint folders it keeps.
        has_checkpoint = b"checkpoint_0" in bytes.fromhex(manager.get("value", ""))
        result[trial["trial_id"]] = (trial["status"], has_checkpoint)
    return result


def mlflow_runs(uri: str, name: str) -> list:
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    return client.search_runs([experiment.experiment_id]) if experiment else []


def wait_for(condition, timeout_s: float, what: str, process=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            pytest.fail(f"the sweep driver exited with {process.returncode} before {what}")
        time.sleep(1)
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")


@pytest.fixture(scope="module")
def resumed_sweep(ray_cluster, tmp_path_factory):
    """Run a 2-trial sweep, kill its driver while the second trial trains, resume it to the end."""
    import ray

    folder = tmp_path_factory.mktemp("resume")
    (folder / "space.yaml").write_text(
        yaml.safe_dump({"parameters": {"optimizer.lr": {"distribution": "grid", "values": [1e-3, 2e-3]}}})
    )
    profile = {
        "name": "resume",
        "train": {
            "data": {"simulate": 16, "downsample": 9},
            "backend": {"workers": 1},
            "run": {"epochs": 4, "batch_size": 4, "report_every": 1},
        },
        "sweep": {"search_space": str(folder / "space.yaml"), "num_samples": 1, "scheduler": "none",
                  "budget": "300s", "concurrent_trials": 1},
    }  # fmt: skip
    (folder / "profile.yaml").write_text(yaml.safe_dump(profile))
    output = folder / "out"
    uri = f"sqlite:///{output / 'mlflow.db'}"
    address = ray.get_runtime_context().gcs_address
    common = ["--address", address]
    experiment_path = output / "ray" / "resume"

    log = open(folder / "first.log", "w")
    first = subprocess.Popen(
        tune_command("--profile", str(folder / "profile.yaml"), "--output", str(output), "--name", "resume", *common),
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def second_trial_checkpointed():
            states = trial_states(experiment_path)
            finished = [trial for trial, (status, _) in states.items() if status == "TERMINATED"]
            running = [trial for trial, (status, saved) in states.items() if status == "RUNNING" and saved]
            if len(finished) != 1 or len(running) != 1:
                return None
            return finished[0], running[0]

        finished_id, interrupted_id = wait_for(second_trial_checkpointed, 240, "the second trial's checkpoint", first)
        before = {run.data.tags["raylar.trial_id"]: run for run in mlflow_runs(uri, "resume")}
        client = mlflow.MlflowClient(tracking_uri=uri)
        finished_history = len(client.get_metric_history(before[finished_id].info.run_id, "loss"))
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        log.close()

    resumed = subprocess.run(
        tune_command("--resume", str(output), *common), capture_output=True, text=True, timeout=400
    )
    (folder / "resumed.log").write_text(resumed.stdout + resumed.stderr)
    return {
        "uri": uri,
        "finished_id": finished_id,
        "interrupted_id": interrupted_id,
        "before": before,
        "finished_history": finished_history,
        "resumed": resumed,
    }


def test_resume_exits_cleanly(resumed_sweep):
    resumed = resumed_sweep["resumed"]
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Best trial:" in resumed.stdout


def test_every_trial_once_in_mlflow(resumed_sweep):
    runs = mlflow_runs(resumed_sweep["uri"], "resume")
    trial_ids = [run.data.tags["raylar.trial_id"] for run in runs]
    assert len(trial_ids) == TRIALS
    assert len(set(trial_ids)) == TRIALS
    assert {run.info.status for run in runs} == {"FINISHED"}


def test_finished_trial_not_rerun(resumed_sweep):
    client = mlflow.MlflowClient(tracking_uri=resumed_sweep["uri"])
    before = resumed_sweep["before"][resumed_sweep["finished_id"]]
    after = client.get_run(before.info.run_id)
    assert after.info.end_time == before.info.end_time
    history = client.get_metric_history(before.info.run_id, "loss")
    assert len(history) == resumed_sweep["finished_history"]


def test_interrupted_trial_resumes_from_checkpoint(resumed_sweep):
    # The trainer logs where each worker starts; a trial restarted from scratch starts at epoch 0 batch 0.
    resumed = resumed_sweep["resumed"]
    starts = re.findall(r"starting at epoch (\d+) batch (\d+)", resumed.stdout + resumed.stderr)
    assert len(starts) == 1
    assert starts[0] != ("0", "0")


def test_interrupted_trial_continues_its_run(resumed_sweep):
    client = mlflow.MlflowClient(tracking_uri=resumed_sweep["uri"])
    before = resumed_sweep["before"][resumed_sweep["interrupted_id"]]
    after = client.get_run(before.info.run_id)
    assert after.data.tags["raylar.status"] == "completed"
    epochs = client.get_metric_history(before.info.run_id, "epoch")
    assert max(metric.value for metric in epochs) >= 2
