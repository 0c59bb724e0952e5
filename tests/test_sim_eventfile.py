"""raylar's HDF5 event file: round trip, streaming, interrupted writes and bad paths."""

import glob
import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from raylar.data.types import Event
from raylar.sim import SimConfig, simulate_event
from raylar.sim.eventfile import (
    EventFileError,
    EventFileWriter,
    count_events,
    read_attrs,
    read_events,
)


def _random_event(rng, event_id, shape=(400, 400)):
    n = int(rng.integers(0, 300))
    flat = rng.choice(shape[0] * shape[1], n, replace=False)
    return Event(
        event_id=event_id,
        label=int(rng.integers(0, 5)),
        shape=shape,
        rows=(flat // shape[1]).astype(np.int32),
        cols=(flat % shape[1]).astype(np.int32),
        values=rng.uniform(10, 500, n).astype(np.float32),
        truth={
            "label": 1,
            "momentum_mev": float(rng.uniform(100, 1000)),
            "decay_products": [{"particle": "e+"}],
        },
    )


def _same(a: Event, b: Event) -> None:
    assert a.event_id == b.event_id
    assert a.label == b.label
    assert tuple(a.shape) == tuple(b.shape)
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.cols, b.cols)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.truth == b.truth


def _leftovers(folder):
    return sorted(os.listdir(folder))


def test_eventfile_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    events = [_random_event(rng, i) for i in range(40)]
    path = tmp_path / "events.h5"
    with EventFileWriter(
        path, {"seed": 7, "generator": {"downsample": 9, "classes": ["muon"]}}
    ) as writer:
        for event in events:
            writer.write(event)

    assert count_events(path) == 40
    for original, stored in zip(events, read_events(path), strict=True):
        _same(original, stored)
    attrs = read_attrs(path)
    assert attrs["seed"] == 7
    assert attrs["generator"] == {"downsample": 9, "classes": ["muon"]}
    assert attrs["complete"] is True
    assert attrs["committed_events"] == 40
    assert _leftovers(tmp_path) == ["events.h5"]


def test_eventfile_slice_reads_requested_events(tmp_path):
    rng = np.random.default_rng(6)
    events = [_random_event(rng, 100 + i) for i in range(600)]
    path = tmp_path / "events.h5"
    with EventFileWriter(path, {}) as writer:
        for event in events:
            writer.write(event)
    sliced = list(read_events(path, 250, 520))
    assert [e.event_id for e in sliced] == list(range(350, 620))
    _same(sliced[-1], events[519])
    with pytest.raises(IndexError, match="outside the 600 events"):
        list(read_events(path, 590, 601))


def test_eventfile_hits_use_blosc_chunks(tmp_path):
    rng = np.random.default_rng(7)
    path = tmp_path / "events.h5"
    with EventFileWriter(path, {}) as writer:
        writer.write(_random_event(rng, 0))
    with h5py.File(path, "r") as f:
        for name in ("wire", "tick", "value"):
            dataset = f["hits"][name]
            assert dataset.chunks is not None
            assert "32001" in str(dataset._filters), (
                dataset._filters
            )  # Blosc's registered filter id


def test_eventfile_simulated_events_round_trip(tmp_path):
    config = SimConfig(downsample=9)
    events = [simulate_event(i, 11, config) for i in range(5)]
    path = tmp_path / "sim.h5"
    with EventFileWriter(path, {"config": config.to_dict(), "seed": 11}) as writer:
        for event in events:
            writer.write(event)
    for original, stored in zip(events, read_events(path), strict=True):
        _same(original, stored)
    assert SimConfig.from_dict(read_attrs(path)["config"]) == config


def test_eventfile_error_inside_block_leaves_nothing(tmp_path):
    rng = np.random.default_rng(8)
    path = tmp_path / "events.h5"
    with pytest.raises(RuntimeError, match="generator failed"):
        with EventFileWriter(path, {}) as writer:
            writer.write(_random_event(rng, 0))
            raise RuntimeError("generator failed")
    assert _leftovers(tmp_path) == []


def test_eventfile_mixed_shapes_rejected(tmp_path):
    rng = np.random.default_rng(9)
    path = tmp_path / "events.h5"
    with pytest.raises(ValueError, match="one downsample factor per file"):
        with EventFileWriter(path, {}) as writer:
            writer.write(_random_event(rng, 0, (400, 400)))
            writer.write(_random_event(rng, 1, (200, 200)))
    assert _leftovers(tmp_path) == []


def test_eventfile_existing_file_needs_overwrite(tmp_path):
    path = tmp_path / "events.h5"
    path.write_bytes(b"old")
    with pytest.raises(EventFileError, match="already exists; pass --overwrite"):
        EventFileWriter(path, {})
    assert path.read_bytes() == b"old"
    rng = np.random.default_rng(10)
    with EventFileWriter(path, {}, overwrite=True) as writer:
        writer.write(_random_event(rng, 0))
    assert count_events(path) == 1
    assert _leftovers(tmp_path) == ["events.h5"]


def test_eventfile_missing_folder_rejected(tmp_path):
    with pytest.raises(EventFileError, match="does not exist"):
        EventFileWriter(tmp_path / "absent" / "events.h5", {})
    assert _leftovers(tmp_path) == []


def test_eventfile_read_only_folder_rejected(tmp_path):
    # Root writes into any folder whatever its mode, so as root use /proc, where no process can
    # create files.
    if os.geteuid() == 0:
        with pytest.raises(EventFileError, match="not writable"):
            EventFileWriter("/proc/events.h5", {})
        assert not os.path.exists("/proc/events.h5")
        return
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(EventFileError, match="not writable"):
            EventFileWriter(folder / "events.h5", {})
        assert _leftovers(folder) == []
    finally:
        folder.chmod(0o755)


def test_eventfile_killed_writer_reads_committed_events(tmp_path, caplog):
    # A real writer process is killed with SIGKILL after two flushes; its temporary file must read
    # back exactly the committed events and the target name must not exist.
    script = textwrap.dedent(
        f"""
        import os, signal
        import numpy as np
        from raylar.data.types import Event
        from raylar.sim.eventfile import EventFileWriter
        with EventFileWriter({str(tmp_path / "events.h5")!r}, {{}}) as writer:
            for i in range(30):
                writer.write(Event(i, i % 5, (400, 400), np.array([i], np.int32), np.array([i], np.int32),
                                   np.array([float(i)], np.float32), {{"i": i}}))
                if i in (9, 19):
                    writer.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    assert not (tmp_path / "events.h5").exists()
    partial = glob.glob(str(tmp_path / ".events.h5.*.partial"))
    assert len(partial) == 1
    assert count_events(partial[0]) == 20
    events = list(read_events(partial[0]))
    assert [e.event_id for e in events] == list(range(20))
    assert events[-1].truth == {"i": 19}
    assert read_attrs(partial[0])["complete"] is False
    assert "was not closed by its writer" in caplog.text

    # The next writer of the same name finishes its file, keeps the leftover and names it.
    caplog.clear()
    with EventFileWriter(tmp_path / "events.h5", {}) as writer:
        writer.write(Event(0, 0, (400, 400), np.array([0], np.int32), np.array([0], np.int32),
                           np.array([1.0], np.float32), {}))
    assert count_events(tmp_path / "events.h5") == 1
    assert glob.glob(str(tmp_path / ".events.h5.*.partial")) == partial
    size_mb = os.path.getsize(partial[0]) / 1e6
    assert f"{partial[0]} ({size_mb:.1f} MB) was left by an earlier writer" in caplog.text


def test_eventfile_truncated_file_rejected(tmp_path):
    rng = np.random.default_rng(12)
    path = tmp_path / "events.h5"
    with EventFileWriter(path, {}) as writer:
        for i in range(50):
            writer.write(_random_event(rng, i))
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(EventFileError, match="cut.h5"):
        list(read_events(cut))


def test_eventfile_other_files_rejected(tmp_path):
    with pytest.raises(EventFileError, match="not found"):
        count_events(tmp_path / "none.h5")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(EventFileError, match="not a readable HDF5 file"):
        count_events(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1, 2, 3]
    with pytest.raises(EventFileError, match="not a raylar event file"):
        count_events(other)


def test_eventfile_writer_flushes_while_streaming(tmp_path):
    # The writer keeps at most FLUSH_EVENTS events in memory: after 300 writes, 256 are committed.
    from raylar.sim import eventfile

    rng = np.random.default_rng(13)
    path = tmp_path / "events.h5"
    with EventFileWriter(path, {}) as writer:
        for i in range(300):
            writer.write(_random_event(rng, i))
        assert eventfile.FLUSH_EVENTS == 256
        assert writer.num_events == 256
    assert count_events(path) == 300


def test_eventfile_directory_rejected(tmp_path):
    with pytest.raises(EventFileError, match=f"{tmp_path} is a directory; give the event file inside it"):
        count_events(tmp_path)
