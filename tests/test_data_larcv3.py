"""larcv3 sparse2d writer -> reader round trip and the reader's errors on bad files."""

import h5py
import numpy as np
import pytest

from raylar.data.larcv3 import CLASS_PDG, LArCV3Source, list_products, write_larcv3
from raylar.data.sources import DataFormatError, H5EventSource, open_source
from raylar.data.types import Event


def track_event(event_id: int, label: int, shape=(120, 150), seed: int = 0) -> Event:
    rng = np.random.default_rng([seed, event_id])
    count = int(rng.integers(20, 80))
    flat = np.sort(rng.choice(shape[0] * shape[1], count, replace=False))
    values = rng.gamma(2.0, 30.0, count).astype(np.float32) + 10.0
    return Event(
        event_id, label, shape, (flat // shape[1]).astype(np.int32), (flat % shape[1]).astype(np.int32), values
    )


@pytest.fixture
def events():
    return [track_event(index, index % 5) for index in range(12)]


@pytest.fixture
def larcv3_file(tmp_path, events):
    other_plane = [track_event(index, index % 5, seed=1) for index in range(12)]
    return write_larcv3(tmp_path / "planes.h5", {0: other_plane, 2: events}, producer="wire")


def test_round_trip_chosen_projection(larcv3_file, events):
    source = LArCV3Source(larcv3_file, producer="wire", projection=2)
    assert len(source) == len(events)
    read = source.read(0, len(source))
    for entry, (expected, actual) in enumerate(zip(events, read, strict=True)):
        assert actual.event_id == entry
        assert actual.truth["event"] == expected.event_id
        assert actual.label == expected.label
        assert actual.shape == expected.shape
        assert np.array_equal(actual.rows, expected.rows)
        assert np.array_equal(actual.cols, expected.cols)
        assert actual.values.tobytes() == expected.values.tobytes()


def test_read_slice_matches_full_read(larcv3_file):
    source = LArCV3Source(larcv3_file, producer="wire", projection=0)
    full = source.read(0, len(source))
    part = source.read(4, 9)
    for expected, actual in zip(full[4:9], part, strict=True):
        assert actual.event_id == expected.event_id
        assert np.array_equal(actual.dense(), expected.dense())


def test_layout_follows_larcv3(larcv3_file, events):
    with h5py.File(larcv3_file, "r") as file:
        group = file["Data/sparse2d_wire_group"]
        assert sorted(group) == ["extents", "image_meta", "voxel_extents", "voxels"]
        assert group["extents"].dtype.names == ("first", "N")
        assert group["voxel_extents"].dtype.names == ("first", "N", "ID")
        assert group["voxels"].dtype.names == ("id", "value")
        assert set(group["image_meta"].dtype.names) >= {
            "valid", "projection_id", "image_sizes", "number_of_voxels", "origin",
        }
        assert file["Events/event_id"].dtype.names == ("run", "subrun", "event")
        extent = group["extents"][3]
        assert extent["N"] == 2
        voxel_extent = group["voxel_extents"][extent["first"] + 1]
        assert voxel_extent["ID"] == 2
        assert voxel_extent["N"] == events[3].num_hits
        ids = group["voxels"][voxel_extent["first"] : voxel_extent["first"] + voxel_extent["N"]]["id"]
        assert np.array_equal(ids, events[3].rows.astype(np.uint64) * 150 + events[3].cols)
        pdg = file["Data/particle_wire_group/particles"]["pdg"][:]
        assert pdg.tolist() == [CLASS_PDG[event.label] for event in events]


def test_labels_from_file(larcv3_file, tmp_path, events):
    label_file = tmp_path / "labels.txt"
    label_file.write_text("# class per entry\n" + "\n".join(str((e.label + 1) % 5) for e in events))
    source = LArCV3Source(larcv3_file, producer="wire", projection=2, labels=str(label_file))
    assert [event.label for event in source.read(0, 12)] == [(e.label + 1) % 5 for e in events]


def test_labels_from_sequence(larcv3_file):
    source = LArCV3Source(larcv3_file, producer="wire", projection=2, labels=[3] * 12)
    assert {event.label for event in source.read(0, 12)} == {3}


def test_label_file_wrong_length_raises(larcv3_file, tmp_path):
    label_file = tmp_path / "labels.npy"
    np.save(label_file, np.zeros(5, dtype=np.int64))
    with pytest.raises(DataFormatError, match=r"labels.npy has \(5,\) labels, expected one per event"):
        LArCV3Source(larcv3_file, producer="wire", projection=2, labels=str(label_file))


def test_missing_producer_lists_existing(larcv3_file):
    with pytest.raises(DataFormatError, match=r"producer 'segment' not found .* are \['wire'\]"):
        LArCV3Source(larcv3_file, producer="segment", projection=0)


def test_missing_projection_lists_existing(larcv3_file):
    with pytest.raises(DataFormatError, match=r"projection 1 not found .* projections are \[0, 2\]"):
        LArCV3Source(larcv3_file, producer="wire", projection=1)


def test_missing_particle_producer_lists_existing(larcv3_file):
    with pytest.raises(DataFormatError, match=r"particle producer 'mc' not found .* \['wire'\]"):
        LArCV3Source(larcv3_file, producer="wire", projection=0, labels="particle:mc")


def test_missing_dataset_named(larcv3_file):
    with h5py.File(larcv3_file, "a") as file:
        del file["Data/sparse2d_wire_group/voxel_extents"]
    with pytest.raises(DataFormatError, match="Data/sparse2d_wire_group/voxel_extents is missing"):
        LArCV3Source(larcv3_file, producer="wire", projection=0)


def test_foreign_pdg_code_named(larcv3_file):
    with h5py.File(larcv3_file, "a") as file:
        particles = file["Data/particle_wire_group/particles"]
        row = particles[5]
        row["pdg"] = 2212
        particles[5] = row
    with pytest.raises(DataFormatError, match="entry 5 has PDG code 2212"):
        LArCV3Source(larcv3_file, producer="wire", projection=0)


def test_missing_file_raises(tmp_path):
    with pytest.raises(DataFormatError, match="data file not found: .*absent.h5"):
        LArCV3Source(tmp_path / "absent.h5", producer="wire")


def test_not_hdf5_raises(tmp_path):
    path = tmp_path / "events.h5"
    path.write_text("run,event\n1,2\n")
    with pytest.raises(DataFormatError, match="is not an HDF5 file"):
        LArCV3Source(path, producer="wire")
    with pytest.raises(DataFormatError, match="is not an HDF5 file"):
        open_source(str(path))


def test_hdf5_of_other_layout_raises(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=np.zeros((2, 4, 4)))
    with pytest.raises(DataFormatError, match="'Data' is missing"):
        LArCV3Source(path, producer="wire")
    with pytest.raises(DataFormatError, match="cannot read .*other.h5 as a raylar event file"):
        H5EventSource(path)


def test_open_source_asks_for_producer(larcv3_file):
    with pytest.raises(DataFormatError, match="is a larcv3 file: name its producer"):
        open_source(larcv3_file)
    source = open_source({"kind": "larcv3", "path": larcv3_file, "producer": "wire", "projection": 2})
    assert source.describe()["projection"] == 2
    assert list_products(larcv3_file) == ["wire"]
    assert list_products(larcv3_file, "particle") == ["wire"]


def test_writer_refuses_to_overwrite(larcv3_file, events):
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_larcv3(larcv3_file, events)


def test_inspect_command_prints_summary(larcv3_file, capsys):
    from raylar.data.__main__ import main

    assert main(["inspect", str(larcv3_file), "--producer", "wire", "--projection", "2"]) == 0
    output = capsys.readouterr().out
    assert "events      12 (12 measured below)" in output
    assert "classes     gamma 3, electron 3, muon 2, pion 2, kaon 2" in output
    assert "image       120 x 150" in output
    assert "sparse codec" in output
    assert "dense  codec" in output


def test_inspect_command_reports_bad_projection(larcv3_file, capsys):
    from raylar.data.__main__ import main

    assert main(["inspect", str(larcv3_file), "--projection", "7"]) == 1
    assert "projection 7 not found" in capsys.readouterr().err


def test_h5_event_file_round_trip(tmp_path, events):
    from raylar.sim.eventfile import EventFileWriter

    path = tmp_path / "events.h5"
    with EventFileWriter(path, attrs={"seed": 3}) as writer:
        for event in events:
            writer.write(event)
    source = open_source(str(path))
    assert isinstance(source, H5EventSource)
    assert len(source) == len(events)
    assert source.describe()["seed"] == 3
    for expected, actual in zip(events[3:7], source.read(3, 7), strict=True):
        assert actual.event_id == expected.event_id
        assert actual.label == expected.label
        assert np.array_equal(actual.dense(), expected.dense())


def test_h5_event_file_range_checked(tmp_path, events):
    from raylar.sim.eventfile import EventFileWriter

    path = tmp_path / "events.h5"
    with EventFileWriter(path) as writer:
        for event in events:
            writer.write(event)
    with pytest.raises(IndexError, match=r"invalid event range \[10, 20\) for .*events.h5, which has 12"):
        H5EventSource(path).read(10, 20)
