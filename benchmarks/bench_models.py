"""Train-step time and peak memory of JishNet and SCNet on the same simulated events.

One run measures, at 3600 x 3600 and at a downsampled size, on the same events
from ``raylar.sim.simulate_event`` (one per class by default):

- the train-step time per event (zero_grad, forward, cross-entropy, backward,
  Adam step with foreach=True; batch of one event) and the peak memory of the steps, for SCNet
  and for JishNet in several layouts (plain, channels-last, fused pooling, ...);
- SCNet's speed-up over JishNet (JishNet time / SCNet time);
- JishNet's roofline floor: the sum over its layers, forward and backward, of
  max(FLOPs / matrix-product rate, bytes moved / memory bandwidth), with both
  ceilings measured in the same process right before the timed steps.

Every measurement runs on ``--threads`` torch threads, by default 1, which
gives per-core figures. On a shared, oversubscribed machine a two-thread
parallel region waits for whichever thread the scheduler has parked, and that
made Adam's elementwise steps 10 to 50 times slower. Each configuration runs in
its own subprocess, so its peak resident memory (VmHWM, reset through
/proc/self/clear_refs once the inputs exist) belongs to the steps alone:
activations, gradients, optimizer state and workspace.

Usage: python benchmarks/bench_models.py [--events 5] [--downsample 3] [--repeats 1]
       [--small-repeats 3] [--threads 1] [--output benchmarks/results/bench_models.json]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from raylar.data.types import SparseBatch
from raylar.geometry import image_size
from raylar.log import get_logger
from raylar.models import build_model, describe_model
from raylar.models.flops import dense_layer_costs

log = get_logger("raylar.benchmarks.models")

SEED = 2024
MATMUL_SIDE = 2048
COPY_BYTES = 256 * 2**20
# JishNet layouts compared; the first is the plain network.
JISHNET_VARIANTS = {
    "plain": {},
    "channels_last": {"channels_last": True},
    "fused_pooling": {"fused_pooling": True},
    "fused_channels_last": {"fused_pooling": True, "channels_last": True},
    "checkpointing": {"checkpointing": True},
    "bf16_autocast": {"bf16_autocast": True},
    "fused_first_block": {"fused_first_block": True, "fused_pooling": True, "channels_last": True},
}
# Only these run at full size: the others' full-size step takes seconds each.
FULL_SIZE_VARIANTS = (
    "plain",
    "channels_last",
    "fused_channels_last",
    "checkpointing",
    "fused_first_block",
)


# ---------------------------------------------------------------- measurements


def simulate_events(count: int, downsample: int) -> list:
    from raylar.sim import simulate_event
    from raylar.sim.config import SimConfig

    config = SimConfig(downsample=downsample)
    return [simulate_event(index, SEED, config) for index in range(count)]


def dense_input(event) -> torch.Tensor:
    return torch.from_numpy(event.dense()).reshape(1, 1, *event.shape)


def sparse_input(event) -> SparseBatch:
    coords = torch.zeros(event.num_hits, 3, dtype=torch.int32)
    coords[:, 1] = torch.from_numpy(event.rows.astype("int32"))
    coords[:, 2] = torch.from_numpy(event.cols.astype("int32"))
    features = torch.from_numpy(event.values.astype("float32")).reshape(-1, 1)
    return SparseBatch(coords, features, tuple(event.shape), 1)


def matmul_rate(device: str = "cpu") -> float:
    """Return the best float32 FLOP/s of a few 2048 x 2048 matrix products."""
    a = torch.randn(MATMUL_SIDE, MATMUL_SIDE, device=device)
    b = torch.randn(MATMUL_SIDE, MATMUL_SIDE, device=device)
    out = torch.empty_like(a)
    best = float("inf")
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * MATMUL_SIDE**3 / best


def memory_bandwidth(device: str = "cpu") -> float:
    """Return the best bytes/s (read plus write) of copying a 256 MiB buffer."""
    source = torch.ones(COPY_BYTES // 4, device=device)
    target = torch.empty_like(source)
    best = float("inf")
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        target.copy_(source)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * COPY_BYTES / best


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def roofline_floor(shape, channels, flop_rate: float, bandwidth: float, parameters: int) -> dict:
    """Return JishNet's per-event floor: each layer pass bound by FLOPs or by bytes, summed.

    The Adam step reads parameter, gradient and two moments and writes three
    of them back, which adds 7 * 4 bytes per parameter.
    """
    layers = []
    total = 0.0
    for cost in dense_layer_costs(shape, channels):
        forward = max(cost.forward_flops / flop_rate, cost.forward_bytes / bandwidth)
        backward = max(cost.backward_flops / flop_rate, cost.backward_bytes / bandwidth)
        total += forward + backward
        layers.append({**cost.to_dict(), "forward_floor_s": forward, "backward_floor_s": backward})
    optimizer = 7 * 4 * parameters / bandwidth
    return {"floor_s": total + optimizer, "optimizer_floor_s": optimizer, "layers": layers}


def reset_peak_memory() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def resident_bytes(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} is missing from /proc/self/status")


def train_step(model, optimizer, inputs, label) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(inputs), label)
    loss.backward()
    optimizer.step()


def measure(spec: dict) -> dict:
    """Time train steps of one model configuration on the events of ``spec``; runs in a subprocess."""
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    downsample = spec["downsample"]
    events = simulate_events(spec["events"], downsample)
    side = image_size(downsample)
    model = build_model(spec["model"], side, **spec["options"])
    # foreach: on CPU the default per-tensor Adam took 76 ms a step for the
    # head's 2 M parameters, the foreach one 2.5 ms (torch 2.13, this machine)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
    make_input = dense_input if model.input_kind == "dense" else sparse_input
    inputs = [make_input(event) for event in events]
    labels = [torch.tensor([event.label]) for event in events]

    result = {
        "model": spec["model"],
        "variant": spec["variant"],
        "image_size": side,
        "options": spec["options"],
        "threads": torch.get_num_threads(),
        "description": describe_model(model, side),
    }
    if model.input_kind == "dense":
        # ceilings right before the timed steps, in the same process and load
        result["matmul_flops_per_s"] = matmul_rate()
        result["bandwidth_bytes_per_s"] = memory_bandwidth()

    baseline = resident_bytes("VmRSS")
    result["peak_reset"] = reset_peak_memory()
    train_step(model, optimizer, inputs[0], labels[0])  # warm-up: allocator, oneDNN primitives
    times = []
    for _ in range(spec["repeats"]):
        for event_input, label in zip(inputs, labels, strict=True):
            start = time.perf_counter()
            train_step(model, optimizer, event_input, label)
            times.append(time.perf_counter() - start)
    result["peak_step_bytes"] = resident_bytes("VmHWM") - baseline
    result["step_s"] = times
    result["step_s_median"] = statistics.median(times)
    if model.input_kind == "sparse":
        sites = []
        for event_input in inputs:
            with torch.no_grad():
                model(event_input)
            sites.append(model.last_active_sites)
        result["active_sites_per_event"] = sites
    return result


# ---------------------------------------------------------------- orchestration


def run_in_subprocess(spec: dict) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--measure", json.dumps(spec)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(
            f"measuring {spec['model']} {spec['variant']} at downsample {spec['downsample']} "
            f"failed with exit code {completed.returncode}:\n{completed.stderr[-3000:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def machine_description() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average_1_5_15_min": list(os.getloadavg()),
        "platform": platform.platform(),
    }


def summarize(results: list[dict], sizes: list[int]) -> dict:
    """Collect speed-ups, peak memory and JishNet's step time against its roofline floors.

    Each JishNet measurement has a floor from the ceilings measured in its own
    process. Under a changing load those ceilings differ between processes, so
    the summary also gives a floor from the median ceilings of the whole run.
    """
    dense_results = [r for r in results if r["model"] == "jishnet"]
    median_flop_rate = statistics.median(r["matmul_flops_per_s"] for r in dense_results)
    median_bandwidth = statistics.median(r["bandwidth_bytes_per_s"] for r in dense_results)
    summary = {
        "median_matmul_flops_per_s": median_flop_rate,
        "median_bandwidth_bytes_per_s": median_bandwidth,
    }
    for side in sizes:
        at_size = [r for r in results if r["image_size"] == side]
        scnet = next(r for r in at_size if r["model"] == "scnet")
        dense = [r for r in at_size if r["model"] == "jishnet"]
        plain = next(r for r in dense if r["variant"] == "plain")
        fastest = min(dense, key=lambda r: r["step_s_median"])
        description = plain["description"]
        run_floor = roofline_floor(
            (side, side),
            description["channels"],
            median_flop_rate,
            median_bandwidth,
            description["parameters"],
        )["floor_s"]
        summary[str(side)] = {
            "scnet_step_s": scnet["step_s_median"],
            "jishnet_plain_step_s": plain["step_s_median"],
            "jishnet_fastest_variant": fastest["variant"],
            "jishnet_fastest_step_s": fastest["step_s_median"],
            "speedup_scnet_over_plain_jishnet": plain["step_s_median"] / scnet["step_s_median"],
            "speedup_scnet_over_fastest_jishnet": fastest["step_s_median"] / scnet["step_s_median"],
            "jishnet_floor_at_median_ceilings_s": run_floor,
            "jishnet_median_over_run_floor": {
                r["variant"]: r["step_s_median"] / run_floor for r in dense
            },
            "jishnet_median_over_floor": {
                r["variant"]: r["step_s_median"] / r["floor_s"] for r in dense
            },
            # the ceilings are best-of-5 figures, so the fastest step is their like
            "jishnet_fastest_step_over_floor": {
                r["variant"]: min(r["step_s"]) / r["floor_s"] for r in dense
            },
            "peak_step_bytes": {f"jishnet {r['variant']}": r["peak_step_bytes"] for r in dense}
            | {"scnet": scnet["peak_step_bytes"]},
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5, help="simulated events (one per class)")
    parser.add_argument(
        "--downsample", type=int, default=3, help="downsample factor of the smaller size"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="timed passes over the events at full size"
    )
    parser.add_argument(
        "--small-repeats", type=int, default=3, help="timed passes at the downsampled size"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per measurement; on a shared machine one thread waits least for others",
    )
    parser.add_argument("--output", default="benchmarks/results/bench_models.json")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument(
        "--summarize-only",
        action="store_true",
        help="recompute the summary of an existing --output file without measuring",
    )
    args = parser.parse_args()

    if args.summarize_only:
        with open(args.output) as handle:
            report = json.load(handle)
        sizes = sorted({r["image_size"] for r in report["results"]}, reverse=True)
        report["summary"] = summarize(report["results"], sizes)
        with open(args.output, "w") as handle:
            json.dump(report, handle, indent=1)
        log.info("updated the summary of %s", args.output)
        return

    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return

    started = time.time()
    plan = []
    for downsample, repeats in ((1, args.repeats), (args.downsample, args.small_repeats)):
        base = {
            "events": args.events,
            "downsample": downsample,
            "repeats": repeats,
            "threads": args.threads,
        }
        plan.append({**base, "model": "scnet", "variant": "sparse", "options": {}})
        for variant, options in JISHNET_VARIANTS.items():
            if downsample == 1 and variant not in FULL_SIZE_VARIANTS:
                continue
            plan.append({**base, "model": "jishnet", "variant": variant, "options": options})

    results = []
    for spec in plan:
        log.info(
            "measuring %s %s at downsample %d", spec["model"], spec["variant"], spec["downsample"]
        )
        result = run_in_subprocess(spec)
        if result["model"] == "jishnet":
            shape = (result["image_size"], result["image_size"])
            floor = roofline_floor(
                shape,
                result["description"]["channels"],
                result["matmul_flops_per_s"],
                result["bandwidth_bytes_per_s"],
                result["description"]["parameters"],
            )
            result["floor_s"] = floor["floor_s"]
            result["roofline"] = floor
            log.info(
                "  %.3f s per event, %.2f x its roofline floor of %.3f s, peak %.2f GB",
                result["step_s_median"],
                result["step_s_median"] / floor["floor_s"],
                floor["floor_s"],
                result["peak_step_bytes"] / 1e9,
            )
        else:
            log.info(
                "  %.4f s per event, peak %.3f GB",
                result["step_s_median"],
                result["peak_step_bytes"] / 1e9,
            )
        results.append(result)

    sizes = [image_size(1), image_size(args.downsample)]
    report = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": machine_description(),
        "seed": SEED,
        "events": [
            {"index": e.event_id, "label": e.label, "hits": e.num_hits, "shape": list(e.shape)}
            for downsample in (1, args.downsample)
            for e in simulate_events(args.events, downsample)
        ],
        "results": results,
        "summary": summarize(results, sizes),
        "wall_s": time.time() - started,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump(report, handle, indent=1)
    log.info("wrote %s", args.output)
    for side, figures in report["summary"].items():
        log.info("%s: %s", side, json.dumps(figures))


if __name__ == "__main__":
    main()
