"""Distributed validation and the end-of-epoch uniqueness audit."""

import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from raylar.geometry import NUM_CLASSES
from raylar.train.metrics import confusion_counts, validation_summary


def validation_batches(num_events: int, world_size: int, rank: int, batch_size: int) -> list[np.ndarray]:
    """Split the validation set over workers: rank r takes events r, r + W, r + 2W, ...

    Unlike training shards, nothing is dropped, so every held-out event is
    evaluated exactly once across the workers whatever the world size.
    """
    indices = np.arange(rank, num_events, world_size, dtype=np.int64)
    return [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]


def scale_inputs(inputs, scale: float):
    """Multiply the pixel values of a dense tensor or a ``SparseBatch`` by ``scale``."""
    if scale == 1.0:
        return inputs
    if isinstance(inputs, torch.Tensor):
        return inputs.mul_(scale)
    return replace(inputs, features=inputs.features * scale)


def validate(model, split, collective, batch_size: int, device, prefetch: int = 2, adc_scale: float = 1.0) -> dict:
    """Evaluate ``model`` on this worker's part of ``split`` and combine the figures of all workers.

    Returns ``validation_summary``'s figures (loss, accuracy with its binomial
    standard error, per-class accuracy, confusion matrix in percent of the
    true class) plus ``val_time_s``.
    """
    from raylar.data import BatchLoader

    started = time.perf_counter()
    batches = validation_batches(len(split), collective.world_size, collective.rank, batch_size)
    loader = BatchLoader(split, batches, output=model.input_kind, device=device, prefetch=prefetch)

    counts = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    loss_sum = 0.0
    was_training = model.training
    # NOTE: spconv 2.3.8 fuses the bias into its kernel in eval mode, which its CPU path rejects
    # ("cpu don't support act and bias"). The networks have no dropout or batch norm, so SCNet on
    # a CPU is evaluated in training mode (under no_grad) with the same result.
    sparse_on_cpu = model.input_kind == "sparse" and torch.device(device).type == "cpu"
    model.train(sparse_on_cpu)
    with torch.no_grad():
        for batch in loader:
            labels = torch.as_tensor(batch.labels, dtype=torch.long, device=device)
            logits = model(scale_inputs(batch.inputs, adc_scale))
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            counts += confusion_counts(labels.cpu().numpy(), logits.argmax(dim=1).cpu().numpy())
    model.train(was_training)

    totals = torch.tensor(np.append(counts.ravel(), loss_sum), dtype=torch.float64)
    totals = collective.allreduce_sum(totals, name="validation").numpy()
    combined_counts = np.rint(totals[:-1]).astype(np.int64).reshape(NUM_CLASSES, NUM_CLASSES)
    summary = validation_summary(combined_counts, float(totals[-1]))
    summary["val_time_s"] = time.perf_counter() - started
    return summary


def expected_epoch_ids(split, sampler_factory, world_size: int, epoch: int) -> np.ndarray:
    """Return the event ids all workers' shards of ``epoch`` contain, in shard order."""
    event_ids = np.asarray(split.event_ids)
    shards = [np.asarray(sampler_factory(rank).shard(epoch), dtype=np.int64) for rank in range(world_size)]
    return event_ids[np.concatenate(shards)] if shards else np.empty(0, dtype=np.int64)


def audit_epoch(records: list, expected_ids: np.ndarray, epoch: int) -> dict:
    """Prove that the audited records of an epoch hold every expected event exactly once.

    ``records`` is the concatenation of every worker's ``UniquenessAudit``
    records for the epoch. ``check_unique`` raises ``DuplicateSampleError``
    for any event seen twice; a missing or unexpected event raises
    ``RuntimeError`` naming up to ten of them.
    """
    from raylar.data import check_unique

    check_unique(records, epoch)
    seen = np.asarray(audit_event_ids(records), dtype=np.int64)
    expected = np.asarray(expected_ids, dtype=np.int64)
    missing = np.setdiff1d(expected, seen)
    unexpected = np.setdiff1d(seen, expected)
    if len(missing) or len(unexpected):
        raise RuntimeError(
            f"epoch {epoch}: the audit saw {len(seen)} events but the shards hold {len(expected)}; "
            f"missing event ids {missing[:10].tolist()}, unexpected event ids {unexpected[:10].tolist()}"
        )
    return {
        "epoch": epoch,
        "events_seen": int(len(seen)),
        "unique_events": int(len(np.unique(seen))),
        "expected_events": int(len(expected)),
        "duplicates": int(len(seen) - len(np.unique(seen))),
        "missing": 0,
    }


def audit_event_ids(records: list) -> list[int]:
    """Return the event id of every audited (rank, event id, hash) record, in record order."""
    return [int(event_id) for _rank, event_id, _digest in records]
