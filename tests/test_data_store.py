"""EventStore and BatchLoader on a real Ray cluster: loading, splitting, 2-worker epochs with the audit."""

import pickle
import sys
import threading

import numpy as np
import pytest
import ray
import torch

from raylar.data.audit import DuplicateSampleError, UniquenessAudit, check_unique
from raylar.data.codec import CodecError
from raylar.data.loader import BatchLoader
from raylar.data.sampler import EpochSampler, InsufficientEventsError
from raylar.data.sources import ConcatSource, DataFormatError, EventListSource, SimulatedSource
from raylar.data.store import EventStore, StoreSplit
from raylar.data.types import Event, SparseBatch
from raylar.data.validate import DataValidationError

# The remote functions below are defined in this test module, which Ray's
# workers cannot import, so they travel by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SHAPE = (150, 150)


def track_event(event_id: int, label: int, shape=SHAPE, seed: int = 0) -> Event:
    rng = np.random.default_rng([seed, event_id])
    count = int(rng.integers(30, 120))
    flat = np.sort(rng.choice(shape[0] * shape[1], count, replace=False))
    values = rng.gamma(2.0, 30.0, count).astype(np.float32) + 10.0
    return Event(
        event_id, label, shape, (flat // shape[1]).astype(np.int32), (flat % shape[1]).astype(np.int32), values
    )


def make_events(count: int) -> list[Event]:
    return [track_event(100 + index, index % 5) for index in range(count)]


@pytest.fixture(scope="module")
def events():
    return make_events(60)


@pytest.fixture(scope="module")
def store(ray_cluster, events):
    return EventStore.load(EventListSource(events, "test events"), val_fraction=0.2, seed=4, events_per_block=8)


def test_store_stats(store, events):
    stats = store.stats
    assert stats.num_events == len(events)
    assert stats.num_blocks == 8
    assert stats.raw_bytes == len(events) * SHAPE[0] * SHAPE[1] * 4
    assert stats.compressed_bytes == int(store.train.length.sum() + store.val.length.sum())
    assert stats.ratio == pytest.approx(stats.raw_bytes / stats.compressed_bytes)
    assert stats.dlt_s > 0
    assert stats.num_hits == sum(event.num_hits for event in events)


def test_split_stratified_and_disjoint(store):
    # 12 events per class; round(0.2 * 12) = 2 of each go to validation.
    assert len(store.train) == 50
    assert len(store.val) == 10
    assert store.val.class_counts() == [2, 2, 2, 2, 2]
    assert store.train.class_counts() == [10, 10, 10, 10, 10]
    assert not set(store.train.event_ids.tolist()) & set(store.val.event_ids.tolist())
    assert store.train.blocks is store.val.blocks


def test_split_depends_on_seed(ray_cluster, events, store):
    again = EventStore.load(EventListSource(events), val_fraction=0.2, seed=4, events_per_block=8)
    other = EventStore.load(EventListSource(events), val_fraction=0.2, seed=5, events_per_block=8)
    assert np.array_equal(again.val.event_ids, store.val.event_ids)
    assert not np.array_equal(other.val.event_ids, store.val.event_ids)


def test_store_pickles_small(store):
    payload = pickle.dumps(store)
    assert len(payload) < 20_000
    copy = pickle.loads(payload)
    assert np.array_equal(copy.train.event_ids, store.train.event_ids)


@pytest.mark.parametrize("codec", ["sparse", "dense"])
def test_loader_dense_output_matches_events(ray_cluster, events, codec):
    store = EventStore.load(EventListSource(events), codec=codec, val_fraction=0.0, events_per_block=16)
    by_id = {event.event_id: event for event in events}
    batches = [np.arange(0, 10), np.arange(10, 20)]
    for batch in BatchLoader(store.train, batches, output="dense"):
        assert batch.inputs.shape == (10, 1, *SHAPE)
        assert batch.inputs.dtype == torch.float32
        for sample, event_id in enumerate(batch.event_ids.tolist()):
            assert np.array_equal(batch.inputs[sample, 0].numpy(), by_id[event_id].dense())
            assert int(batch.labels[sample]) == by_id[event_id].label
        assert batch.wait_s >= 0


@pytest.mark.parametrize("codec", ["sparse", "dense"])
def test_loader_sparse_output(ray_cluster, events, codec):
    store = EventStore.load(EventListSource(events[:12]), codec=codec, val_fraction=0.0, events_per_block=6)
    by_id = {event.event_id: event for event in events}
    (batch,) = list(BatchLoader(store.train, [np.array([5, 0, 7])], output="sparse"))
    assert isinstance(batch.inputs, SparseBatch)
    assert batch.inputs.spatial_shape == SHAPE
    assert batch.inputs.batch_size == 3
    assert batch.inputs.coords.dtype == torch.int32
    assert batch.inputs.features.shape == (batch.inputs.coords.shape[0], 1)
    for sample, event_id in enumerate(batch.event_ids.tolist()):
        event = by_id[event_id]
        mine = batch.inputs.coords[:, 0] == sample
        assert np.array_equal(batch.inputs.coords[mine, 1].numpy(), event.rows)
        assert np.array_equal(batch.inputs.coords[mine, 2].numpy(), event.cols)
        assert np.array_equal(batch.inputs.features[mine, 0].numpy(), event.values)


def test_loader_stops_when_consumer_breaks(store):
    before = threading.active_count()
    sampler = EpochSampler(len(store.train), 1, 0, 2, seed=0)
    loader = BatchLoader(store.train, sampler.batches(0), prefetch=1)
    for number, _ in enumerate(loader):
        if number == 1:
            break
    assert not loader._thread.is_alive()
    assert threading.active_count() == before


def test_loader_iterates_once(store):
    loader = BatchLoader(store.train, [np.array([0])])
    list(loader)
    with pytest.raises(RuntimeError, match="iterates once"):
        list(loader)


def test_loader_reports_corrupted_block(ray_cluster, events):
    store = EventStore.load(EventListSource(events[:10]), val_fraction=0.0, events_per_block=10)
    block = ray.get(store.train.blocks[0]).copy()
    block[int(store.train.offset[3]) + 70] ^= 0xFF
    broken = StoreSplit(**{**store.train.__dict__, "blocks": [ray.put(block)]})
    loader = BatchLoader(broken, [np.array([0, 1]), np.array([2, 3])])
    with pytest.raises(CodecError, match=f"event {events[3].event_id}: checksum mismatch"):
        list(loader)


def test_verify_checks_every_event(store):
    assert store.verify() == 60


def test_verify_finds_corrupted_event(ray_cluster, events):
    store = EventStore.load(EventListSource(events[:10]), val_fraction=0.0, events_per_block=10)
    block = ray.get(store.train.blocks[0]).copy()
    block[int(store.train.offset[6] + store.train.length[6]) - 10] ^= 0x01
    store.train.blocks[0] = ray.put(block)
    with pytest.raises(CodecError, match=f"train entry 6: corrupted buffer of event {events[6].event_id}"):
        store.verify()


def test_loader_reports_truncated_block(ray_cluster, events):
    store = EventStore.load(EventListSource(events[:4]), val_fraction=0.0, events_per_block=4)
    block = ray.get(store.train.blocks[0])
    cut = int(store.train.offset[3]) + 30
    broken = StoreSplit(**{**store.train.__dict__, "blocks": [ray.put(block[:cut].copy())]})
    with pytest.raises(CodecError, match="truncated"):
        list(BatchLoader(broken, [np.array([3])]))


@ray.remote(num_cpus=1)
def train_shard(store: EventStore, world_size: int, rank: int, epoch: int, batch_size: int, replay: bool):
    """What one training worker does with the data path in an epoch; returns its audit records."""
    sampler = EpochSampler(len(store.train), world_size, rank, batch_size, seed=11)
    batches = list(sampler.batches(epoch))
    if replay:
        batches.append(batches[0])
    audit = UniquenessAudit(rank)
    seen = 0
    for batch in BatchLoader(store.train, batches, output="dense", prefetch=2, audit=audit):
        assert batch.inputs.shape[0] == batch_size
        seen += batch.inputs.shape[0]
    return audit.records(), seen


def test_two_workers_epoch_audited(store):
    for epoch in range(2):
        results = ray.get([train_shard.remote(store, 2, rank, epoch, 4, False) for rank in range(2)])
        gathered = [records for records, _ in results]
        assert check_unique(gathered, epoch) == 2 * (50 // 8) * 4
        assert sum(seen for _, seen in results) == 48
        trained = {event_id for records in gathered for _, event_id, _ in records}
        assert trained <= set(store.train.event_ids.tolist())


def test_two_workers_audit_catches_replay(store):
    results = ray.get([train_shard.remote(store, 2, rank, 0, 4, rank == 1) for rank in range(2)])
    with pytest.raises(DuplicateSampleError, match="4 events were trained more than once"):
        check_unique([records for records, _ in results], epoch=0)


def test_too_few_events_for_workers(store):
    with pytest.raises(InsufficientEventsError, match="10 events, fewer than 4 workers x batch size 4"):
        EpochSampler(len(store.val), 4, 0, 4)
    with pytest.raises(InsufficientEventsError, match="training set has 50 events, fewer than 8 workers"):
        store.check_workers(world_size=8, batch_size=8)
    with pytest.raises(InsufficientEventsError, match="validation set has 10 events, fewer than 2 workers"):
        store.check_workers(world_size=2, batch_size=4, val_batch_size=8)
    store.check_workers(world_size=2, batch_size=4, val_batch_size=4)


def bad_event(kind: str) -> Event:
    event = track_event(7, 2)
    if kind == "nan":
        event.values[5] = np.nan
    elif kind == "inf":
        event.values[2] = np.inf
    elif kind == "label":
        event.label = 5
    elif kind == "negative label":
        event.label = -1
    elif kind == "outside":
        event.rows[0] = SHAPE[0]
    return event


@pytest.mark.parametrize(
    "kind, message",
    [
        ("nan", "entry 13 \\(event id 7\\): 1 pixel values are NaN or infinite"),
        ("inf", "entry 13 \\(event id 7\\): 1 pixel values are NaN or infinite, the first inf"),
        ("label", "entry 13 \\(event id 7\\): label 5 is outside the classes 0-4"),
        ("negative label", "entry 13 \\(event id 7\\): label -1 is outside the classes 0-4"),
        ("outside", "entry 13 \\(event id 7\\): hit \\(row 150, col .*\\) lies outside the 150 x 150 image"),
    ],
)
def test_bad_event_rejected_before_training(ray_cluster, kind, message):
    events = make_events(20)
    events[13] = bad_event(kind)
    with pytest.raises(DataValidationError, match=f"bad.h5, {message}"):
        EventStore.load(EventListSource(events, "bad.h5"), events_per_block=8)


def test_empty_dataset_rejected(ray_cluster):
    with pytest.raises(DataValidationError, match="empty dataset: none.h5 has no events"):
        EventStore.load(EventListSource([], "none.h5"))


def test_repeated_event_ids_rejected(ray_cluster):
    events = make_events(10)
    events[6].event_id = events[2].event_id
    with pytest.raises(DataValidationError, match=r"event ids \[102\] occur more than once"):
        EventStore.load(EventListSource(events, "twice.h5"))


def test_mixed_shapes_rejected(ray_cluster):
    events = make_events(10)
    events[4] = track_event(999, 1, shape=(300, 300))
    with pytest.raises(DataValidationError, match=r"different image shapes \[\(150, 150\), \(300, 300\)\]"):
        EventStore.load(EventListSource(events, "mixed.h5"))


def test_missing_file_rejected(ray_cluster, tmp_path):
    with pytest.raises(DataFormatError, match="data file not found"):
        EventStore.load(str(tmp_path / "absent.h5"))


def test_empty_training_set_rejected(ray_cluster):
    with pytest.raises(DataValidationError, match="training set is empty"):
        EventStore.load(EventListSource([track_event(1, 0)]), val_fraction=0.9)


def test_concatenated_files_renumbered(ray_cluster, tmp_path):
    from raylar.data.larcv3 import write_larcv3

    first = write_larcv3(tmp_path / "a.h5", make_events(7), producer="wire")
    second = write_larcv3(tmp_path / "b.h5", make_events(5), producer="wire")
    specs = [{"kind": "larcv3", "path": path, "producer": "wire"} for path in (first, second)]
    with pytest.raises(DataValidationError, match="occur more than once"):
        EventStore.load(specs)
    source = ConcatSource(specs, renumber_ids=True)
    events = source.read(5, 9)
    assert [event.event_id for event in events] == [5, 6, 7, 8]
    assert [event.truth["source_event_id"] for event in events] == [5, 6, 0, 1]
    store = EventStore.load(source, val_fraction=0.0, events_per_block=4)
    assert sorted(store.train.event_ids.tolist()) == list(range(12))


def test_simulated_source_store(ray_cluster):
    try:
        from raylar.sim import SimConfig, simulate_event  # noqa: F401
    except ImportError:
        pytest.skip("raylar.sim.simulate_event is not available yet")
    source = SimulatedSource(10, seed=3, sim_config=SimConfig(downsample=24))
    store = EventStore.load(source, val_fraction=0.2, events_per_block=5)
    assert store.stats.num_events == 10
    assert store.stats.image_shape == (150, 150)
    assert store.source["kind"] == "simulated"
