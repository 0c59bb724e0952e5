"""Simulator speed: events per second per core at the default 3600 x 3600 geometry.

Generates ``--events`` events per class in this one process (one core) and reports, per class
and overall, the wall-clock rate and the rate per CPU-second of this process. On a shared machine
the CPU-time rate is the figure to trust: it does not count time the process waited for a core.
It also splits the CPU time between transport, showers and detector response, and records the
event file writer's peak memory while it writes --memory-events events (the generated ones, repeated).

Usage: python benchmarks/bench_sim.py [--events 20] [--seed 1] [--memory-events 20000]
       [--out benchmarks/results/bench_sim.json]
"""

import argparse
import dataclasses
import json
import os
import platform
import resource
import tempfile
import time

import numpy as np

from raylar import geometry
from raylar.log import get_logger
from raylar.sim import SimConfig, simulate_event
from raylar.sim import em as em_module
from raylar.sim import generate as generate_module
from raylar.sim.eventfile import EventFileWriter, count_events

logger = get_logger("raylar.benchmarks.sim")


class _Timer:
    """Accumulates the CPU time spent inside a wrapped function."""

    def __init__(self, module, name):
        self.module, self.name = module, name
        self.original = getattr(module, name)
        self.seconds = 0.0

    def __enter__(self):
        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.process_time() - start

        setattr(self.module, self.name, timed)
        return self

    def __exit__(self, *exc):
        setattr(self.module, self.name, self.original)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure_writer_memory(events: list, total: int) -> dict:
    """Write ``total`` events (the given ones repeated under new ids) and record the peak RSS."""
    marks = {}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "events.h5")
        with EventFileWriter(path, {"benchmark": "writer memory"}) as writer:
            for index in range(total):
                writer.write(dataclasses.replace(events[index % len(events)], event_id=index))
                if index + 1 in (total // 10, total):
                    marks[index + 1] = round(_peak_rss_mb(), 1)
        size_mb = os.path.getsize(path) / 1e6
        assert count_events(path) == total
    return {"events_written": total, "peak_rss_mb_after": marks, "file_mb": round(size_mb, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20, help="events per class (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="master seed (default 1)")
    parser.add_argument(
        "--out", default="benchmarks/results/bench_sim.json", help="JSON result file"
    )
    parser.add_argument(
        "--memory-events",
        type=int,
        default=20000,
        help="events written to measure the writer's peak memory (default 20000)",
    )
    args = parser.parse_args()

    simulate_event(0, args.seed, SimConfig())  # builds the Landau and range tables once
    per_class = {}
    total_wall = total_cpu = 0.0
    parts = {}
    occupancy = []
    kept = []
    with (
        _Timer(generate_module, "transport") as transport_timer,
        _Timer(em_module, "cascade") as em_timer,
        _Timer(generate_module, "respond") as response_timer,
    ):
        for name in geometry.CLASS_NAMES:
            config = SimConfig(classes=(name,))
            wall = time.perf_counter()
            cpu = time.process_time()
            hits = []
            for index in range(args.events):
                event = simulate_event(index, args.seed, config)
                kept.append(event)
                hits.append(event.num_hits)
                occupancy.append(event.occupancy)
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            total_wall += wall
            total_cpu += cpu
            per_class[name] = {
                "events": args.events,
                "wall_s": round(wall, 3),
                "cpu_s": round(cpu, 3),
                "events_per_s_wall": round(args.events / wall, 2),
                "events_per_cpu_s": round(args.events / cpu, 2),
                "mean_hits": round(float(np.mean(hits)), 1),
            }
            logger.info(
                "%s: %.1f events per CPU-second (%.1f per wall-second)",
                name,
                args.events / cpu,
                args.events / wall,
            )
        parts = {
            "heavy_transport_cpu_s": round(transport_timer.seconds, 3),
            "em_showers_cpu_s": round(em_timer.seconds, 3),
            "detector_response_cpu_s": round(response_timer.seconds, 3),
        }

    writer_memory = measure_writer_memory(kept, args.memory_events)
    logger.info("writer memory: %s", writer_memory)
    count = args.events * geometry.NUM_CLASSES
    result = {
        "benchmark": "simulator events per second per core, 3600 x 3600",
        "command": "python benchmarks/bench_sim.py " + f"--events {args.events} --seed {args.seed}",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
        },
        "load_average_at_end": os.getloadavg(),
        "events": count,
        "events_per_cpu_s": round(count / total_cpu, 2),
        "events_per_s_wall": round(count / total_wall, 2),
        "target_events_per_s_per_core": 20,
        "occupancy_percent": {
            "median": round(100 * float(np.median(occupancy)), 4),
            "min": round(100 * float(np.min(occupancy)), 4),
            "max": round(100 * float(np.max(occupancy)), 4),
        },
        "cpu_split": parts,
        "writer_memory": writer_memory,
        "per_class": per_class,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    keys = ("events", "events_per_cpu_s", "events_per_s_wall", "cpu_split", "writer_memory")
    print(json.dumps({key: result[key] for key in keys}, indent=2))


if __name__ == "__main__":
    main()
