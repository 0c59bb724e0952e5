"""Simulator speed: events per second per core at the default 3600 x 3600 geometry.

Generates ``--events`` events per class in this one process (one core) and reports, per class
and overall, the wall-clock rate and the rate per CPU-second of this process. On a shared machine
the CPU-time rate is the figure to trust: it does not count time the process waited for a core.
A profile of the slowest part of the chain (transport, showers, detector response) is included.

Usage: python benchmarks/bench_sim.py [--events 20] [--seed 1] [--out benchmarks/results/bench_sim.json]
"""

import argparse
import json
import os
import platform
import time

import numpy as np

from raylar import geometry
from raylar.log import get_logger
from raylar.sim import SimConfig, simulate_event
from raylar.sim import em as em_module
from raylar.sim import generate as generate_module

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20, help="events per class (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="master seed (default 1)")
    parser.add_argument(
        "--out", default="benchmarks/results/bench_sim.json", help="JSON result file"
    )
    args = parser.parse_args()

    simulate_event(0, args.seed, SimConfig())  # builds the Landau and range tables once
    per_class = {}
    total_wall = total_cpu = 0.0
    parts = {}
    occupancy = []
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
        "per_class": per_class,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("events", "events_per_cpu_s", "events_per_s_wall", "cpu_split")
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
