"""EpochSampler shards and the uniqueness audit."""

import numpy as np
import pytest

from raylar.data.audit import DuplicateSampleError, UniquenessAudit, check_unique, sample_hash
from raylar.data.sampler import EpochSampler, InsufficientEventsError, check_enough_events


@pytest.mark.parametrize("world_size", range(1, 9))
def test_shards_disjoint_and_cover(world_size):
    num_samples, batch_size = 203, 4
    for epoch in range(4):
        shards = [
            EpochSampler(num_samples, world_size, rank, batch_size, seed=3).shard(epoch)
            for rank in range(world_size)
        ]
        union = np.concatenate(shards)
        per_worker = num_samples // (world_size * batch_size) * batch_size
        assert all(len(shard) == per_worker for shard in shards)
        assert len(np.unique(union)) == len(union)
        assert union.min() >= 0
        assert union.max() < num_samples
        assert num_samples - len(union) < world_size * batch_size


@pytest.mark.parametrize("world_size", range(1, 9))
def test_batches_match_shard(world_size):
    sampler = EpochSampler(100, world_size, world_size - 1, 3, seed=1)
    batches = list(sampler.batches(2))
    assert len(batches) == sampler.batches_per_epoch
    assert all(len(batch) == 3 for batch in batches)
    assert np.array_equal(np.concatenate(batches), sampler.shard(2))


def test_epochs_differ_and_repeat():
    sampler = EpochSampler(50, 2, 0, 5, seed=9)
    assert not np.array_equal(sampler.shard(0), sampler.shard(1))
    assert np.array_equal(sampler.shard(1), EpochSampler(50, 2, 0, 5, seed=9).shard(1))
    assert not np.array_equal(sampler.shard(1), EpochSampler(50, 2, 0, 5, seed=10).shard(1))


def test_dropped_samples_change_per_epoch():
    sampler = EpochSampler(10, 3, 0, 3, seed=0)
    assert sampler.dropped_per_epoch == 1
    dropped = set()
    for epoch in range(20):
        covered = np.concatenate([EpochSampler(10, 3, r, 3, seed=0).shard(epoch) for r in range(3)])
        dropped |= set(range(10)) - set(covered.tolist())
    assert len(dropped) > 1


def test_resume_mid_epoch():
    sampler = EpochSampler(64, 2, 1, 4, seed=5)
    full = list(sampler.batches(3))
    resumed = list(EpochSampler(64, 2, 1, 4, seed=5).batches(3, start_batch=5))
    assert len(resumed) == len(full) - 5
    for expected, actual in zip(full[5:], resumed, strict=True):
        assert np.array_equal(expected, actual)
    assert list(sampler.batches(3, start_batch=sampler.batches_per_epoch)) == []


def test_resume_past_end_raises():
    sampler = EpochSampler(64, 2, 1, 4)
    with pytest.raises(ValueError, match="start_batch"):
        list(sampler.batches(0, start_batch=sampler.batches_per_epoch + 1))


def test_too_few_events_raises():
    with pytest.raises(InsufficientEventsError, match="7 events, fewer than 2 workers x batch size 4 = 8"):
        EpochSampler(7, 2, 0, 4)
    with pytest.raises(InsufficientEventsError, match="validation set"):
        check_enough_events(3, 4, 1, what="validation set")


@pytest.mark.parametrize(
    "arguments, message",
    [((10, 0, 0, 1), "world_size"), ((10, 2, 2, 1), "rank"), ((10, 1, 0, 0), "batch_size")],
)
def test_invalid_arguments_raise(arguments, message):
    with pytest.raises(ValueError, match=message):
        EpochSampler(*arguments)


def audit_epoch(num_samples, world_size, batch_size, epoch, plant=None):
    """Record every worker's batches of one epoch as the loader would; ``plant`` repeats one batch."""
    payloads = [np.full(5, index, dtype=np.int32) for index in range(num_samples)]
    gathered = []
    for rank in range(world_size):
        audit = UniquenessAudit(rank)
        batches = list(EpochSampler(num_samples, world_size, rank, batch_size, seed=2).batches(epoch))
        if plant is not None and rank == plant:
            batches.append(batches[0])
        for batch in batches:
            audit.record(batch.tolist(), [sample_hash(payloads[i]) for i in batch])
        gathered.append(audit.records())
    return gathered


@pytest.mark.parametrize("world_size", [1, 3, 8])
def test_audit_passes_clean_epoch(world_size):
    gathered = audit_epoch(97, world_size, 4, epoch=1)
    assert check_unique(gathered, epoch=1) == world_size * (97 // (world_size * 4)) * 4


def test_audit_catches_replayed_batch():
    gathered = audit_epoch(40, 2, 4, epoch=0, plant=1)
    with pytest.raises(DuplicateSampleError, match=r"epoch 0: 4 events were trained more than once"):
        check_unique(gathered, epoch=0)


def test_audit_names_duplicate_across_workers():
    first, second = UniquenessAudit(0), UniquenessAudit(1)
    first.record([1, 2], ["a", "b"])
    second.record([3, 2], ["c", "b"])
    with pytest.raises(DuplicateSampleError, match=r"event 2 by ranks \[0, 1\]"):
        check_unique([first.records(), second.records()], epoch=4)


def test_audit_catches_same_content_under_two_ids():
    audit = UniquenessAudit(0)
    payload = np.arange(10, dtype=np.float32)
    audit.record([7, 8], [sample_hash(payload), sample_hash(payload.copy())])
    with pytest.raises(DuplicateSampleError, match=r"identical content.*\[7, 8\]"):
        check_unique(audit.records(), epoch=0)


def test_audit_accepts_flat_list_records():
    records = [[0, 1, "a"], [1, 2, "b"], [1, 1, "a"]]
    with pytest.raises(DuplicateSampleError, match=r"event 1 by ranks \[0, 1\]"):
        check_unique(records, epoch=0)
    assert check_unique([[0, 1, "a"], [1, 2, "b"]], epoch=0) == 2


def test_audit_reset_forgets_records():
    audit = UniquenessAudit(0)
    audit.record([1], ["a"])
    audit.reset()
    assert audit.records() == []


def test_audit_length_mismatch_raises():
    with pytest.raises(ValueError, match="2 event ids but 1 hashes"):
        UniquenessAudit(0).record([1, 2], ["a"])
