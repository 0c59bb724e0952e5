"""JishNet and SCNet on one GPU at 3600 x 3600: time per event, peak memory, largest batch.

The configurations are SCNet and JishNet without and with its memory options:
activation checkpointing of the first two blocks, bfloat16 autocast, both, and
fused pooling. For each, the script finds the largest batch whose train step
(forward, cross-entropy, backward, Adam step) fits in GPU memory. It doubles
the batch until CUDA runs out of memory and then bisects. At batch 1 and at the
largest batch it records the time per event and the peak allocated memory
(``torch.cuda.max_memory_allocated``). Batches cycle through a few simulated
events from ``raylar.sim.simulate_event``. The GPU's float32 matrix-product
rate and memory bandwidth are measured in the same run for JishNet's roofline.

On a machine without CUDA it exits with status 1 and an error message. The
CPU figures come from bench_models.py.

NOTE: not yet run on a GPU. Only the exit on a machine without CUDA has been
checked; the batch search and the timing paths are untested.

Usage: python benchmarks/bench_models_gpu.py [--events 5] [--max-batch 256]
       [--max-sparse-batch 4096] [--output benchmarks/results/bench_models_gpu.json]
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_models import (  # noqa: E402 - the CPU benchmark's helpers, found next to this file
    machine_description,
    matmul_rate,
    memory_bandwidth,
    roofline_floor,
    simulate_events,
)

from raylar.data.types import SparseBatch  # noqa: E402
from raylar.geometry import IMAGE_SIZE  # noqa: E402
from raylar.log import get_logger  # noqa: E402
from raylar.models import build_model, describe_model  # noqa: E402

log = get_logger("raylar.benchmarks.models_gpu")

CONFIGURATIONS = {
    "jishnet": ("jishnet", {}),
    "jishnet checkpointing": ("jishnet", {"checkpointing": True}),
    "jishnet bf16": ("jishnet", {"bf16_autocast": True}),
    "jishnet checkpointing+bf16": ("jishnet", {"checkpointing": True, "bf16_autocast": True}),
    "jishnet fused pooling": ("jishnet", {"fused_pooling": True}),
    "jishnet fused pooling+bf16": ("jishnet", {"fused_pooling": True, "bf16_autocast": True}),
    "scnet": ("scnet", {}),
}
TIMED_STEPS = 3


class BatchMaker:
    """Builds batches of any size on the GPU by cycling through the simulated events."""

    def __init__(self, events, device):
        self.events = events
        self.device = device
        self.hits = [
            (
                torch.as_tensor(e.rows.astype("int64"), device=device),
                torch.as_tensor(e.cols.astype("int64"), device=device),
                torch.as_tensor(e.values.astype("float32"), device=device),
            )
            for e in events
        ]

    def labels(self, size: int) -> torch.Tensor:
        return torch.tensor(
            [self.events[i % len(self.events)].label for i in range(size)], device=self.device
        )

    def dense(self, size: int) -> torch.Tensor:
        images = torch.zeros(size, 1, IMAGE_SIZE, IMAGE_SIZE, device=self.device)
        for sample in range(size):
            rows, cols, values = self.hits[sample % len(self.hits)]
            images[sample, 0, rows, cols] = values
        return images

    def sparse(self, size: int) -> SparseBatch:
        coords, features = [], []
        for sample in range(size):
            rows, cols, values = self.hits[sample % len(self.hits)]
            index = torch.full_like(rows, sample)
            coords.append(torch.stack([index, rows, cols], dim=1))
            features.append(values.reshape(-1, 1))
        return SparseBatch(
            torch.cat(coords).to(torch.int32),
            torch.cat(features),
            (IMAGE_SIZE, IMAGE_SIZE),
            size,
        )


def step_seconds(model, optimizer, inputs, labels, steps: int) -> float:
    """Return the mean time of ``steps`` train steps after one warm-up step."""
    for index in range(steps + 1):
        if index == 1:
            torch.cuda.synchronize()
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def try_batch(name: str, options: dict, maker: BatchMaker, size: int, steps: int) -> dict | None:
    """Run train steps at batch ``size``; return time and peak memory, or None when out of memory."""
    model = optimizer = inputs = None
    try:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        model = build_model(name, IMAGE_SIZE, **options).cuda()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        inputs = maker.dense(size) if model.input_kind == "dense" else maker.sparse(size)
        seconds = step_seconds(model, optimizer, inputs, maker.labels(size), steps)
        return {
            "batch": size,
            "step_s": seconds,
            "s_per_event": seconds / size,
            "peak_allocated_bytes": torch.cuda.max_memory_allocated(),
        }
    except torch.cuda.OutOfMemoryError:
        return None
    except RuntimeError as error:
        # cuDNN and spconv report a failed allocation as a plain RuntimeError
        if "out of memory" in str(error).lower() or "ALLOC_FAILED" in str(error):
            return None
        raise
    finally:
        del model, optimizer, inputs
        torch.cuda.empty_cache()


def largest_batch(name: str, options: dict, maker: BatchMaker, limit: int) -> dict:
    """Double the batch until it no longer fits, then bisect; time the largest one that fits."""
    fits, fails = 0, None
    size = 1
    while size <= limit:
        if try_batch(name, options, maker, size, steps=1) is None:
            fails = size
            break
        fits = size
        size *= 2
    if fails is not None:
        while fails - fits > 1:
            middle = (fits + fails) // 2
            if try_batch(name, options, maker, middle, steps=1) is None:
                fails = middle
            else:
                fits = middle
    result = {"largest_batch": fits, "search_limit": limit, "limit_reached": fails is None}
    if fits:
        result["at_largest_batch"] = try_batch(name, options, maker, fits, TIMED_STEPS)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5, help="distinct simulated events")
    parser.add_argument("--max-batch", type=int, default=256, help="JishNet batch search limit")
    parser.add_argument(
        "--max-sparse-batch", type=int, default=4096, help="SCNet batch search limit"
    )
    parser.add_argument("--only", nargs="*", choices=sorted(CONFIGURATIONS), help="subset to run")
    parser.add_argument("--output", default="benchmarks/results/bench_models_gpu.json")
    args = parser.parse_args()

    if not torch.cuda.is_available():
        sys.exit(
            "bench_models_gpu.py needs a CUDA GPU, and torch.cuda.is_available() is False on this "
            "machine (torch build " + torch.__version__ + "); run it on a GPU node with "
            "spconv's CUDA wheel, or run benchmarks/bench_models.py for the CPU figures"
        )
    device = torch.device("cuda")
    started = time.time()
    gpu = torch.cuda.get_device_properties(device)
    maker = BatchMaker(simulate_events(args.events, 1), device)
    flop_rate = matmul_rate("cuda")
    bandwidth = memory_bandwidth("cuda")
    log.info(
        "%s, %.1f GiB: %.1f TFLOP/s float32 matrix product, %.0f GB/s copy bandwidth",
        gpu.name,
        gpu.total_memory / 2**30,
        flop_rate / 1e12,
        bandwidth / 1e9,
    )

    results = {}
    for label in args.only or CONFIGURATIONS:
        name, options = CONFIGURATIONS[label]
        limit = args.max_sparse_batch if name == "scnet" else args.max_batch
        single = try_batch(name, options, maker, 1, TIMED_STEPS)
        entry = {"model": name, "options": options, "batch_1": single}
        entry.update(largest_batch(name, options, maker, limit))
        if name == "jishnet":
            model = build_model(name, IMAGE_SIZE, **options)
            description = describe_model(model, IMAGE_SIZE)
            floor = roofline_floor(
                (IMAGE_SIZE, IMAGE_SIZE),
                description["channels"],
                flop_rate,
                bandwidth,
                description["parameters"],
            )
            entry["description"] = description
            entry["roofline_floor_s"] = floor["floor_s"]
        results[label] = entry
        log.info(
            "%s: batch 1 %.4f s per event, largest batch %d%s",
            label,
            single["s_per_event"] if single else float("nan"),
            entry["largest_batch"],
            " (search limit)" if entry["limit_reached"] else "",
        )

    report = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": machine_description(),
        "gpu": {"name": gpu.name, "memory_bytes": gpu.total_memory},
        "matmul_flops_per_s": flop_rate,
        # cuDNN convolutions use TF32 by default while matrix products do not, so
        # with TF32 on, the float32 ceiling makes JishNet's floor too high
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "bandwidth_bytes_per_s": bandwidth,
        "results": results,
        "wall_s": time.time() - started,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump(report, handle, indent=1)
    log.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
