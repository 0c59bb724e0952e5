"""Epoch sampling without replacement: one seeded permutation per epoch, one disjoint shard per worker.

Remainder rule (drop): each worker gets ``batches_per_epoch = num_samples //
(world_size * batch_size)`` full batches. Worker ``r`` takes the contiguous
slice ``[r * L, (r + 1) * L)`` of the epoch's permutation, with ``L =
batches_per_epoch * batch_size``. The last ``num_samples - world_size * L``
samples of the permutation are not trained in that epoch. The permutation
changes every epoch, so a different, random set is dropped each time, and all
workers run the same number of equal-sized steps, as allreduce requires.
"""

from collections.abc import Iterator

import numpy as np


class InsufficientEventsError(ValueError):
    """A dataset has fewer events than one batch for every worker."""


def check_enough_events(num_samples: int, world_size: int, batch_size: int, what: str = "training set") -> None:
    """Raise ``InsufficientEventsError`` unless every worker gets at least one full batch."""
    if num_samples < world_size * batch_size:
        raise InsufficientEventsError(
            f"the {what} has {num_samples} events, fewer than {world_size} workers x batch size "
            f"{batch_size} = {world_size * batch_size}; add events, or lower the number of "
            "workers or the batch size"
        )


class EpochSampler:
    """The sample indices one worker trains on, per epoch and per batch.

    Deterministic in (seed, epoch, world size): every worker computes the same
    permutation independently, so no communication is needed.
    """

    def __init__(self, num_samples: int, world_size: int, rank: int, batch_size: int, seed: int = 0):
        for name, value, minimum in (
            ("num_samples", num_samples, 0),
            ("world_size", world_size, 1),
            ("batch_size", batch_size, 1),
        ):
            if not isinstance(value, int | np.integer) or value < minimum:
                raise ValueError(f"invalid {name} {value!r}; expected an integer >= {minimum}")
        if not isinstance(rank, int | np.integer) or not 0 <= rank < world_size:
            raise ValueError(f"invalid rank {rank!r} for world size {world_size}; expected 0-{world_size - 1}")
        check_enough_events(num_samples, world_size, batch_size)
        self.num_samples = int(num_samples)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.batches_per_epoch = self.num_samples // (self.world_size * self.batch_size)
        self.shard_size = self.batches_per_epoch * self.batch_size

    @property
    def dropped_per_epoch(self) -> int:
        """Samples of each epoch's permutation that no worker trains on (the remainder)."""
        return self.num_samples - self.world_size * self.shard_size

    def permutation(self, epoch: int) -> np.ndarray:
        """Return the epoch's permutation of all sample indices (the same on every worker)."""
        if not isinstance(epoch, int | np.integer) or epoch < 0:
            raise ValueError(f"invalid epoch {epoch!r}; expected an integer >= 0")
        rng = np.random.default_rng([self.seed, int(epoch)])
        return rng.permutation(self.num_samples)

    def shard(self, epoch: int) -> np.ndarray:
        """Return this worker's sample indices for ``epoch``, in training order."""
        start = self.rank * self.shard_size
        return self.permutation(epoch)[start : start + self.shard_size]

    def batches(self, epoch: int, start_batch: int = 0) -> Iterator[np.ndarray]:
        """Yield this worker's batches of ``epoch``, beginning at batch ``start_batch`` (for resuming)."""
        if not isinstance(start_batch, int | np.integer) or not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(
                f"invalid start_batch {start_batch!r}; an epoch has {self.batches_per_epoch} batches"
            )
        shard = self.shard(epoch)
        for batch in range(int(start_batch), self.batches_per_epoch):
            yield shard[batch * self.batch_size : (batch + 1) * self.batch_size]

    def __len__(self) -> int:
        return self.batches_per_epoch
