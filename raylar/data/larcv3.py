"""larcv3 ``sparse2d`` files, read and written with h5py alone (no larcv C++ library).

A larcv3 file keeps one row per event in ``Events/event_id`` (run, subrun,
event) and each product in ``Data/<product>_<producer>_group``. A ``sparse2d``
group contains four datasets, chained by (first, N) ranges:

    extents        per event: first, N      -> rows of voxel_extents and image_meta
    voxel_extents  per projection: first, N, ID -> rows of voxels; ID is the projection
    voxels         id (flat pixel index), value
    image_meta     per projection: valid, projection_id, image_sizes,
                   number_of_voxels, origin

The flat index follows larcv3's ``ImageMeta::index``: the last axis varies
fastest, so ``id = coordinate0 * number_of_voxels[1] + coordinate1``. raylar
reads axis 0 as the image row (wire) and axis 1 as the column (tick).

Labels come from a ``particle_<producer>_group`` (the PDG code of each event's
first particle), from a label file, or from a sequence given by the caller.
"""

import os
from collections.abc import Mapping, Sequence

import numpy as np

from raylar.data.sources import DataFormatError, EventSource, check_hdf5_file
from raylar.data.types import Event

# PDG codes of the five classes, as the writer stores them. The reader maps by
# absolute value, so both charges of e, mu, pi and K give the class.
CLASS_PDG = {0: 22, 1: 11, 2: -13, 3: 211, 4: 321}
PDG_CLASS = {abs(pdg): label for label, pdg in CLASS_PDG.items()}

EXTENTS_DTYPE = np.dtype([("first", "<u4"), ("N", "<u4")])
ID_EXTENTS_DTYPE = np.dtype([("first", "<u4"), ("N", "<u4"), ("ID", "<u4")])
VOXEL_DTYPE = np.dtype([("id", "<u8"), ("value", "<f4")])
IMAGE_META_DTYPE = np.dtype(
    [
        ("valid", "u1"),
        ("projection_id", "<u8"),
        ("image_sizes", "<f8", (2,)),
        ("number_of_voxels", "<u8", (2,)),
        ("origin", "<f8", (2,)),
    ]
)
EVENT_ID_DTYPE = np.dtype([("run", "<u8"), ("subrun", "<u8"), ("event", "<u8")])
# NOTE: larcv3's particle record has many more fields (momenta, vertices,
# energies, process names); the writer stores only these and the reader needs only pdg.
PARTICLE_DTYPE = np.dtype([("id", "<u2"), ("pdg", "<i4"), ("energy_init", "<f8")])
SPARSE2D_DATASETS = ("extents", "voxel_extents", "voxels", "image_meta")


def is_larcv3_file(path: str) -> bool:
    """Return whether the HDF5 file at ``path`` has larcv3's top-level ``Data`` and ``Events`` groups."""
    import h5py

    with h5py.File(path, "r") as file:
        return "Data" in file and "Events" in file


def list_products(path: str, product: str = "sparse2d") -> list[str]:
    """Return the producer names of ``product`` groups in a larcv3 file."""
    import h5py

    prefix, suffix = f"{product}_", "_group"
    with h5py.File(path, "r") as file:
        data = file.get("Data")
        if data is None:
            return []
        return sorted(
            name[len(prefix) : -len(suffix)]
            for name in data
            if name.startswith(prefix) and name.endswith(suffix)
        )


class LArCV3Source(EventSource):
    """One projection of one ``sparse2d`` producer of a larcv3 file.

    ``labels`` is None (PDG codes from ``particle_<producer>_group``),
    ``"particle:NAME"`` (from ``particle_NAME_group``), a path to a label file
    (``.npy``, or text with one class 0-4 per line), or a sequence of classes.
    Event ids are the entry numbers in the file; run, subrun and event go into ``truth``.
    """

    def __init__(self, path: str, producer: str, projection: int = 0, labels=None):
        import h5py

        self.path = check_hdf5_file(path)
        self.producer = producer
        self.projection = int(projection)
        self.location = f"{self.path} (sparse2d producer {producer!r}, projection {self.projection})"

        with h5py.File(self.path, "r") as file:
            for name in ("Data", "Events", "Events/event_id"):
                if name not in file:
                    raise DataFormatError(
                        f"{self.path} is not a larcv3 file: the group or dataset {name!r} is missing"
                    )
            group_name = f"sparse2d_{producer}_group"
            if group_name not in file["Data"]:
                raise DataFormatError(
                    f"sparse2d producer {producer!r} not found in {self.path}; "
                    f"its sparse2d producers are {list_products(self.path)}"
                )
            group = file["Data"][group_name]
            for name in SPARSE2D_DATASETS:
                if name not in group:
                    raise DataFormatError(
                        f"{self.path}: dataset Data/{group_name}/{name} is missing, "
                        "so this is not a larcv3 sparse2d group"
                    )
            self._num_events = int(group["extents"].shape[0])
            if file["Events/event_id"].shape[0] != self._num_events:
                raise DataFormatError(
                    f"{self.path}: Events/event_id has {file['Events/event_id'].shape[0]} rows but "
                    f"Data/{group_name}/extents has {self._num_events}"
                )
            projections = sorted(set(group["voxel_extents"]["ID"].tolist()))
            if self._num_events and self.projection not in projections:
                raise DataFormatError(
                    f"projection {self.projection} not found in producer {producer!r} of {self.path}; "
                    f"its projections are {projections}"
                )
            self.projections = projections
            self.labels = self._read_labels(file, labels)

    def __len__(self) -> int:
        return self._num_events

    def read(self, start: int, stop: int) -> list[Event]:
        import h5py

        self._check_range(start, stop)
        if start == stop:
            return []
        with h5py.File(self.path, "r") as file:
            group = file["Data"][f"sparse2d_{self.producer}_group"]
            extents = group["extents"][start:stop]
            event_ids = file["Events/event_id"][start:stop]
            first_row = int(extents["first"][0])
            last_row = int(extents["first"][-1] + extents["N"][-1])
            voxel_extents = group["voxel_extents"][first_row:last_row]
            metas = group["image_meta"][first_row:last_row]

            events = []
            for offset, (extent, event_id) in enumerate(zip(extents, event_ids, strict=True)):
                entry = start + offset
                rows = np.arange(extent["first"], extent["first"] + extent["N"]) - first_row
                matches = rows[voxel_extents["ID"][rows] == self.projection]
                if matches.size != 1:
                    raise DataFormatError(
                        f"{self.location}: entry {entry} has {matches.size} voxel sets of "
                        f"projection {self.projection}, expected exactly 1"
                    )
                row = int(matches[0])
                events.append(self._event(entry, voxel_extents[row], metas[row], event_id, group))
        return events

    def describe(self) -> dict:
        return {
            "kind": "larcv3",
            "path": self.path,
            "producer": self.producer,
            "projection": self.projection,
            "num_events": self._num_events,
        }

    def _event(self, entry, voxel_extent, meta, event_id, group) -> Event:
        shape = (int(meta["number_of_voxels"][0]), int(meta["number_of_voxels"][1]))
        if not meta["valid"] or shape[0] < 1 or shape[1] < 1:
            raise DataFormatError(f"{self.location}: entry {entry} has an invalid image_meta {meta}")
        first, count = int(voxel_extent["first"]), int(voxel_extent["N"])
        voxels = group["voxels"][first : first + count]
        flat = voxels["id"].astype(np.int64)
        if count and (flat.min() < 0 or flat.max() >= shape[0] * shape[1]):
            raise DataFormatError(
                f"{self.location}: entry {entry} has voxel ids outside its {shape[0]} x {shape[1]} image"
            )
        truth = {name: int(event_id[name]) for name in ("run", "subrun", "event")}
        return Event(
            event_id=entry,
            label=int(self.labels[entry]),
            shape=shape,
            rows=(flat // shape[1]).astype(np.int32),
            cols=(flat % shape[1]).astype(np.int32),
            values=voxels["value"].astype(np.float32),
            truth=truth,
        )

    def _read_labels(self, file, labels) -> list[int]:
        if labels is None or (isinstance(labels, str) and labels.startswith("particle:")):
            particle_producer = self.producer if labels is None else labels.split(":", 1)[1]
            return self._labels_from_particles(file, particle_producer)
        if isinstance(labels, str | os.PathLike):
            values = _read_label_file(os.fspath(labels))
            source = f"label file {os.fspath(labels)}"
        elif isinstance(labels, Sequence | np.ndarray):
            values = np.asarray(labels)
            source = "the labels given"
        else:
            raise TypeError(f"invalid labels {labels!r}; see LArCV3Source's docstring for the forms")
        if values.ndim != 1 or values.shape[0] != self._num_events:
            raise DataFormatError(
                f"{source} has {values.shape} labels, expected one per event of {self.path} "
                f"({self._num_events})"
            )
        if not np.issubdtype(values.dtype, np.integer):
            raise DataFormatError(f"{source} contains {values.dtype} values, expected integer classes 0-4")
        return values.astype(int).tolist()

    def _labels_from_particles(self, file, particle_producer: str) -> list[int]:
        group_name = f"particle_{particle_producer}_group"
        if group_name not in file["Data"]:
            raise DataFormatError(
                f"particle producer {particle_producer!r} not found in {self.path} (no Data/{group_name}); "
                f"its particle producers are {list_products(self.path, 'particle')}. "
                "Pass labels='particle:NAME' or a label file"
            )
        extents = file["Data"][group_name]["extents"][:]
        pdg = file["Data"][group_name]["particles"]["pdg"]
        if extents.shape[0] != self._num_events:
            raise DataFormatError(
                f"{self.path}: Data/{group_name} has {extents.shape[0]} events, "
                f"the sparse2d producer {self.producer!r} has {self._num_events}"
            )
        labels = []
        for entry, extent in enumerate(extents):
            if extent["N"] < 1:
                raise DataFormatError(f"{self.path}: entry {entry} has no particle in Data/{group_name}")
            code = int(pdg[int(extent["first"])])
            if abs(code) not in PDG_CLASS:
                raise DataFormatError(
                    f"{self.path}: entry {entry} has PDG code {code}, which is none of raylar's classes "
                    f"(|PDG| in {sorted(PDG_CLASS)})"
                )
            labels.append(PDG_CLASS[abs(code)])
        return labels


def write_larcv3(
    path: str,
    projections: Mapping[int, Sequence[Event]] | Sequence[Event],
    producer: str = "data",
    overwrite: bool = False,
) -> str:
    """Write events as a larcv3 file with one ``sparse2d`` and one ``particle`` producer.

    ``projections`` maps a projection id to one event per entry (all of the same
    length), or is a plain sequence written as projection 0. Labels and event
    ids come from the first projection's events; each label is stored as its
    class's PDG code. The file appears only once it is complete.
    """
    import h5py

    if not isinstance(projections, Mapping):
        projections = {0: projections}
    projection_ids = sorted(projections)
    lists = [list(projections[projection]) for projection in projection_ids]
    num_events = len(lists[0]) if lists else 0
    if any(len(events) != num_events for events in lists):
        raise ValueError("every projection must have one event per entry")
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")

    extents = np.zeros(num_events, EXTENTS_DTYPE)
    voxel_extents = np.zeros(num_events * len(lists), ID_EXTENTS_DTYPE)
    metas = np.zeros(num_events * len(lists), IMAGE_META_DTYPE)
    voxels = []
    event_ids = np.zeros(num_events, EVENT_ID_DTYPE)
    particles = np.zeros(num_events, PARTICLE_DTYPE)
    particle_extents = np.zeros(num_events, EXTENTS_DTYPE)
    row, voxel_count = 0, 0
    for entry in range(num_events):
        extents[entry] = (row, len(lists))
        for projection, events in zip(projection_ids, lists, strict=True):
            event = events[entry]
            flat = event.rows.astype(np.uint64) * np.uint64(event.shape[1]) + event.cols.astype(np.uint64)
            block = np.zeros(event.num_hits, VOXEL_DTYPE)
            block["id"], block["value"] = flat, event.values
            voxels.append(block)
            voxel_extents[row] = (voxel_count, event.num_hits, projection)
            metas[row] = (1, projection, event.shape, event.shape, (0.0, 0.0))
            voxel_count += event.num_hits
            row += 1
        first = lists[0][entry]
        event_ids[entry] = (0, 0, first.event_id)
        particles[entry] = (0, CLASS_PDG[int(first.label)], float(first.truth.get("energy_mev", 0.0)))
        particle_extents[entry] = (entry, 1)

    partial = f"{path}.partial"
    with h5py.File(partial, "w") as file:
        file.create_dataset("Events/event_id", data=event_ids, maxshape=(None,), chunks=True)
        group = file.create_group(f"Data/sparse2d_{producer}_group")
        all_voxels = np.concatenate(voxels) if voxels else np.zeros(0, VOXEL_DTYPE)
        for name, data in zip(SPARSE2D_DATASETS, (extents, voxel_extents, all_voxels, metas), strict=True):
            group.create_dataset(name, data=data, maxshape=(None,), chunks=True, compression="gzip")
        particle_group = file.create_group(f"Data/particle_{producer}_group")
        particle_group.create_dataset("extents", data=particle_extents, maxshape=(None,), chunks=True)
        particle_group.create_dataset("particles", data=particles, maxshape=(None,), chunks=True)
    os.replace(partial, path)
    return path


def _read_label_file(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise DataFormatError(f"label file not found: {path}")
    if path.endswith(".npy"):
        return np.load(path)
    try:
        return np.loadtxt(path, dtype=np.int64, comments="#", ndmin=1)
    except ValueError as error:
        raise DataFormatError(
            f"label file {path} is not one integer class per line: {error}"
        ) from error
