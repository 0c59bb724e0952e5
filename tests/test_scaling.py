"""The scaling study CLI: a real 1- and 2-worker study on downsampled simulated
events, its figures, summary and MLflow runs, and its input checks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raylar.scaling.figures import FIGURE_NAMES, running_mean
from raylar.scaling.study import ScalingError, parse_worker_counts

REPO = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_scaling(*arguments: str, timeout: float = 400) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    return subprocess.run(
        [sys.executable, "-m", "raylar.scaling", *arguments],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scaling")
    output = folder / "study"
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = run_scaling(
        "--workers", "1,2", "--model", "jishnet", "--budget", "60s", "--simulate", "20",
        "--downsample", "9", "--epochs", "1", "--batch-size", "2", "--output", str(output),
        "--tracking-uri", tracking_uri, "--experiment", "scaling-test",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return {"output": output, "tracking_uri": tracking_uri, "stdout": result.stdout}


def test_study_writes_every_figure(study):
    for name in FIGURE_NAMES:
        path = study["output"] / name
        assert path.is_file(), f"{name} is missing"
        assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{name} is not a PNG"


def test_study_summary_has_row_per_count(study):
    summary = (study["output"] / "summary.md").read_text()
    rows = [
        line
        for line in summary.splitlines()
        if line.startswith("| 1 |") or line.startswith("| 2 |")
    ]

    assert len(rows) == 2
    assert "Validation confusion matrix, 2 worker(s)" in summary


def test_study_measures_each_count(study):
    records = json.loads((study["output"] / "study.json").read_text())["runs"]

    assert [record["workers"] for record in records] == [1, 2]
    for record in records:
        assert record["throughput"] > 0
        assert record["time_per_epoch_s"] > 0
        assert record["dlt_s"] > 0
        assert record["status"] in ("completed", "budget reached")
    assert records[0]["efficiency"] == pytest.approx(1.0)


def test_study_runs_share_data_seed_and_batch(study):
    configs = [
        json.loads((study["output"] / f"workers-{count}" / "metrics.json").read_text())["config"]
        for count in (1, 2)
    ]

    assert configs[0]["data"] == configs[1]["data"]
    assert configs[0]["run"]["batch_size"] == configs[1]["run"]["batch_size"] == 2
    assert configs[0]["run"]["seed"] == configs[1]["run"]["seed"]
    assert configs[0]["backend"]["cpus_per_worker"] == configs[1]["backend"]["cpus_per_worker"]
    assert [config["backend"]["workers"] for config in configs] == [1, 2]


def test_study_logs_one_mlflow_run_per_count(study):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=study["tracking_uri"])
    experiment = client.get_experiment_by_name("scaling-test")
    runs = client.search_runs([experiment.experiment_id])

    assert sorted(run.info.run_name for run in runs) == ["workers-1", "workers-2"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["raylar.world_size"] == run.info.run_name.split("-")[1]
        assert run.data.metrics["throughput"] > 0
        assert "efficiency" in run.data.metrics
        assert len(client.get_metric_history(run.info.run_id, "loss")) >= 1
        assert run.data.params["run.batch_size"] == "2"


@pytest.mark.parametrize(
    ("workers", "message"),
    [
        ("", "empty worker list"),
        (" , ", "empty worker list"),
        ("1,,2", "invalid worker count ''"),
        ("1,two", "invalid worker count 'two'"),
        ("0,1", "invalid worker count '0'"),
        ("-1", "invalid worker count '-1'"),
        ("1.5", "invalid worker count '1.5'"),
        ("2,2", "worker count 2 appears twice"),
    ],
)
def test_malformed_worker_list_rejected(workers, message):
    with pytest.raises(ScalingError, match=message):
        parse_worker_counts(workers)


def test_worker_counts_sorted():
    assert parse_worker_counts(" 4, 1,2 ") == [1, 2, 4]


def test_cli_rejects_bad_worker_list_before_work(tmp_path):
    output = tmp_path / "study"
    result = run_scaling(
        "--workers", "1,x", "--simulate", "30", "--output", str(output), timeout=120
    )

    assert result.returncode == 2
    assert "invalid worker count 'x'" in result.stderr
    assert not output.exists()


def test_cli_rejects_more_workers_than_cluster(tmp_path):
    output = tmp_path / "study"
    too_many = (os.cpu_count() or 1) + 1
    result = run_scaling(
        "--workers", f"1,{too_many}", "--simulate", str(40 * too_many), "--batch-size", "2",
        "--cpus-per-worker", "1", "--output", str(output), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
        timeout=180,
    )  # fmt: skip

    assert result.returncode == 2, result.stderr[-3000:]
    assert f"worker count {too_many} is larger than the cluster allows" in result.stderr
    assert not output.exists()


def test_cli_rejects_shards_smaller_than_batch(tmp_path):
    output = tmp_path / "study"
    result = run_scaling(
        "--workers",
        "1,2",
        "--simulate",
        "20",
        "--batch-size",
        "16",
        "--output",
        str(output),
        timeout=120,
    )

    assert result.returncode == 2
    assert "fewer than the per-worker batch size 16" in result.stderr
    assert not output.exists()


def test_cli_rejects_non_empty_output(tmp_path):
    (tmp_path / "old.txt").write_text("earlier results")
    result = run_scaling(
        "--workers", "1", "--simulate", "30", "--output", str(tmp_path), timeout=120
    )

    assert result.returncode == 2
    assert "already exists and is not empty" in result.stderr


def test_running_mean_window():
    smoothed = running_mean(np.array([1.0, 3.0, 5.0, 7.0]), steps=2)

    assert smoothed.tolist() == [1.0, 2.0, 4.0, 6.0]


def test_ring_allreduce_cost_formula():
    from raylar.scaling.allreduce import ring_allreduce_seconds

    seconds = ring_allreduce_seconds(8e6, workers=4, bandwidth=1e9, latency_s=1e-5)

    assert seconds == pytest.approx(2 * 3 / 4 * 8e6 / 1e9 + 2 * 3 * 1e-5)
    assert ring_allreduce_seconds(8e6, workers=1, bandwidth=1e9, latency_s=1e-5) == 0.0


def test_predicted_efficiency_uses_network_between_nodes():
    from raylar.scaling.allreduce import SUMMITDEV, allreduce_seconds, predicted_efficiency

    inside_node = allreduce_seconds(8.6e6, 4, SUMMITDEV)
    across_nodes = allreduce_seconds(8.6e6, 8, SUMMITDEV)
    efficiency = predicted_efficiency(0.071, 8.6e6, 128, SUMMITDEV)

    assert inside_node == pytest.approx(2 * 3 / 4 * 8.6e6 / 40e9 + 6 * 5e-6)
    assert across_nodes == pytest.approx(2 * 7 / 8 * 8.6e6 / 12.5e9 + 14 * 5e-6)
    assert efficiency == pytest.approx(
        0.071 / (0.071 + 2 * 127 / 128 * 8.6e6 / 12.5e9 + 254 * 5e-6)
    )
