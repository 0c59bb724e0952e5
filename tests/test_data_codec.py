"""Codec round trips (bit-exact), chunk splitting and corrupt input."""

import numpy as np
import pytest

from raylar.data.codec import (
    HEADER_BYTES,
    CodecError,
    decode,
    decode_payload,
    encode,
    payload_to_image,
    read_header,
)
from raylar.data.types import Event


def simulated_events(count: int, downsample: int = 12) -> list[Event]:
    """Return simulated events, or track-like constructed ones until the simulator is importable."""
    try:
        from raylar.sim import SimConfig, simulate_event
    except ImportError:
        return [track_event(index, index % 5, (3600 // downsample,) * 2) for index in range(count)]
    config = SimConfig(downsample=downsample)
    return [simulate_event(index, 7, config) for index in range(count)]


def track_event(event_id: int, label: int, shape, seed: int = 0) -> Event:
    rng = np.random.default_rng([seed, event_id])
    steps = rng.integers(50, 200)
    angle = rng.uniform(0, 2 * np.pi)
    start = rng.uniform(0.2, 0.8, 2) * shape
    line = start + np.outer(np.arange(steps), [np.cos(angle), np.sin(angle)])
    pixels = np.unique(np.clip(line.astype(np.int64), 0, np.array(shape) - 1), axis=0)
    values = rng.gamma(2.0, 30.0, len(pixels)).astype(np.float32) + 10.0
    return Event(
        event_id, label, tuple(shape), pixels[:, 0].astype(np.int32), pixels[:, 1].astype(np.int32), values
    )


@pytest.fixture(scope="module")
def events():
    return simulated_events(6)


@pytest.mark.parametrize("compressor", ["lz4", "zstd", "blosclz"])
def test_sparse_round_trip_bit_exact(events, compressor):
    for event in events:
        decoded = decode(encode(event, codec="sparse", compressor=compressor, level=5))
        assert decoded.event_id == event.event_id
        assert decoded.label == event.label
        assert decoded.shape == tuple(event.shape)
        assert decoded.rows.dtype == np.int32
        assert decoded.cols.dtype == np.int32
        assert decoded.values.dtype == np.float32
        assert np.array_equal(decoded.rows, event.rows)
        assert np.array_equal(decoded.cols, event.cols)
        assert decoded.values.tobytes() == event.values.astype(np.float32).tobytes()


def test_dense_round_trip_bit_exact(events):
    for event in events:
        decoded = decode(encode(event, codec="dense"))
        assert decoded.event_id == event.event_id
        assert decoded.label == event.label
        assert decoded.dense().tobytes() == event.dense().tobytes()


def test_truth_round_trip():
    event = track_event(3, 1, (300, 300))
    event.truth = {"energy_mev": np.float64(512.5), "vertex": np.array([1.0, 2.0]), "pdg": 11}
    decoded = decode(encode(event))
    assert decoded.truth == {"energy_mev": 512.5, "vertex": [1.0, 2.0], "pdg": 11}


def test_header_fields():
    event = track_event(11, 4, (300, 600))
    header = read_header(encode(event, codec="sparse", compressor="zstd", level=3))
    assert header.codec == "sparse"
    assert header.compressor == "zstd"
    assert header.level == 3
    assert header.shape == (300, 600)
    assert header.count == event.num_hits
    assert header.dtype == np.float32
    assert header.event_id == 11
    assert header.label == 4


def test_split_into_chunks_round_trip():
    event = track_event(5, 2, (300, 300))
    buffer = encode(event, codec="dense", max_chunk_bytes=4096)
    header = read_header(buffer)
    assert header.num_chunks == 300 * 300 * 4 // 4096 + 1
    assert decode(buffer).dense().tobytes() == event.dense().tobytes()


def test_dense_payload_equals_image():
    event = track_event(6, 0, (240, 240))
    for codec in ("sparse", "dense"):
        header, payload, _ = decode_payload(encode(event, codec=codec))
        assert np.array_equal(payload_to_image(header, payload), event.dense())


def test_empty_event_round_trip():
    empty = np.zeros(0, dtype=np.int32)
    event = Event(1, 0, (60, 60), empty, empty, np.zeros(0, dtype=np.float32))
    decoded = decode(encode(event))
    assert decoded.num_hits == 0
    assert decoded.shape == (60, 60)


def test_sparse_buffer_at_most_raw_hits(events):
    for event in events:
        header = read_header(encode(event))
        assert len(encode(event)) <= header.body_offset + 12 * event.num_hits + 64


@pytest.mark.parametrize("cut", [0, 10, HEADER_BYTES, HEADER_BYTES + 4, -1, -100])
def test_truncated_buffer_raises(cut):
    buffer = encode(track_event(2, 1, (300, 300)))
    with pytest.raises(CodecError, match="truncated"):
        decode(buffer[:cut] if cut >= 0 else buffer[: len(buffer) + cut])


def test_corrupted_chunk_raises_checksum():
    buffer = bytearray(encode(track_event(2, 1, (300, 300))))
    buffer[-20] ^= 0x40
    with pytest.raises(CodecError, match="checksum"):
        decode(bytes(buffer))


def test_corrupted_count_raises():
    buffer = bytearray(encode(track_event(2, 1, (300, 300))))
    buffer[17] ^= 0x01  # lowest byte of the hit count
    with pytest.raises(CodecError, match="corrupted header"):
        decode(bytes(buffer))


@pytest.mark.parametrize("position", [25, 33])  # event id, label
def test_corrupted_header_field_raises(position):
    buffer = bytearray(encode(track_event(2, 1, (300, 300))))
    buffer[position] ^= 0x01
    with pytest.raises(CodecError, match="checksum"):
        decode(bytes(buffer))


def test_wrong_magic_raises():
    buffer = b"XXXX" + encode(track_event(2, 1, (300, 300)))[4:]
    with pytest.raises(CodecError, match="not a raylar event buffer"):
        decode(buffer)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"codec": "coo"}, "unknown codec"),
        ({"compressor": "snappy"}, "unknown compressor"),
        ({"level": 12}, "invalid compression level"),
        ({"max_chunk_bytes": 6}, "invalid max_chunk_bytes"),
    ],
)
def test_invalid_options_raise(options, message):
    with pytest.raises(ValueError, match=message):
        encode(track_event(1, 1, (60, 60)), **options)
