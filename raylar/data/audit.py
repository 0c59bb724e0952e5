"""Uniqueness audit: prove that no sample is trained twice in an epoch, across all workers.

Each worker records the event id and a hash of every decompressed sample it
trains on. At the end of the epoch the records of all workers are gathered, and
``check_unique`` fails loudly on an event id, or a sample's content, seen twice.
"""

import hashlib
from collections import defaultdict
from collections.abc import Iterable

import numpy as np


class DuplicateSampleError(RuntimeError):
    """A sample was trained more than once in one epoch."""


def sample_hash(*arrays: np.ndarray) -> str:
    """Return a 128-bit BLAKE2b hex digest of the bytes of ``arrays`` (a decompressed sample)."""
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        digest.update(np.ascontiguousarray(array).view(np.uint8))
    return digest.hexdigest()


class UniquenessAudit:
    """The (rank, event id, hash) records of the samples one worker trained on in the current epoch."""

    def __init__(self, rank: int = 0):
        self.rank = int(rank)
        self._records: list[tuple[int, int, str]] = []

    def record(self, event_ids: Iterable[int], hashes: Iterable[str]) -> None:
        event_ids, hashes = list(event_ids), list(hashes)
        if len(event_ids) != len(hashes):
            raise ValueError(f"{len(event_ids)} event ids but {len(hashes)} hashes; expected one hash per event")
        self._records.extend((self.rank, int(event_id), h) for event_id, h in zip(event_ids, hashes, strict=True))

    def records(self) -> list[tuple[int, int, str]]:
        """Return a copy of the records, ready to gather from all workers."""
        return list(self._records)

    def reset(self) -> None:
        """Forget the records, at the start of a new epoch."""
        self._records.clear()


def check_unique(records: Iterable, epoch: int) -> int:
    """Raise ``DuplicateSampleError`` if any event id or sample content occurs twice; return the count.

    ``records`` is the (rank, event id, hash) records of one epoch, either flat
    or as one list per worker (as an allgather returns them).
    """
    flat = []
    for item in records:
        if _is_record(item):
            flat.append(item)
        else:
            flat.extend(item)

    ranks_by_event = defaultdict(list)
    events_by_hash = defaultdict(set)
    for rank, event_id, digest in flat:
        ranks_by_event[int(event_id)].append(int(rank))
        events_by_hash[digest].add(int(event_id))

    repeated = {event_id: ranks for event_id, ranks in ranks_by_event.items() if len(ranks) > 1}
    if repeated:
        examples = ", ".join(
            f"event {event_id} by ranks {ranks}" for event_id, ranks in sorted(repeated.items())[:10]
        )
        raise DuplicateSampleError(
            f"epoch {epoch}: {len(repeated)} events were trained more than once: {examples}; "
            "the sampler's shards overlap or a batch was replayed"
        )
    same_content = [sorted(ids) for ids in events_by_hash.values() if len(ids) > 1]
    if same_content:
        raise DuplicateSampleError(
            f"epoch {epoch}: {len(same_content)} samples have identical content under different event ids, "
            f"for example {same_content[:5]}; the dataset holds duplicated events"
        )
    return len(flat)


def _is_record(item) -> bool:
    # A record is (rank, event id, hash); after a JSON round trip it may be a list.
    return isinstance(item, tuple | list) and len(item) == 3 and isinstance(item[2], str)
