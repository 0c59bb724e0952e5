"""EventStore: a dataset held as blocks of compressed events in Ray's object store.

``EventStore.load`` cuts the source into slices of ``events_per_block`` events.
One Ray task per slice reads, validates and encodes its events and returns them
as one uint8 block. The block stays in the object store, owned by the driver,
so every worker of a node maps it zero-copy. The driver keeps only the index
(block, byte offset, length, label, event id per event) and the ObjectRefs, so
the store pickles into a few kilobytes and travels in Ray Train's
``train_loop_config``. Training and validation sets share the same blocks.
"""

import time
from dataclasses import asdict, dataclass

import numpy as np

from raylar.data.codec import CodecError, check_buffer, check_options, encode
from raylar.data.sampler import check_enough_events
from raylar.data.sources import DataFormatError, EventSource, open_source
from raylar.data.validate import DataValidationError, check_dataset, check_event
from raylar.log import get_logger

logger = get_logger(__name__)


@dataclass
class StoreStats:
    """Size and loading time of an EventStore; ``raw_bytes`` counts float32 dense images."""

    dlt_s: float
    num_events: int
    raw_bytes: int
    compressed_bytes: int
    ratio: float
    codec: str
    compressor: str
    level: int
    num_blocks: int
    image_shape: tuple[int, int]
    num_hits: int

    def __getitem__(self, key: str):
        return getattr(self, key)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StoreSplit:
    """One subset (training or validation) of an EventStore: the index rows of its events."""

    name: str
    blocks: list  # ObjectRefs of uint8 blocks, shared with the other split
    block: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    labels: np.ndarray
    event_ids: np.ndarray
    image_shape: tuple[int, int]
    codec: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def class_counts(self) -> list[int]:
        """Return the number of events of each class 0-4."""
        return np.bincount(self.labels, minlength=5).tolist()


@dataclass
class EventStore:
    """A loaded dataset: ``train`` and ``val`` splits over shared blocks, and ``stats``."""

    train: StoreSplit
    val: StoreSplit
    stats: StoreStats
    source: dict

    @classmethod
    def load(
        cls,
        source,
        codec: str = "sparse",
        val_fraction: float = 0.2,
        seed: int = 0,
        events_per_block: int = 64,
        compressor: str = "lz4",
        level: int = 5,
    ) -> "EventStore":
        """Load ``source`` (anything ``open_source`` takes) into the running Ray cluster's object store.

        Raises ``DataValidationError``, ``DataFormatError`` or ``CodecError`` that
        name the file and event before any training can start.
        """
        import ray

        check_options(codec, compressor, level)
        if not 0 <= val_fraction < 1:
            raise ValueError(f"invalid val_fraction {val_fraction!r}; expected a number in [0, 1)")
        if not isinstance(events_per_block, int) or events_per_block < 1:
            raise ValueError(f"invalid events_per_block {events_per_block!r}; expected an integer >= 1")
        if not ray.is_initialized():
            raise RuntimeError("Ray is not running; call raylar.cluster.start_ray() before EventStore.load")
        source = open_source(source)
        num_events = len(source)
        check_dataset(np.arange(num_events), [], source.location)

        start_time = time.perf_counter()
        encode_slice = ray.remote(num_returns=2)(_encode_slice)
        block_refs, info_refs = [], []
        for start in range(0, num_events, events_per_block):
            stop = min(start + events_per_block, num_events)
            block_ref, info_ref = encode_slice.remote(source, start, stop, codec, compressor, level)
            block_refs.append(block_ref)
            info_refs.append(info_ref)
        infos = _get_unwrapped(info_refs, block_refs)
        ray.wait(block_refs, num_returns=len(block_refs), fetch_local=False)
        dlt_s = time.perf_counter() - start_time

        index = {
            key: np.concatenate([info[key] for info in infos])
            for key in ("offset", "length", "label", "event_id")
        }
        index["block"] = np.concatenate(
            [np.full(len(info["label"]), number, dtype=np.int32) for number, info in enumerate(infos)]
        )
        shapes = [shape for info in infos for shape in info["shapes"]]
        check_dataset(index["event_id"], shapes, source.location)
        image_shape = shapes[0]

        val_mask = stratified_val_mask(index["label"], val_fraction, seed)
        train = _split("train", block_refs, index, ~val_mask, image_shape, codec)
        val = _split("val", block_refs, index, val_mask, image_shape, codec)
        if len(train) == 0:
            raise DataValidationError(
                f"{source.location}: the training set is empty after a validation fraction of "
                f"{val_fraction}; lower val_fraction or add events"
            )

        compressed = int(index["length"].sum())
        raw = num_events * image_shape[0] * image_shape[1] * 4
        stats = StoreStats(
            dlt_s=dlt_s,
            num_events=num_events,
            raw_bytes=raw,
            compressed_bytes=compressed,
            ratio=raw / compressed,
            codec=codec,
            compressor=compressor,
            level=level,
            num_blocks=len(block_refs),
            image_shape=tuple(image_shape),
            num_hits=int(sum(info["hits"] for info in infos)),
        )
        logger.info(
            "loaded %d events (%d train, %d val) of %s: %s codec, %s level %d, image %d x %d, "
            "%.1f MB compressed in %d blocks, ratio %.0fx to float32 dense, DLT %.2f s",
            num_events, len(train), len(val), source.location, codec, compressor, level,
            image_shape[0], image_shape[1], compressed / 1e6, len(block_refs), stats.ratio, dlt_s,
        )
        return cls(train=train, val=val, stats=stats, source=source.describe())


    def check_workers(self, world_size: int, batch_size: int, val_batch_size: int | None = None) -> None:
        """Raise ``InsufficientEventsError`` unless every worker gets at least one full batch.

        The training set is always checked; the validation set only when
        ``val_batch_size`` is given (for a validation that is sharded across workers too).
        """
        check_enough_events(len(self.train), world_size, batch_size, what="training set")
        if val_batch_size is not None:
            check_enough_events(len(self.val), world_size, val_batch_size, what="validation set")

    def verify(self) -> int:
        """Check the header, size and checksum of every stored event; return the number checked.

        Raises ``CodecError`` naming the split, entry and event of the first bad buffer.
        """
        import ray

        checked = 0
        for split in (self.train, self.val):
            for position in range(len(split)):
                block = ray.get(split.blocks[int(split.block[position])])
                offset = int(split.offset[position])
                try:
                    header = check_buffer(block[offset : offset + int(split.length[position])])
                except CodecError as error:
                    raise CodecError(f"{split.name} entry {position}: {error}") from None
                if header.event_id != split.event_ids[position]:
                    raise CodecError(
                        f"{split.name} entry {position}: the buffer contains event {header.event_id}, "
                        f"the index expects {split.event_ids[position]}"
                    )
                checked += 1
        return checked


def stratified_val_mask(labels: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Return a boolean mask of validation events: ``val_fraction`` of each class, chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(labels.shape[0], dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        mask[members[: int(round(val_fraction * members.size))]] = True
    return mask


def _split(name, blocks, index, mask, image_shape, codec) -> StoreSplit:
    return StoreSplit(
        name=name,
        blocks=blocks,
        block=index["block"][mask],
        offset=index["offset"][mask],
        length=index["length"][mask],
        labels=index["label"][mask],
        event_ids=index["event_id"][mask],
        image_shape=tuple(image_shape),
        codec=codec,
    )


def _encode_slice(source: EventSource, start: int, stop: int, codec: str, compressor: str, level: int):
    """Read, validate and encode events [start, stop) of ``source``; return the block and its index."""
    events = source.read(start, stop)
    if len(events) != stop - start:
        raise DataFormatError(
            f"{source.location}: reading entries [{start}, {stop}) returned {len(events)} events"
        )
    buffers = []
    for position, event in enumerate(events):
        check_event(event, source.location, start + position)
        buffers.append(encode(event, codec=codec, compressor=compressor, level=level))
    lengths = np.array([len(buffer) for buffer in buffers], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    block = np.frombuffer(b"".join(buffers), dtype=np.uint8)
    info = {
        "offset": offsets,
        "length": lengths,
        "label": np.array([event.label for event in events], dtype=np.int64),
        "event_id": np.array([event.event_id for event in events], dtype=np.int64),
        "shapes": [tuple(int(side) for side in event.shape) for event in events],
        "hits": sum(event.num_hits for event in events),
    }
    return block, info


def _get_unwrapped(refs: list, other_refs: list):
    """``ray.get`` that re-raises raylar's data errors from a task without Ray's wrapper.

    On failure the errors of all ``refs`` and ``other_refs`` are collected, so
    Ray does not log them again as unhandled.
    """
    import ray

    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as error:
        for ref in [*refs, *other_refs]:
            try:
                ray.get(ref)
            except ray.exceptions.RayError:
                pass
        cause = getattr(error, "cause", None)
        if isinstance(cause, DataValidationError | DataFormatError | CodecError | IndexError):
            raise cause from None
        raise

