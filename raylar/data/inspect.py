"""Summary of an event source: events, classes, image size, occupancy and each codec's ratio."""

import numpy as np

from raylar.data.codec import encode
from raylar.data.sources import EventSource
from raylar.geometry import CLASS_NAMES, NUM_CLASSES


def summarize(source: EventSource, max_events: int = 50, compressor: str = "lz4", level: int = 5) -> dict:
    """Read up to ``max_events`` events of ``source`` and measure them with both codecs."""
    count = min(len(source), max_events)
    events = source.read(0, count)
    labels = np.array([event.label for event in events], dtype=np.int64)
    occupancy = np.array([event.occupancy for event in events])
    shapes = sorted({tuple(event.shape) for event in events})
    raw = sum(event.shape[0] * event.shape[1] * 4 for event in events)
    sizes = {
        codec: sum(len(encode(event, codec, compressor, level)) for event in events)
        for codec in ("sparse", "dense")
    }
    in_range = labels[(labels >= 0) & (labels < NUM_CLASSES)]
    return {
        "source": source.describe(),
        "num_events": len(source),
        "events_measured": count,
        "class_counts": dict(zip(CLASS_NAMES, np.bincount(in_range, minlength=NUM_CLASSES).tolist(), strict=True)),
        "labels_outside_classes": int(labels.size - in_range.size),
        "image_shapes": shapes,
        "hits_mean": float(np.mean([event.num_hits for event in events])) if events else 0.0,
        "occupancy_mean": float(occupancy.mean()) if events else 0.0,
        "occupancy_max": float(occupancy.max()) if events else 0.0,
        "ratio": {codec: raw / size if size else 0.0 for codec, size in sizes.items()},
        "bytes_per_event": {codec: size / max(count, 1) for codec, size in sizes.items()},
        "compressor": f"{compressor} level {level}",
    }


def format_summary(summary: dict) -> str:
    """Return the summary as the lines the inspect command prints."""
    lines = [
        f"source      {summary['source']}",
        f"events      {summary['num_events']} ({summary['events_measured']} measured below)",
        "classes     " + ", ".join(f"{name} {count}" for name, count in summary["class_counts"].items())
        + " (of the measured events)",
    ]
    if summary["labels_outside_classes"]:
        lines.append(f"            {summary['labels_outside_classes']} labels outside 0-4")
    lines += [
        "image       " + ", ".join(f"{rows} x {cols}" for rows, cols in summary["image_shapes"]),
        f"hits        {summary['hits_mean']:.0f} per event on average",
        f"occupancy   {100 * summary['occupancy_mean']:.4f} % mean, {100 * summary['occupancy_max']:.4f} % max",
    ]
    for codec, ratio in summary["ratio"].items():
        lines.append(
            f"{codec:<6} codec {ratio:9.1f}x smaller than float32 dense, "
            f"{summary['bytes_per_event'][codec] / 1e3:.1f} kB per event ({summary['compressor']})"
        )
    return "\n".join(lines)
