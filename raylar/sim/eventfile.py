"""raylar's HDF5 event file: many sparse collection-plane images in one file.

Layout (``docs/simulator.md`` has the full schema):

- root attributes: ``format`` ("raylar-events"), ``format_version``, ``shape`` (rows, cols),
  ``committed_events`` (events whose data is completely written), ``complete`` (the writer
  closed normally), plus the caller's attributes (generator configuration as JSON, seed, ...);
- ``hits/wire``, ``hits/tick`` (int32) and ``hits/value`` (float32, ADC counts): the non-zero
  pixels of all events end to end, chunked and compressed with the Blosc filter of hdf5plugin;
- ``events/hit_start``, ``events/num_hits`` (int64), ``events/label`` (int32),
  ``events/event_id`` (int64) and ``events/truth`` (JSON text), one entry per event.

The writer streams: it buffers a bounded number of hits, appends them, flushes the file and only
then raises ``committed_events``. A reader trusts ``committed_events`` and ignores anything beyond
it, so a file whose writer was killed reads up to its last committed event (with a warning), and a
file damaged beyond that raises ``EventFileError``. The writer works on a temporary name in the
target folder and renames it at the end, so a failed run leaves no file under the target name.
"""

import json
import os
import tempfile
from collections.abc import Iterator

import h5py
import hdf5plugin
import numpy as np

from raylar.data.types import Event
from raylar.log import get_logger

log = get_logger(__name__)

FORMAT_NAME = "raylar-events"
FORMAT_VERSION = 1
HIT_CHUNK = 1 << 16
EVENT_CHUNK = 1024
FLUSH_HITS = 1 << 20
FLUSH_EVENTS = 256
RESERVED_ATTRS = ("format", "format_version", "shape", "committed_events", "complete")


class EventFileError(Exception):
    """An event file that is missing, unreadable, damaged or of the wrong format."""


def _compression() -> dict:
    return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))


def _attr_value(value):
    # HDF5 attributes take numbers, strings and arrays; anything else is stored as JSON.
    if isinstance(value, (str, int, float, bool, np.integer, np.floating)):
        return value
    return json.dumps(value, sort_keys=True)


def check_output_path(path: str, overwrite: bool = False) -> str:
    """Return the absolute output path, or raise before any work if it cannot be written."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise EventFileError(
            f"output path {path} is a directory; give a file name such as {path}/events.h5"
        )
    if not os.path.isdir(folder):
        raise EventFileError(
            f"output folder {folder} does not exist; create it first or choose another --out"
        )
    # Creating a probe file catches read-only file systems too, where os.access() still returns True for root.
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise EventFileError(
            f"output folder {folder} is not writable ({error.strerror}); choose a writable location for --out"
        ) from error
    if os.path.exists(path) and not overwrite:
        raise EventFileError(f"output file {path} already exists; pass --overwrite to replace it")
    return path


class EventFileWriter:
    """Streaming writer of an event file; use as a context manager.

    ``attrs`` become root attributes (values that are not numbers or strings are stored as
    JSON text). Every event must have the same ``shape``. On an exception inside the ``with``
    block the temporary file is removed and the target path is left untouched.
    """

    def __init__(self, path, attrs: dict | None = None, overwrite: bool = False):
        self.path = check_output_path(path, overwrite)
        self.attrs = dict(attrs or {})
        clash = sorted(set(self.attrs) & set(RESERVED_ATTRS))
        if clash:
            raise ValueError(f"attribute names {clash} are reserved by the event file format")
        self.overwrite = overwrite
        self._file = None
        self._temp_path = None
        self._shape = None
        self._pending: list[Event] = []
        self._pending_hits = 0
        self.num_events = 0
        self.num_hits = 0

    def __enter__(self) -> "EventFileWriter":
        folder = os.path.dirname(self.path)
        _warn_about_leftovers(self.path)
        handle, self._temp_path = tempfile.mkstemp(
            prefix=f".{os.path.basename(self.path)}.", suffix=".partial", dir=folder
        )
        os.close(handle)
        # mkstemp creates the file readable by its owner only; give it the usual permissions.
        os.chmod(self._temp_path, 0o644)
        try:
            self._file = h5py.File(self._temp_path, "w", track_order=False)
            self._create_layout()
        except BaseException:
            self._discard()
            raise
        return self

    def _create_layout(self) -> None:
        f = self._file
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["committed_events"] = 0
        f.attrs["complete"] = False
        for key in sorted(self.attrs):
            f.attrs[key] = _attr_value(self.attrs[key])
        hits = f.create_group("hits")
        for name, dtype in (("wire", np.int32), ("tick", np.int32), ("value", np.float32)):
            hits.create_dataset(
                name,
                shape=(0,),
                maxshape=(None,),
                dtype=dtype,
                chunks=(HIT_CHUNK,),
                **_compression(),
            )
        events = f.create_group("events")
        for name, dtype in (
            ("hit_start", np.int64),
            ("num_hits", np.int64),
            ("label", np.int32),
            ("event_id", np.int64),
        ):
            events.create_dataset(
                name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(EVENT_CHUNK,)
            )
        events.create_dataset(
            "truth", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype(), chunks=(EVENT_CHUNK,)
        )

    def write(self, event: Event) -> None:
        """Queue one event; the queue is appended to the file once it contains enough hits or events."""
        if self._file is None:
            raise RuntimeError("EventFileWriter.write() called outside its 'with' block")
        shape = tuple(int(n) for n in event.shape)
        if self._shape is None:
            self._shape = shape
            self._file.attrs["shape"] = np.asarray(shape, dtype=np.int64)
        elif shape != self._shape:
            raise ValueError(
                f"event {event.event_id} has shape {shape} but the file contains events of shape "
                f"{self._shape}; write events of one downsample factor per file"
            )
        self._pending.append(event)
        self._pending_hits += event.num_hits
        if self._pending_hits >= FLUSH_HITS or len(self._pending) >= FLUSH_EVENTS:
            self.flush()

    def flush(self) -> None:
        """Append the queued events, flush the file, then raise ``committed_events``."""
        if not self._pending:
            return
        f = self._file
        events = self._pending
        counts = np.array([e.num_hits for e in events], dtype=np.int64)
        starts = self.num_hits + np.concatenate(([0], np.cumsum(counts)[:-1]))
        new_hits = int(counts.sum())
        columns = {
            "wire": np.concatenate([np.asarray(e.rows, dtype=np.int32) for e in events]),
            "tick": np.concatenate([np.asarray(e.cols, dtype=np.int32) for e in events]),
            "value": np.concatenate([np.asarray(e.values, dtype=np.float32) for e in events]),
        }
        for name, data in columns.items():
            dataset = f["hits"][name]
            dataset.resize((self.num_hits + new_hits,))
            dataset[self.num_hits :] = data
        per_event = {
            "hit_start": starts,
            "num_hits": counts,
            "label": np.array([e.label for e in events], dtype=np.int32),
            "event_id": np.array([e.event_id for e in events], dtype=np.int64),
            "truth": np.array([json.dumps(e.truth, sort_keys=True) for e in events], dtype=object),
        }
        for name, data in per_event.items():
            dataset = f["events"][name]
            dataset.resize((self.num_events + len(events),))
            dataset[self.num_events :] = data
        # The data must be on disk before the counter that makes it visible to readers.
        f.flush()
        self.num_events += len(events)
        self.num_hits += new_hits
        f.attrs["committed_events"] = self.num_events
        f.flush()
        self._pending = []
        self._pending_hits = 0

    def _discard(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # noqa: BLE001 - the file is removed next; its state does not matter
                pass
            self._file = None
        if self._temp_path and os.path.exists(self._temp_path):
            os.remove(self._temp_path)

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            self.flush()
            if self._shape is None:
                raise EventFileError(
                    f"no events were written to {self.path}; the file was not created"
                )
            self._file.attrs["complete"] = True
            self._file.close()
            self._file = None
            if os.path.exists(self.path) and not self.overwrite:
                raise EventFileError(
                    f"output file {self.path} appeared while writing; pass --overwrite"
                )
            os.replace(self._temp_path, self.path)
            self._temp_path = None
        except BaseException:
            self._discard()
            raise
        log.info("wrote %d events (%d hits) to %s", self.num_events, self.num_hits, self.path)


def _warn_about_leftovers(path: str) -> None:
    """Log each unfinished temporary file of ``path``: a killed writer's, or one still writing.

    They are kept, not removed: the events committed so far can still be read.
    """
    prefix = f".{os.path.basename(path)}."
    folder = os.path.dirname(path)
    for name in sorted(os.listdir(folder)):
        if not (name.startswith(prefix) and name.endswith(".partial")):
            continue
        leftover = os.path.join(folder, name)
        size_mb = os.path.getsize(leftover) / 1e6
        log.warning(
            "%s (%.1f MB) was left by an earlier writer of %s that was killed or is still running; "
            "it holds the events committed so far and reads as an event file (--data), "
            "or delete it if not needed",
            leftover, size_mb, path,
        )


def _open(path) -> h5py.File:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise EventFileError(f"event file {path} not found")
    if os.path.isdir(path):
        raise EventFileError(f"{path} is a directory; give the event file inside it")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise EventFileError(
            f"event file {path} is not a readable HDF5 file ({error}); it may have been cut off "
            "while being written, so generate it again"
        ) from error
    if f.attrs.get("format") != FORMAT_NAME:
        f.close()
        raise EventFileError(
            f"{path} is an HDF5 file but not a raylar event file (no format={FORMAT_NAME!r})"
        )
    version = int(f.attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        f.close()
        raise EventFileError(
            f"event file {path} has format version {version}; this raylar reads {FORMAT_VERSION}"
        )
    return f


def _committed(f: h5py.File, path) -> int:
    committed = int(f.attrs["committed_events"])
    try:
        stored = min(
            f["events"][name].shape[0] for name in ("hit_start", "num_hits", "label", "truth")
        )
        if committed > stored:
            raise EventFileError(
                f"event file {path} records {committed} committed events but contains {stored}; the file is damaged"
            )
        if committed:
            end = int(f["events/hit_start"][committed - 1] + f["events/num_hits"][committed - 1])
            if end > min(f["hits"][name].shape[0] for name in ("wire", "tick", "value")):
                raise EventFileError(
                    f"event file {path} is missing hits of its last events; it is damaged"
                )
    except KeyError as error:
        raise EventFileError(
            f"event file {path} lacks a dataset ({error}); it is damaged"
        ) from error
    if not bool(f.attrs.get("complete", False)):
        log.warning(
            "event file %s was not closed by its writer; reading its %d committed events",
            path,
            committed,
        )
    return committed


def count_events(path) -> int:
    """Return the number of complete events in the file."""
    with _open(path) as f:
        return _committed(f, path)


def read_attrs(path) -> dict:
    """Return the root attributes; JSON text attributes are decoded into Python objects."""
    with _open(path) as f:
        attrs = {}
        for key, value in f.attrs.items():
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, str) and value[:1] in "{[":
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, np.generic):
                value = value.item()
            attrs[key] = value
        return attrs


def read_events(path, start: int = 0, stop: int | None = None) -> Iterator[Event]:
    """Yield the events ``start`` to ``stop`` (exclusive, like a slice) of the file in order."""
    with _open(path) as f:
        total = _committed(f, path)
        stop = total if stop is None else stop
        if not (0 <= start <= stop <= total):
            raise IndexError(
                f"event range [{start}, {stop}) is outside the {total} events of {path}"
            )
        shape = tuple(int(n) for n in f.attrs["shape"]) if total else (0, 0)
        events = f["events"]
        hits = f["hits"]
        block = 256
        for first in range(start, stop, block):
            last = min(first + block, stop)
            hit_start = events["hit_start"][first:last]
            num_hits = events["num_hits"][first:last]
            labels = events["label"][first:last]
            ids = events["event_id"][first:last]
            truths = events["truth"][first:last]
            lo = int(hit_start[0])
            hi = int(hit_start[-1] + num_hits[-1])
            wires = hits["wire"][lo:hi]
            ticks = hits["tick"][lo:hi]
            values = hits["value"][lo:hi]
            for i in range(last - first):
                a = int(hit_start[i]) - lo
                b = a + int(num_hits[i])
                truth = truths[i]
                yield Event(
                    event_id=int(ids[i]),
                    label=int(labels[i]),
                    shape=shape,
                    rows=wires[a:b].copy(),
                    cols=ticks[a:b].copy(),
                    values=values[a:b].copy(),
                    truth=json.loads(truth.decode() if isinstance(truth, bytes) else truth),
                )
