"""Data path throughput per core at 3600 x 3600, compression ratios and the data loading time (DLT).

All figures come from one run on the same events:

(a) uncompressed dense: copy a stored float32 image into a reused batch buffer;
(b) dense BLOSC codec: decompress an image into a reused buffer;
(c) sparse codec to coordinates and features: decompress and build the (N, 3)
    int32 coords and (N, 1) float32 features that SCNet and on-device
    densification consume;
(d) sparse codec densified on the CPU: (c)'s decompression, then zero a reused
    dense buffer and scatter the hits into it;

next to the memory write bandwidth measured in the same run: zeroing the reused
dense buffer of (d) is the floor for (d); filling a 512 MB buffer gives main memory's.
Each rate runs on one thread (BLOSC and torch set to one thread). The DLT is
``EventStore.load`` of a ``--dlt-events`` set on a local Ray cluster.

Usage: python benchmarks/bench_data.py [--events 16] [--dlt-events 2000] [--out benchmarks/results/bench_data.json]
"""

import argparse
import json
import os
import platform
import sys
import time

import blosc
import numpy as np

from raylar.data.codec import decode_payload, encode, payload_to_hits
from raylar.data.sources import EventSource
from raylar.data.types import Event
from raylar.geometry import IMAGE_SIZE
from raylar.log import get_logger

logger = get_logger("raylar.benchmarks.data")

SHAPE = (IMAGE_SIZE, IMAGE_SIZE)
DENSE_BYTES = SHAPE[0] * SHAPE[1] * 4


class RelabelledSource(EventSource):
    """``num_events`` events cycling through a few distinct ones, each under its own event id."""

    def __init__(self, events: list[Event], num_events: int):
        self.events = events
        self.num_events = num_events
        self.location = f"{num_events} events from {len(events)} distinct simulated ones"

    def __len__(self) -> int:
        return self.num_events

    def read(self, start: int, stop: int) -> list[Event]:
        self._check_range(start, stop)
        out = []
        for index in range(start, stop):
            base = self.events[index % len(self.events)]
            out.append(Event(index, base.label, base.shape, base.rows, base.cols, base.values, base.truth))
        return out

    def describe(self) -> dict:
        return {"kind": "relabelled", "num_events": self.num_events, "distinct": len(self.events)}


def make_events(count: int, seed: int) -> tuple[list[Event], str]:
    """Return ``count`` full-size simulated events, or track-like stand-ins if the simulator is missing."""
    try:
        from raylar.sim import SimConfig, simulate_event
    except ImportError as error:
        logger.warning("raylar.sim.simulate_event is not importable (%s); using constructed tracks", error)
        return [constructed_event(index, seed) for index in range(count)], "constructed tracks"
    config = SimConfig(downsample=1)
    return [simulate_event(index, seed, config) for index in range(count)], "raylar.sim.simulate_event"


def constructed_event(index: int, seed: int) -> Event:
    """Return a straight track, 5 pixels wide and 800-3000 long, for runs where the simulator is missing."""
    rng = np.random.default_rng([seed, index])
    length = int(rng.integers(800, 3000))
    angle = rng.uniform(0, np.pi)
    start = rng.uniform(300, 3300, 2)
    steps = np.arange(length)[:, None] * np.array([np.cos(angle), np.sin(angle)])
    core = start + steps
    pixels = np.concatenate([core + np.array([0.0, shift]) for shift in range(-2, 3)])
    pixels = np.unique(np.clip(pixels.astype(np.int64), 0, IMAGE_SIZE - 1), axis=0)
    values = rng.gamma(2.0, 40.0, len(pixels)).astype(np.float32) + 10.0
    return Event(index, index % 5, SHAPE, pixels[:, 0].astype(np.int32), pixels[:, 1].astype(np.int32), values)


def rate(function, items, min_seconds: float) -> float:
    """Return items per second of ``function`` over ``items``, cycling until ``min_seconds`` passed."""
    function(items[0])
    done = 0
    started = time.perf_counter()
    while True:
        for item in items:
            function(item)
        done += len(items)
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return done / elapsed


def measure_rates(events: list[Event], min_seconds: float, rounds_count: int) -> dict:
    sparse = [encode(event, "sparse") for event in events]
    dense = [encode(event, "dense") for event in events]
    # Uncompressed images for (a): a few distinct ones, enough to defeat the caches.
    images = [event.dense() for event in events[:4]]
    out = np.empty(DENSE_BYTES, dtype=np.uint8)
    image_out = out.view(np.float32).reshape(SHAPE)

    def deliver_uncompressed(image):
        np.copyto(image_out, image)

    def deliver_dense_codec(buffer):
        decode_payload(buffer, out=out)

    def deliver_sparse_coords(buffer):
        header, payload, _ = decode_payload(buffer)
        rows, cols, values = payload_to_hits(header, payload)
        coords = np.empty((rows.shape[0], 3), dtype=np.int32)
        coords[:, 0] = 0
        coords[:, 1] = rows
        coords[:, 2] = cols
        return coords, values.reshape(-1, 1)

    def deliver_sparse_densified(buffer):
        header, payload, _ = decode_payload(buffer)
        rows, cols, values = payload_to_hits(header, payload)
        image_out.fill(0.0)
        image_out[rows, cols] = values

    # The floor for (d) is zeroing the very buffer it writes into, timed like the rates.
    # Filling 512 MB gives main memory's write bandwidth.
    big = np.ones(512 * 2**20 // 4, dtype=np.float32)
    functions = {
        "a_uncompressed_dense": (deliver_uncompressed, images),
        "b_dense_blosc": (deliver_dense_codec, dense),
        "c_sparse_coords_features": (deliver_sparse_coords, sparse),
        "d_sparse_densified_cpu": (deliver_sparse_densified, sparse),
        "floor_zero_dense_image": (lambda _: image_out.fill(0.0), [None]),
        "fill_512mb": (lambda _: big.fill(0.0), [None]),
    }
    # Rounds interleave the measurements, so a burst of load from other users of a
    # shared machine hits all of them alike. Each figure is the median of its rounds.
    rounds = {name: [] for name in functions}
    for _ in range(rounds_count):
        for name, (function, items) in functions.items():
            rounds[name].append(rate(function, items, min_seconds))
    medians = {name: float(np.median(values)) for name, values in rounds.items()}
    results = {name: medians[name] for name in list(functions)[:4]}
    floor_rate = medians["floor_zero_dense_image"]
    bandwidth = floor_rate * DENSE_BYTES
    memory_bandwidth = medians["fill_512mb"] * big.nbytes
    raw = len(events) * DENSE_BYTES
    ratios = {
        "a_uncompressed_dense": 1.0,
        "b_dense_blosc": raw / sum(map(len, dense)),
        "c_sparse_coords_features": raw / sum(map(len, sparse)),
        "d_sparse_densified_cpu": raw / sum(map(len, sparse)),
    }
    return {
        "rounds": rounds,
        "events_per_s_per_core": results,
        "compression_ratio": ratios,
        "write_bandwidth_dense_image_gb_s": bandwidth / 1e9,
        "write_bandwidth_512mb_gb_s": memory_bandwidth / 1e9,
        "bandwidth_floor_events_per_s": floor_rate,
        "compressed_kb_per_event": {
            "sparse": sum(map(len, sparse)) / len(events) / 1e3,
            "dense": sum(map(len, dense)) / len(events) / 1e3,
        },
    }


def measure_dlt(events: list[Event], num_events: int, events_per_block: int) -> dict:
    import ray

    from raylar.cluster import start_ray
    from raylar.data.store import EventStore

    start_ray(address="local", num_cpus=2, object_store_memory=1024 * 2**20)
    try:
        source = RelabelledSource(events, num_events)
        store = EventStore.load(source, codec="sparse", val_fraction=0.1, events_per_block=events_per_block)
        stats = store.stats.to_dict()
        stats["object_store_mb_per_1000_events"] = stats["compressed_bytes"] / stats["num_events"] * 1000 / 1e6
        stats["cluster_cpus"] = ray.cluster_resources().get("CPU", 0)
        return stats
    finally:
        ray.shutdown()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=16, help="distinct full-size events (default 16)")
    parser.add_argument("--dlt-events", type=int, default=2000, help="events in the DLT set (default 2000)")
    parser.add_argument("--events-per-block", type=int, default=64, help="events per store block")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum seconds per rate (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per rate (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/bench_data.json")
    args = parser.parse_args(argv)

    blosc.set_nthreads(1)
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    events, origin = make_events(args.events, args.seed)
    generate_s = time.perf_counter() - started
    hits = np.array([event.num_hits for event in events])
    logger.info("%d events from %s in %.1f s, %.0f hits on average", len(events), origin, generate_s, hits.mean())

    result = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "blosc": blosc.__version__,
            "numpy": np.__version__,
        },
        "image_shape": list(SHAPE),
        "events": {
            "count": len(events),
            "origin": origin,
            "hits_mean": float(hits.mean()),
            "occupancy_mean": float(hits.mean() / (SHAPE[0] * SHAPE[1])),
            "labels": np.bincount([event.label for event in events], minlength=5).tolist(),
        },
    }
    result.update(measure_rates(events, args.seconds, args.rounds))
    rates = result["events_per_s_per_core"]
    result["dlt"] = measure_dlt(events, args.dlt_events, args.events_per_block)
    result["targets"] = {
        "c_at_least_1000_per_core": rates["c_sparse_coords_features"] >= 1000,
        "c_over_b": rates["c_sparse_coords_features"] / rates["b_dense_blosc"],
        "c_at_least_20x_b": rates["c_sparse_coords_features"] >= 20 * rates["b_dense_blosc"],
        "d_time_over_floor": result["bandwidth_floor_events_per_s"] / rates["d_sparse_densified_cpu"],
        "d_within_1_5x_floor": rates["d_sparse_densified_cpu"] * 1.5 >= result["bandwidth_floor_events_per_s"],
        "store_ratio": result["dlt"]["ratio"],
        "store_at_least_100x": result["dlt"]["ratio"] >= 100,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as file:
        json.dump(result, file, indent=2)
    print(json.dumps({key: result[key] for key in ("events_per_s_per_core", "targets")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
