"""BLOSC codec for one event: sparse hits (the default) or the dense image.

A buffer is a fixed header, a table of compressed chunk lengths, the event's
truth as JSON, then the BLOSC chunks::

    header  magic "RLEV", format version, codec, dtype, compressor, level,
            shape (rows, cols), count, event id, label, number of chunks,
            raw payload bytes, truth bytes, and a CRC-32 of all other bytes of the buffer
    table   one uint64 compressed length per chunk
    truth   UTF-8 JSON
    chunks  BLOSC buffers that decompress, in order, to the raw payload

The sparse payload is the int32 rows, then the int32 cols, then the float32
values of the hits, all 4-byte words, compressed with bitshuffle and typesize 4.
The dense payload is the float32 image in row-major order, also typesize 4.
``count`` is the number of hits (sparse) or pixels (dense). The payload is cut
into chunks below BLOSC's 2 GB buffer limit, so large images are split, not
rejected. The checksum is verified before any byte reaches BLOSC, so a corrupt
or truncated buffer raises ``CodecError`` instead of returning garbage.
"""

import json
import struct
import zlib
from dataclasses import dataclass

import blosc
import numpy as np

from raylar.data.types import Event

MAGIC = b"RLEV"
FORMAT_VERSION = 1
CODECS = ("sparse", "dense")
COMPRESSORS = ("lz4", "zstd", "blosclz")
TYPESIZE = 4
# The largest chunk BLOSC 1.x accepts, rounded down to whole 4-byte words.
MAX_CHUNK_BYTES = (blosc.MAX_BUFFERSIZE // TYPESIZE) * TYPESIZE

_DTYPE_CODES = {np.dtype(np.float32): 1}
_DTYPES = {code: dtype for dtype, code in _DTYPE_CODES.items()}
# magic, version, codec, dtype, compressor, level, rows, cols, count, event id,
# label, chunks, payload bytes, truth bytes, checksum
_HEADER = struct.Struct("<4sBBBBBIIQqhIQII")
HEADER_BYTES = _HEADER.size
_CHECKSUM_OFFSET = HEADER_BYTES - 4


class CodecError(ValueError):
    """An encoded event buffer is truncated, corrupted or of an unknown format."""


@dataclass(frozen=True)
class Header:
    """The fixed fields at the start of an encoded event."""

    codec: str
    dtype: np.dtype
    compressor: str
    level: int
    shape: tuple[int, int]
    count: int
    event_id: int
    label: int
    num_chunks: int
    payload_bytes: int
    truth_bytes: int
    checksum: int

    @property
    def body_offset(self) -> int:
        """Byte offset of the first BLOSC chunk."""
        return HEADER_BYTES + 8 * self.num_chunks + self.truth_bytes


def encode(
    event: Event,
    codec: str = "sparse",
    compressor: str = "lz4",
    level: int = 5,
    max_chunk_bytes: int = MAX_CHUNK_BYTES,
) -> bytes:
    """Compress ``event`` into one self-describing buffer (see the module docstring)."""
    check_options(codec, compressor, level)
    if max_chunk_bytes < TYPESIZE or max_chunk_bytes > MAX_CHUNK_BYTES or max_chunk_bytes % TYPESIZE:
        raise ValueError(
            f"invalid max_chunk_bytes {max_chunk_bytes}: it must be a multiple of {TYPESIZE} "
            f"between {TYPESIZE} and {MAX_CHUNK_BYTES}"
        )
    rows, cols = (int(side) for side in event.shape)
    if codec == "sparse":
        payload = _sparse_payload(event)
        count = event.num_hits
    else:
        payload = event.dense().reshape(-1).view(np.uint8)
        count = rows * cols

    chunks = [
        blosc.compress(
            payload[start : start + max_chunk_bytes],
            typesize=TYPESIZE,
            clevel=level,
            shuffle=blosc.BITSHUFFLE,
            cname=compressor,
        )
        for start in range(0, max(payload.nbytes, 1), max_chunk_bytes)
    ]
    if payload.nbytes == 0:
        chunks = []
    truth = json.dumps(event.truth or {}, default=_json_default, sort_keys=True).encode()
    table = np.array([len(chunk) for chunk in chunks], dtype="<u8").tobytes()

    fields = (
        MAGIC,
        FORMAT_VERSION,
        CODECS.index(codec),
        _DTYPE_CODES[np.dtype(np.float32)],
        COMPRESSORS.index(compressor),
        level,
        rows,
        cols,
        count,
        int(event.event_id),
        int(event.label),
        len(chunks),
        payload.nbytes,
        len(truth),
    )
    checksum = zlib.crc32(_HEADER.pack(*fields, 0)[:_CHECKSUM_OFFSET])
    for part in (table, truth, *chunks):
        checksum = zlib.crc32(part, checksum)
    header = _HEADER.pack(*fields, checksum)
    return b"".join([header, table, truth, *chunks])


def read_header(buffer) -> Header:
    """Parse and check the fixed header of an encoded event."""
    view = memoryview(buffer).cast("B")
    if view.nbytes < HEADER_BYTES:
        raise CodecError(
            f"truncated event buffer: {view.nbytes} bytes, shorter than the {HEADER_BYTES}-byte header"
        )
    fields = _HEADER.unpack_from(view, 0)
    magic, version, codec, dtype, compressor, level, rows, cols, count = fields[:9]
    event_id, label, num_chunks, payload_bytes, truth_bytes, checksum = fields[9:]
    if magic != MAGIC:
        raise CodecError(f"not a raylar event buffer: it starts with {bytes(magic)!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise CodecError(
            f"unsupported event buffer version {version}; this raylar reads version {FORMAT_VERSION}"
        )
    if codec >= len(CODECS) or dtype not in _DTYPES or compressor >= len(COMPRESSORS):
        raise CodecError(
            f"corrupted header of event {event_id}: codec {codec}, dtype {dtype}, compressor {compressor}"
        )
    expected_payload = 3 * TYPESIZE * count if CODECS[codec] == "sparse" else TYPESIZE * rows * cols
    if payload_bytes != expected_payload:
        raise CodecError(
            f"corrupted header of event {event_id}: {payload_bytes} payload bytes for count {count} "
            f"and shape ({rows}, {cols}), expected {expected_payload}"
        )
    return Header(
        CODECS[codec], _DTYPES[dtype], COMPRESSORS[compressor], level, (rows, cols), count,
        event_id, label, num_chunks, payload_bytes, truth_bytes, checksum,
    )


def check_buffer(buffer) -> Header:
    """Check an encoded event's header, size and checksum without decompressing it; return the header."""
    view = memoryview(buffer).cast("B")
    header = read_header(view)
    table_end = HEADER_BYTES + 8 * header.num_chunks
    if view.nbytes < header.body_offset:
        raise CodecError(
            f"truncated buffer of event {header.event_id}: {view.nbytes} bytes, "
            f"the chunk table and truth alone need {header.body_offset}"
        )
    lengths = np.frombuffer(view[HEADER_BYTES:table_end], dtype="<u8")
    expected_size = header.body_offset + int(lengths.sum())
    if view.nbytes != expected_size:
        raise CodecError(
            f"truncated or padded buffer of event {header.event_id}: {view.nbytes} bytes, "
            f"its header and chunk table describe {expected_size}"
        )
    checksum = zlib.crc32(view[HEADER_BYTES:], zlib.crc32(view[:_CHECKSUM_OFFSET]))
    if checksum != header.checksum:
        raise CodecError(
            f"corrupted buffer of event {header.event_id}: checksum mismatch; "
            "rebuild the store or re-read the source file"
        )
    return header


def decode_payload(buffer, out: np.ndarray | None = None) -> tuple[Header, np.ndarray, dict]:
    """Check and decompress an encoded event; return its header, raw payload bytes and truth.

    The payload is a writable uint8 array of ``header.payload_bytes``: the start
    of ``out`` when that contiguous uint8 array is large enough (reusing one
    buffer spares the page faults of a fresh allocation), else a new array.
    """
    view = memoryview(buffer).cast("B")
    header = check_buffer(view)
    table_end = HEADER_BYTES + 8 * header.num_chunks
    lengths = np.frombuffer(view[HEADER_BYTES:table_end], dtype="<u8")
    truth = json.loads(bytes(view[table_end : header.body_offset]).decode())
    if out is not None and out.dtype == np.uint8 and out.flags.c_contiguous and out.nbytes >= header.payload_bytes:
        payload = out.reshape(-1)[: header.payload_bytes]
    else:
        payload = np.empty(header.payload_bytes, dtype=np.uint8)
    address = payload.__array_interface__["data"][0]
    position = header.body_offset
    written = 0
    for length in lengths.tolist():
        chunk = view[position : position + length]
        # BLOSC 1.x chunk header: bytes 4-8 raw size, bytes 12-16 compressed size.
        raw_size, compressed_size = struct.unpack_from("<I4xI", chunk, 4) if length >= 16 else (0, 0)
        if compressed_size != length or written + raw_size > header.payload_bytes:
            raise CodecError(
                f"corrupted buffer of event {header.event_id}: chunk at byte {position} "
                "does not match the chunk table or exceeds the payload"
            )
        blosc.decompress_ptr(chunk, address + written)
        written += raw_size
        position += length
    if written != header.payload_bytes:
        raise CodecError(
            f"corrupted buffer of event {header.event_id}: {written} payload bytes decompressed, "
            f"expected {header.payload_bytes}"
        )
    return header, payload, truth


def decode(buffer) -> Event:
    """Decompress an encoded event back into an ``Event``.

    The sparse codec returns the hits in their encoded order, bit for bit. The
    dense codec returns the non-zero pixels of the image in row-major order.
    """
    header, payload, truth = decode_payload(buffer)
    rows, cols, values = payload_to_hits(header, payload)
    return Event(header.event_id, header.label, header.shape, rows, cols, values, truth)


def payload_to_hits(header: Header, payload: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split a decompressed payload into int32 rows, int32 cols and float32 values."""
    if header.codec == "sparse":
        words = payload.view(np.int32)
        count = header.count
        return words[:count], words[count : 2 * count], words[2 * count :].view(np.float32)
    image = payload.view(np.float32).reshape(header.shape)
    rows, cols = np.nonzero(image)
    return rows.astype(np.int32), cols.astype(np.int32), image[rows, cols]


def payload_to_image(header: Header, payload: np.ndarray) -> np.ndarray:
    """Return a decompressed payload as a float32 image of ``header.shape`` (densified on the CPU)."""
    if header.codec == "dense":
        return payload.view(np.float32).reshape(header.shape)
    rows, cols, values = payload_to_hits(header, payload)
    image = np.zeros(header.shape, dtype=np.float32)
    image[rows, cols] = values
    return image


def _sparse_payload(event: Event) -> np.ndarray:
    count = event.num_hits
    if event.rows.shape != (count,) or event.cols.shape != (count,):
        raise ValueError(
            f"event {event.event_id}: rows {event.rows.shape}, cols {event.cols.shape} and "
            f"values {event.values.shape} must be 1-D arrays of the same length"
        )
    words = np.empty(3 * count, dtype=np.int32)
    words[:count] = event.rows
    words[count : 2 * count] = event.cols
    words[2 * count :].view(np.float32)[:] = event.values
    return words.view(np.uint8)


def check_options(codec: str, compressor: str, level: int) -> None:
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose one of {list(CODECS)}")
    if compressor not in COMPRESSORS:
        raise ValueError(f"unknown compressor {compressor!r}; choose one of {list(COMPRESSORS)}")
    if not isinstance(level, int) or not 0 <= level <= 9:
        raise ValueError(f"invalid compression level {level!r}; it must be an integer from 0 to 9")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
