"""python -m raylar.simulate: generation, bad input, parallel determinism, display and validation."""

import json
import os
import subprocess
import sys

import pytest

from raylar.sim.cli import main
from raylar.sim.eventfile import count_events, read_attrs, read_events


def _run_cli(args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "raylar.simulate", *args], cwd=cwd, capture_output=True, text=True
    )


def test_cli_writes_events_and_attributes(tmp_path, capsys):
    out = tmp_path / "events.h5"
    assert (
        main(
            [
                "--events",
                "6",
                "--out",
                str(out),
                "--downsample",
                "18",
                "--seed",
                "4",
                "--classes",
                "muon",
                "kaon",
            ]
        )
        == 0
    )
    assert count_events(out) == 6
    assert [e.label for e in read_events(out)] == [2, 4, 2, 4, 2, 4]
    attrs = read_attrs(out)
    assert attrs["seed"] == 4
    assert attrs["config"]["downsample"] == 18
    assert attrs["config"]["classes"] == ["muon", "kaon"]
    assert "wrote 6 events" in capsys.readouterr().out


def test_cli_output_independent_of_workers(tmp_path):
    common = ["--events", "10", "--downsample", "9", "--seed", "12"]
    single = _run_cli([*common, "--out", "one.h5", "--workers", "1"], tmp_path)
    two = _run_cli([*common, "--out", "two.h5", "--workers", "2"], tmp_path)
    assert single.returncode == 0, single.stderr
    assert two.returncode == 0, two.stderr
    assert (tmp_path / "one.h5").read_bytes() == (tmp_path / "two.h5").read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--events", "0"], "must be a positive integer, got 0"),
        (["--events", "-3"], "must be a positive integer, got -3"),
        (["--events", "2", "--classes", "muon", "tau"], "unknown particle class 'tau'"),
        (["--events", "2", "--downsample", "7"], "invalid downsample factor 7"),
        (["--events", "2", "--threshold", "1"], "noise pixels per event"),
    ],
)
def test_cli_rejects_bad_arguments(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(tmp_path / "events.h5")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_cli_rejects_missing_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--events", "2", "--out", str(tmp_path / "absent" / "events.h5")])
    assert "does not exist" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_cli_rejects_read_only_location(tmp_path, capsys):
    if os.geteuid() == 0:
        target = "/proc/events.h5"  # root writes into any folder, but no process can create files in /proc
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        target = str(locked / "events.h5")
    try:
        with pytest.raises(SystemExit):
            main(["--events", "2", "--out", target])
    finally:
        if os.geteuid() != 0:
            (tmp_path / "locked").chmod(0o755)
    assert "not writable" in capsys.readouterr().err
    assert not os.path.exists(target)


def test_cli_existing_file_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "events.h5"
    out.write_bytes(b"keep me")
    with pytest.raises(SystemExit):
        main(["--events", "2", "--downsample", "30", "--out", str(out)])
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert main(["--events", "2", "--downsample", "30", "--out", str(out), "--overwrite"]) == 0
    assert count_events(out) == 2
    assert sorted(os.listdir(tmp_path)) == ["events.h5"]


def test_cli_help_names_units():
    result = subprocess.run(
        [sys.executable, "-m", "raylar.simulate", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for text in ("MeV/c", "ADC counts", "3600", "worker processes", "--overwrite"):
        assert text in result.stdout


def test_cli_show_draws_png(tmp_path, capsys):
    events = tmp_path / "events.h5"
    assert main(["--events", "2", "--downsample", "9", "--out", str(events)]) == 0
    picture = tmp_path / "event.png"
    assert main(["show", str(events), "--event", "1", "--out", str(picture)]) == 0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit):
        main(["show", str(events), "--event", "5", "--out", str(picture)])
    assert "holds events 0 to 1" in capsys.readouterr().err


def test_cli_validate_json_subset(capsys):
    assert main(["validate", "--json", "--checks", "recombination_mip", "kaon_muon_momentum"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["key"] for row in rows] == ["recombination_mip", "kaon_muon_momentum"]
    assert all(row["passed"] for row in rows)
    for row in rows:
        assert {"reference", "computed", "tolerance", "deviation", "unit", "source"} <= set(row)
