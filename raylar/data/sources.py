"""Event sources behind one interface: raylar's HDF5 event files, larcv3 files and the simulator.

Every source is small and picklable, so a Ray task can receive one and read its
own slice of events: ``len(source)``, ``source.read(start, stop)`` (a list of
``Event``) and ``source.describe()`` (a dict for logs and MLflow parameters).
"""

import os
from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from raylar.data.types import Event


class DataFormatError(ValueError):
    """A data file is missing, unreadable or not laid out as its format prescribes."""


class EventSource:
    """Interface of all event sources; subclasses set ``location`` for error messages."""

    location: str = "<unknown source>"

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, start: int, stop: int) -> list[Event]:
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError

    def _check_range(self, start: int, stop: int) -> None:
        if not 0 <= start <= stop <= len(self):
            raise IndexError(
                f"invalid event range [{start}, {stop}) for {self.location}, which has {len(self)} events"
            )


def check_hdf5_file(path: str) -> str:
    """Return ``path`` made absolute; raise ``DataFormatError`` unless it is a readable HDF5 file."""
    import h5py

    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise DataFormatError(f"data file not found: {path}; check the path")
    if not os.path.isfile(path):
        raise DataFormatError(f"data path is not a file: {path}")
    if not h5py.is_hdf5(path):
        raise DataFormatError(
            f"{path} is not an HDF5 file; raylar reads its own HDF5 event files and larcv3 files"
        )
    return path


class H5EventSource(EventSource):
    """raylar's own HDF5 event files, as ``raylar.sim.eventfile`` writes them."""

    def __init__(self, path: str):
        self.path = check_hdf5_file(path)
        self.location = self.path
        eventfile = _eventfile()
        try:
            self._num_events = int(eventfile.count_events(self.path))
            self._attrs = dict(eventfile.read_attrs(self.path))
        except (eventfile.EventFileError, KeyError, ValueError, OSError) as error:
            raise DataFormatError(
                f"cannot read {self.path} as a raylar event file: {error}. Write event files with "
                "python -m raylar.simulate, or open larcv3 files with LArCV3Source"
            ) from error

    def __len__(self) -> int:
        return self._num_events

    def read(self, start: int, stop: int) -> list[Event]:
        self._check_range(start, stop)
        if start == stop:
            return []
        return list(_eventfile().read_events(self.path, start, stop))

    def describe(self) -> dict:
        return {"kind": "h5", "path": self.path, "num_events": self._num_events, **_plain(self._attrs)}


class SimulatedSource(EventSource):
    """Events generated on demand by ``raylar.sim.simulate_event``; no files needed."""

    def __init__(self, num_events: int, seed: int = 0, sim_config=None):
        from raylar.sim import SimConfig

        if not isinstance(num_events, int) or num_events < 0:
            raise ValueError(f"invalid number of simulated events {num_events!r}; expected an integer >= 0")
        if sim_config is None:
            sim_config = SimConfig()
        elif isinstance(sim_config, Mapping):
            sim_config = SimConfig.from_dict(dict(sim_config))
        self.num_events = num_events
        self.seed = int(seed)
        self.sim_config = sim_config
        self.location = f"simulated events (seed {self.seed})"

    def __len__(self) -> int:
        return self.num_events

    def read(self, start: int, stop: int) -> list[Event]:
        from raylar.sim import simulate_event

        self._check_range(start, stop)
        return [simulate_event(index, self.seed, self.sim_config) for index in range(start, stop)]

    def describe(self) -> dict:
        return {
            "kind": "simulated",
            "num_events": self.num_events,
            "seed": self.seed,
            "sim": _plain(self.sim_config.to_dict()),
        }


class EventListSource(EventSource):
    """Events already in memory (from a notebook, a test or another reader); pickled with their hits."""

    def __init__(self, events: list[Event], name: str = "in-memory events"):
        self.events = list(events)
        self.location = name

    def __len__(self) -> int:
        return len(self.events)

    def read(self, start: int, stop: int) -> list[Event]:
        self._check_range(start, stop)
        return self.events[start:stop]

    def describe(self) -> dict:
        return {"kind": "memory", "name": self.location, "num_events": len(self.events)}


class ConcatSource(EventSource):
    """Several sources read as one dataset, in order, e.g. the files of one production.

    With ``renumber_ids`` every event gets its position in the whole dataset as
    its id, and the original id goes to ``truth["source_event_id"]``. Use it
    when the files number their events independently (larcv3 entry numbers do).
    """

    def __init__(self, sources, renumber_ids: bool = False):
        self.sources = [open_source(source) for source in sources]
        if not self.sources:
            raise ValueError("ConcatSource needs at least one source")
        self.renumber_ids = renumber_ids
        self.starts = np.cumsum([0] + [len(source) for source in self.sources]).tolist()
        self.location = f"{len(self.sources)} sources from {self.sources[0].location}"

    def __len__(self) -> int:
        return self.starts[-1]

    def read(self, start: int, stop: int) -> list[Event]:
        self._check_range(start, stop)
        events = []
        for number, source in enumerate(self.sources):
            first, last = self.starts[number], self.starts[number + 1]
            if last <= start or first >= stop:
                continue
            events.extend(source.read(max(start, first) - first, min(stop, last) - first))
        if self.renumber_ids:
            events = [
                replace(event, event_id=position, truth={**event.truth, "source_event_id": event.event_id})
                for position, event in enumerate(events, start=start)
            ]
        return events

    def describe(self) -> dict:
        return {
            "kind": "concat",
            "num_events": len(self),
            "renumber_ids": self.renumber_ids,
            "sources": [source.describe() for source in self.sources],
        }


def open_source(spec) -> EventSource:
    """Return the event source that ``spec`` describes.

    ``spec`` is one of:

    - an ``EventSource``, returned as is;
    - the path of a raylar event file (a larcv3 file needs the dict form, which names its producer);
    - the string ``"simulated:N"`` or ``"simulated:N:SEED"``;
    - a dict with ``kind`` (``"h5"``, ``"larcv3"`` or ``"simulated"``) and that class's keyword arguments;
    - a list or tuple of the above, read as one ``ConcatSource``.
    """
    from raylar.data.larcv3 import LArCV3Source, is_larcv3_file

    if isinstance(spec, EventSource):
        return spec
    if isinstance(spec, list | tuple):
        return ConcatSource(spec)
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if isinstance(spec, str):
        if spec.startswith("simulated:"):
            parts = spec.split(":")[1:]
            try:
                numbers = [int(part) for part in parts]
            except ValueError:
                numbers = []
            if len(numbers) not in (1, 2):
                raise ValueError(f"invalid source {spec!r}; expected simulated:NUM_EVENTS[:SEED]")
            return SimulatedSource(*numbers)
        path = check_hdf5_file(spec)
        if is_larcv3_file(path):
            raise DataFormatError(
                f"{path} is a larcv3 file: name its producer and projection, for example "
                f"{{'kind': 'larcv3', 'path': {path!r}, 'producer': ..., 'projection': 0}}; "
                f"its sparse2d producers are listed by python -m raylar.data inspect {path}"
            )
        return H5EventSource(path)
    if isinstance(spec, Mapping):
        options = dict(spec)
        kind = options.pop("kind", None)
        classes = {"h5": H5EventSource, "larcv3": LArCV3Source, "simulated": SimulatedSource}
        if kind not in classes:
            raise ValueError(f"invalid source kind {kind!r} in {dict(spec)}; choose one of {list(classes)}")
        return classes[kind](**options)
    raise TypeError(f"cannot open an event source from {spec!r} of type {type(spec).__name__}")


def _eventfile():
    from raylar.sim import eventfile

    return eventfile


def _plain(values: Mapping) -> dict:
    """Copy ``values`` with numpy scalars and arrays turned into plain Python values."""
    plain = {}
    for key, value in values.items():
        if hasattr(value, "tolist"):
            value = value.tolist()
        elif isinstance(value, bytes):
            value = value.decode(errors="replace")
        plain[key] = value
    return plain
