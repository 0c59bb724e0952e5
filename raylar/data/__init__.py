"""Readers, codec, event store, epoch sampler, batch loader and uniqueness audit."""

from raylar.data.audit import DuplicateSampleError, UniquenessAudit, check_unique, sample_hash
from raylar.data.codec import CodecError, decode, encode
from raylar.data.larcv3 import LArCV3Source, write_larcv3
from raylar.data.loader import Batch, BatchLoader
from raylar.data.sampler import EpochSampler, InsufficientEventsError, check_enough_events
from raylar.data.sources import (
    ConcatSource,
    DataFormatError,
    EventListSource,
    EventSource,
    H5EventSource,
    SimulatedSource,
    open_source,
)
from raylar.data.store import EventStore, StoreSplit, StoreStats
from raylar.data.types import Event, SparseBatch
from raylar.data.validate import DataValidationError

__all__ = [
    "Batch",
    "BatchLoader",
    "CodecError",
    "ConcatSource",
    "DataFormatError",
    "DataValidationError",
    "DuplicateSampleError",
    "EpochSampler",
    "Event",
    "EventListSource",
    "EventSource",
    "EventStore",
    "H5EventSource",
    "InsufficientEventsError",
    "LArCV3Source",
    "SimulatedSource",
    "SparseBatch",
    "StoreSplit",
    "StoreStats",
    "UniquenessAudit",
    "check_enough_events",
    "check_unique",
    "decode",
    "encode",
    "open_source",
    "sample_hash",
    "write_larcv3",
]
