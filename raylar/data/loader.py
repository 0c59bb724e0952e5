"""BatchLoader: decompress the next batch on the worker while the model trains on the current one."""

import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from raylar.data.audit import UniquenessAudit, sample_hash
from raylar.data.codec import CodecError, decode_payload, payload_to_hits
from raylar.data.store import StoreSplit
from raylar.data.types import SparseBatch
from raylar.log import get_logger

logger = get_logger(__name__)

OUTPUTS = ("dense", "sparse")


@dataclass
class Batch:
    """One training step's input: ``inputs`` is a float32 (B, 1, H, W) tensor or a ``SparseBatch``.

    ``wait_s`` is how long the consumer waited for this batch, near zero when
    the background thread had it ready. ``decode_s`` is the background
    thread's time to fetch, decompress and assemble it.
    """

    inputs: object
    labels: "torch.Tensor"  # noqa: F821
    event_ids: np.ndarray
    wait_s: float
    decode_s: float = 0.0


class _End:
    pass


@dataclass
class _Failure:
    error: BaseException


class BatchLoader:
    """Iterate the batches of ``split`` whose indices ``batches`` yields (e.g. ``EpochSampler.batches``).

    A background thread fetches the blocks a batch needs (each block once, then
    cached), decompresses only that batch's events, and builds the tensors on
    ``device``: for ``output="dense"`` it copies the sparse hits to the device
    and scatters them into a zeroed tensor there; for ``output="sparse"`` it
    builds a ``SparseBatch``. At most ``prefetch`` batches wait in the queue.
    With an ``audit``, every decompressed sample's hash is recorded. One loader
    iterates once; stopping early (``break``, an exception, ``close()``) stops
    the thread.
    """

    def __init__(
        self,
        split: StoreSplit,
        batches,
        output: str = "dense",
        device="cpu",
        prefetch: int = 2,
        audit: UniquenessAudit | None = None,
    ):
        import torch

        if output not in OUTPUTS:
            raise ValueError(f"invalid output {output!r}; choose one of {list(OUTPUTS)}")
        if not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError(f"invalid prefetch {prefetch!r}; expected an integer >= 1")
        self.split = split
        self.output = output
        self.device = torch.device(device)
        self.prefetch = prefetch
        self.audit = audit
        self.wait_times: list[float] = []
        self._batches = batches
        self._blocks: dict[int, np.ndarray] = {}
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __iter__(self):
        if self._thread is not None:
            raise RuntimeError("a BatchLoader iterates once; create a new one for every epoch")
        self._thread = threading.Thread(target=self._produce, name="raylar-batch-loader", daemon=True)
        self._thread.start()
        try:
            while True:
                started = time.perf_counter()
                item = self._queue.get()
                waited = time.perf_counter() - started
                if isinstance(item, _End):
                    return
                if isinstance(item, _Failure):
                    raise item.error
                batch, hashes = item
                batch.wait_s = waited
                self.wait_times.append(waited)
                # Recorded when handed over, so prefetched batches never trained stay out of the audit.
                if self.audit is not None:
                    self.audit.record(batch.event_ids.tolist(), hashes)
                yield batch
        finally:
            self.close()

    def close(self) -> None:
        """Stop the background thread and drop the batches it prepared."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=60)
            if thread.is_alive():
                logger.warning("batch loader thread did not stop within 60 s; it is a daemon and is left")

    def __enter__(self) -> "BatchLoader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _produce(self) -> None:
        try:
            for indices in self._batches:
                if self._stop.is_set():
                    return
                if not self._put(self._assemble(np.asarray(indices, dtype=np.int64))):
                    return
            self._put(_End())
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self._put(_Failure(error))

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _block(self, number: int) -> np.ndarray:
        block = self._blocks.get(number)
        if block is None:
            import ray

            # NOTE: blocks stay cached for the loader's life; they are zero-copy
            # views of the node's object store, so the cost is mapped pages, not copies.
            block = ray.get(self.split.blocks[number])
            self._blocks[number] = block
        return block

    def _assemble(self, indices: np.ndarray) -> tuple[Batch, list[str]]:
        import torch

        started = time.perf_counter()
        split = self.split
        if indices.size == 0:
            raise ValueError("empty batch: the batch index array has no entries")
        if indices.min() < 0 or indices.max() >= len(split):
            raise IndexError(f"batch indices outside the {split.name} set of {len(split)} events")

        decoded, hashes = [], []
        for position in indices.tolist():
            block = self._block(int(split.block[position]))
            offset = int(split.offset[position])
            header, payload, _ = decode_payload(block[offset : offset + int(split.length[position])])
            if header.event_id != split.event_ids[position]:
                raise CodecError(
                    f"{split.name} entry {position}: the buffer contains event {header.event_id}, "
                    f"the index expects {split.event_ids[position]}; the store's index is inconsistent"
                )
            if self.audit is not None:
                hashes.append(sample_hash(payload))
            decoded.append((header, payload))

        event_ids = split.event_ids[indices]
        labels = torch.from_numpy(split.labels[indices].astype(np.int64)).to(self.device)
        height, width = split.image_shape
        if self.output == "dense" and split.codec == "dense":
            images = np.stack([payload.view(np.float32).reshape(height, width) for _, payload in decoded])
            inputs = torch.from_numpy(images[:, None]).to(self.device)
            return Batch(inputs, labels, event_ids, 0.0, time.perf_counter() - started), hashes

        samples = [payload_to_hits(header, payload) for header, payload in decoded]
        sample = np.concatenate(
            [np.full(hits[0].shape[0], number, dtype=np.int32) for number, hits in enumerate(samples)]
        )
        rows = np.concatenate([hits[0] for hits in samples])
        cols = np.concatenate([hits[1] for hits in samples])
        values = np.concatenate([hits[2] for hits in samples])

        if self.output == "sparse":
            coords = torch.from_numpy(np.stack([sample, rows, cols], axis=1)).to(self.device)
            features = torch.from_numpy(values).reshape(-1, 1).to(self.device)
            inputs = SparseBatch(coords, features, (height, width), len(samples))
        else:
            # Only the hits cross to the device; the zeroed image is made there.
            # NOTE: only run on CPU so far; the host-to-GPU copies are synchronous
            # (no pinned memory), which a GPU run should measure.
            inputs = torch.zeros((len(samples), 1, height, width), dtype=torch.float32, device=self.device)
            index = (
                torch.from_numpy(sample.astype(np.int64)).to(self.device),
                torch.zeros(sample.shape[0], dtype=torch.int64, device=self.device),
                torch.from_numpy(rows.astype(np.int64)).to(self.device),
                torch.from_numpy(cols.astype(np.int64)).to(self.device),
            )
            inputs.index_put_(index, torch.from_numpy(values).to(self.device))
        return Batch(inputs, labels, event_ids, 0.0, time.perf_counter() - started), hashes
