"""Measure how one core's rate changes when another process works on the other core.

The scaling benchmark runs one worker per core. This one separates the
machine's share of the loss from raylar's: it runs the same single-thread
kernel in one process, then in as many processes as there are cores at once,
and compares the rate per process. Kernels: a 1024 x 1024 float32 matrix
product (compute-bound), JishNet's second convolution on a batch of 32
downsampled events (13 -> 26 channels, 80 x 80, channels-last), a copy of
a 64 MiB buffer (memory-bound), and whole train steps (forward, backward,
Adam) of JishNet (compiled first block, fused pooling, channels-last) and
SCNet on batches of 8 random 400 x 400 images with 900 hits each, as the
scaling benchmark's workers run them but without Ray or Horovod.
Writes benchmarks/results/bench_cores.json.

    .venv/bin/python benchmarks/bench_cores.py [--seconds 4] [--processes 2]
"""

import argparse
import json
import multiprocessing
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "bench_cores.json"
STEP_BATCH = 8
STEP_SIDE = 400
STEP_HITS = 900


def make_kernel(kind: str):
    """Return (operation, work units per call) for one kernel, on one torch thread."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    if kind == "matmul":
        a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
        return (lambda: torch.mm(a, b)), 2 * 1024**3
    if kind == "conv":
        x = torch.randn(32, 13, 80, 80).contiguous(memory_format=torch.channels_last)
        w = torch.randn(26, 13, 5, 5).contiguous(memory_format=torch.channels_last)
        return (lambda: F.conv2d(x, w, padding=2)), 2 * 25 * 13 * 26 * 80 * 80 * 32
    if kind == "copy":
        source = torch.ones(16 * 2**20)
        target = torch.empty_like(source)
        return (lambda: target.copy_(source)), 2 * source.numel() * 4
    return train_step(kind), STEP_BATCH


def train_step(name: str):
    """Return one Adam train step of ``name`` on a fixed batch of random sparse images."""
    import torch
    import torch.nn.functional as F

    from raylar.data.types import SparseBatch
    from raylar.models import build_model

    generator = torch.Generator().manual_seed(0)
    side = STEP_SIDE
    flat = torch.randint(0, side * side, (STEP_BATCH, STEP_HITS), generator=generator)
    values = torch.rand(STEP_BATCH, STEP_HITS, generator=generator) * 100
    labels = torch.arange(STEP_BATCH) % 5
    if name == "jishnet":
        model = build_model(
            "jishnet", side, fused_first_block=True, fused_pooling=True, channels_last=True
        )
        inputs = torch.zeros(STEP_BATCH, 1, side * side)
        inputs.scatter_(2, flat[:, None, :], values[:, None, :])
        inputs = inputs.reshape(STEP_BATCH, 1, side, side)
    else:
        model = build_model("scnet", side)
        pixels = [torch.unique(row) for row in flat]
        coords = torch.cat(
            [
                torch.stack([torch.full_like(p, i), p // side, p % side], 1)
                for i, p in enumerate(pixels)
            ]
        ).int()
        features = torch.rand(coords.shape[0], 1, generator=generator)
        inputs = SparseBatch(coords, features, (side, side), STEP_BATCH)
    optimizer = torch.optim.Adam(model.parameters())

    def step():
        optimizer.zero_grad()
        F.cross_entropy(model(inputs), labels).backward()
        optimizer.step()

    return step


def run_kernel(kind: str, seconds: float, start, queue) -> None:
    operation, units = make_kernel(kind)
    operation()
    start.wait()
    calls = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        operation()
        calls += 1
    queue.put(calls * units / (time.perf_counter() - began))


def rates(kind: str, processes: int, seconds: float) -> list[float]:
    """Run ``processes`` copies of a kernel at once and return each one's rate."""
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    queue = context.Queue()
    workers = [
        context.Process(target=run_kernel, args=(kind, seconds, start, queue))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    time.sleep(1.0)  # let every process build its inputs before the timed loop
    start.set()
    results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per kernel and run (default 4)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2,
                        help="processes at once in the second run (default: the number of cores)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    units = {
        "matmul": "FLOP/s",
        "conv": "FLOP/s",
        "copy": "bytes/s (read plus write)",
        "jishnet": "images/s",
        "scnet": "images/s",
    }
    kernels = {}
    for kind in units:
        alone = rates(kind, 1, args.seconds)[0]
        together = rates(kind, args.processes, args.seconds)
        kernels[kind] = {
            "unit": units[kind],
            "alone": alone,
            "together": together,
            "rate_per_process_ratio": sum(together) / len(together) / alone,
        }
        print(f"{kind}: alone {alone:.3g}, {args.processes} at once {[f'{r:.3g}' for r in together]}, "
              f"ratio per process {kernels[kind]['rate_per_process_ratio']:.2f}")
    result = {
        "benchmark": "bench_cores",
        "command": f"benchmarks/bench_cores.py --seconds {args.seconds} --processes {args.processes}",
        "machine": {"processor": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average_1_5_15_min": list(os.getloadavg())},
        "kernels": kernels,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
