"""Bad sweep inputs: each a clear error from ``python -m raylar.tune`` before any trial starts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import raylar  # noqa: F401 - selects Ray Train V1
from raylar.tracking import free_port
from raylar.tune.cli import main


@pytest.fixture
def tiny_profile(tmp_path) -> Path:
    path = tmp_path / "profile.yaml"
    profile = {
        "name": "inputs",
        "train": {"data": {"simulate": 16, "downsample": 9}, "backend": {"workers": 1}, "run": {"batch_size": 4}},
        "sweep": {"search_space": "adam", "num_samples": 1, "budget": "60s"},
    }
    path.write_text(yaml.safe_dump(profile))
    return path


def run_cli(capsys, tmp_path, *arguments: str) -> tuple[int, str]:
    code = main(["--output", str(tmp_path / "out"), "--name", "inputs", *arguments])
    return code, capsys.readouterr().err


def assert_no_trial_started(tmp_path: Path) -> None:
    assert not (tmp_path / "out" / "ray").exists()


def test_missing_search_space_file(ray_cluster, capsys, tmp_path, tiny_profile):
    code, error = run_cli(capsys, tmp_path, "--profile", str(tiny_profile), "--search-space", str(tmp_path / "gone.yaml"))
    assert code == 2
    assert "search space" in error
    assert "gone.yaml" in error
    assert "not found" in error
    assert_no_trial_started(tmp_path)


def test_malformed_search_space_file(ray_cluster, capsys, tmp_path, tiny_profile):
    broken = tmp_path / "broken.yaml"
    broken.write_text("parameters: [optimizer.lr: {distribution\n")
    code, error = run_cli(capsys, tmp_path, "--profile", str(tiny_profile), "--search-space", str(broken))
    assert code == 2
    assert "malformed search-space file" in error
    assert "broken.yaml" in error
    assert_no_trial_started(tmp_path)


def test_unknown_parameter(ray_cluster, capsys, tmp_path, tiny_profile):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"parameters": {"optimizer.beta1": {"distribution": "uniform", "low": 0.8, "high": 0.9}}}))
    code, error = run_cli(capsys, tmp_path, "--profile", str(tiny_profile), "--search-space", str(space))
    assert code == 2
    assert "unknown parameter 'optimizer.beta1'" in error
    assert "optimizer.betas.0" in error
    assert_no_trial_started(tmp_path)


def test_parameter_fixed_per_sweep(ray_cluster, capsys, tmp_path, tiny_profile):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"parameters": {"data.downsample": {"distribution": "choice", "values": [9, 10]}}}))
    code, error = run_cli(capsys, tmp_path, "--profile", str(tiny_profile), "--search-space", str(space))
    assert code == 2
    assert "'data.downsample'" in error
    assert "cannot vary within a sweep" in error


def test_impossible_resource_request(ray_cluster, capsys, tmp_path):
    profile = tmp_path / "big.yaml"
    profile.write_text(yaml.safe_dump({"train": {"data": {"simulate": 16}, "backend": {"workers": 3, "cpus_per_worker": 1}}}))
    code, error = run_cli(capsys, tmp_path, "--profile", str(profile))
    assert code == 2
    assert "requested 3 workers" in error
    assert "2 CPUs" in error
    assert_no_trial_started(tmp_path)


def test_unreachable_tracking_server(ray_cluster, capsys, tmp_path, tiny_profile):
    closed = f"http://127.0.0.1:{free_port()}"
    code, error = run_cli(capsys, tmp_path, "--profile", str(tiny_profile), "--tracking-uri", closed)
    assert code == 2
    assert f"MLflow tracking server {closed} is unreachable" in error
    assert_no_trial_started(tmp_path)


def test_invalid_budget(ray_cluster, capsys, tmp_path, tiny_profile):
    code, error = run_cli(capsys, tmp_path, "--profile", str(tiny_profile), "--budget", "4 hours")
    assert code == 2
    assert "invalid duration '4 hours'" in error


def test_unknown_profile(ray_cluster, capsys, tmp_path):
    code, error = run_cli(capsys, tmp_path, "--profile", "laptop")
    assert code == 2
    assert "profile 'laptop' not found" in error
    assert "quickstart" in error


def test_resume_path_without_sweep(ray_cluster, capsys, tmp_path):
    code, error = run_cli(capsys, tmp_path, "--resume", str(tmp_path))
    assert code == 2
    assert "is not a raylar sweep folder" in error


def test_existing_sweep_name(ray_cluster, capsys, tmp_path, tiny_profile):
    existing = tmp_path / "out" / "ray" / "inputs"
    existing.mkdir(parents=True)
    (existing / "raylar_sweep.json").write_text("{}")
    code, error = run_cli(capsys, tmp_path, "--profile", str(tiny_profile))
    assert code == 2
    assert "a sweep named 'inputs' already exists" in error
    assert f"--resume {existing}" in error


def test_bad_search_space_fails_before_ray_starts(tmp_path, tiny_profile):
    # A fresh process with no cluster: the error must come before Ray starts one.
    environment = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "-m", "raylar.tune", "--profile", str(tiny_profile),
         "--search-space", str(tmp_path / "gone.yaml"), "--output", str(tmp_path / "out")],
        env=environment, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "gone.yaml" in result.stderr
    assert "Ray cluster at" not in result.stderr
    assert "Started a local Ray instance" not in result.stderr
