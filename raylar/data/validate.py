"""Checks on events and datasets that run before any training starts."""

from collections import Counter

import numpy as np

from raylar.data.types import Event
from raylar.geometry import CLASS_NAMES, NUM_CLASSES


class DataValidationError(ValueError):
    """An event or a dataset is unfit for training; the message names the source and the event."""


def check_event(event: Event, location: str, index: int) -> None:
    """Raise ``DataValidationError`` unless ``event`` (entry ``index`` of ``location``) is trainable."""
    where = f"{location}, entry {index} (event id {event.event_id})"
    label = event.label
    if isinstance(label, bool) or not isinstance(label, int | np.integer) or not 0 <= label < NUM_CLASSES:
        raise DataValidationError(
            f"{where}: label {label!r} is outside the classes 0-{NUM_CLASSES - 1} "
            f"({', '.join(f'{i} {name}' for i, name in enumerate(CLASS_NAMES))}); fix the labels"
        )

    if len(event.shape) != 2 or min(event.shape) < 1:
        raise DataValidationError(f"{where}: invalid image shape {event.shape}; expected (rows, cols) >= 1")

    count = event.values.shape[0] if event.values.ndim == 1 else -1
    if count < 0 or event.rows.shape != (count,) or event.cols.shape != (count,):
        raise DataValidationError(
            f"{where}: rows {event.rows.shape}, cols {event.cols.shape} and values {event.values.shape} "
            "must be 1-D arrays of the same length"
        )
    if count == 0:
        return

    finite = np.isfinite(event.values)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise DataValidationError(
            f"{where}: {int((~finite).sum())} pixel values are NaN or infinite, the first "
            f"{event.values[bad]} at (row {event.rows[bad]}, col {event.cols[bad]}); "
            "regenerate or clean the event"
        )

    rows_ok = (event.rows >= 0) & (event.rows < event.shape[0])
    cols_ok = (event.cols >= 0) & (event.cols < event.shape[1])
    if not (rows_ok & cols_ok).all():
        bad = int(np.flatnonzero(~(rows_ok & cols_ok))[0])
        raise DataValidationError(
            f"{where}: hit (row {event.rows[bad]}, col {event.cols[bad]}) lies outside the "
            f"{event.shape[0]} x {event.shape[1]} image"
        )


def check_dataset(
    event_ids: np.ndarray, shapes: list[tuple[int, int]], location: str
) -> None:
    """Raise ``DataValidationError`` for an empty dataset, repeated event ids or mixed image shapes."""
    if len(event_ids) == 0:
        raise DataValidationError(f"empty dataset: {location} has no events; check the path or the range")
    counts = Counter(np.asarray(event_ids).tolist())
    repeated = sorted(event_id for event_id, count in counts.items() if count > 1)
    if repeated:
        raise DataValidationError(
            f"{location}: event ids {repeated[:10]} occur more than once ({len(repeated)} in all); "
            "every event needs its own id, so the uniqueness audit can trust them"
        )
    distinct = sorted(set(shapes))
    if len(distinct) > 1:
        raise DataValidationError(
            f"{location}: events have different image shapes {distinct[:5]}; one dataset needs one shape"
        )
