"""Predicted data-parallel efficiency from the cost of a ring allreduce.

A ring allreduce of S bytes over p workers sends 2 (p - 1) / p * S bytes
through each worker's link. It takes 2 (p - 1) steps (reduce-scatter, then
all-gather), so over links of bandwidth B bytes/s with per-step latency alpha:

    t_allreduce(p) = 2 (p - 1) / p * S / B + 2 (p - 1) * alpha

When the ring spans several nodes, its slowest hop (the network between
nodes) sets B; inside one node it is the GPU interconnect. With no overlap
of the allreduce and the backward pass (the pessimistic case), one step of
p workers takes t_step + t_allreduce(p) for p times the work of one worker,
so the efficiency is

    E(p) = t_step / (t_step + t_allreduce(p))

``python -m raylar.scaling.allreduce`` prints the table of docs/scaling.md.
"""

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Links:
    """Bandwidths (bytes/s) and per-step latency (s) of a machine's links."""

    name: str
    inter_node_bandwidth: float
    intra_node_bandwidth: float
    latency_s: float
    gpus_per_node: int


# SummitDev-like: EDR InfiniBand (100 Gb/s = 12.5 GB/s per direction) between
# nodes; NVLink 1.0 inside a node, taken as two 20 GB/s links per direction
# between GPUs. The 5 us per ring step is an assumed figure for NCCL over
# InfiniBand, including software overhead, not a measurement.
SUMMITDEV = Links(
    name="SummitDev-like",
    inter_node_bandwidth=100e9 / 8,
    intra_node_bandwidth=40e9,
    latency_s=5e-6,
    gpus_per_node=4,
)


def ring_allreduce_seconds(
    num_bytes: float, workers: int, bandwidth: float, latency_s: float
) -> float:
    """Return 2 (p - 1) / p * S / B + 2 (p - 1) * alpha for ``workers`` = p."""
    if workers < 1:
        raise ValueError(f"invalid number of workers {workers!r}: it must be at least 1")
    if workers == 1:
        return 0.0
    return 2 * (workers - 1) / workers * num_bytes / bandwidth + 2 * (workers - 1) * latency_s


def allreduce_seconds(num_bytes: float, workers: int, links: Links) -> float:
    """Return the ring allreduce time on ``links``: NVLink inside one node, the network across nodes."""
    bandwidth = (
        links.intra_node_bandwidth if workers <= links.gpus_per_node else links.inter_node_bandwidth
    )
    return ring_allreduce_seconds(num_bytes, workers, bandwidth, links.latency_s)


def predicted_efficiency(step_s: float, num_bytes: float, workers: int, links: Links) -> float:
    """Return t_step / (t_step + t_allreduce), the efficiency with no overlap of communication."""
    return step_s / (step_s + allreduce_seconds(num_bytes, workers, links))


def prediction_table(
    networks: dict[str, tuple[float, int]], counts: list[int], links: Links
) -> str:
    """Return a Markdown table; ``networks`` maps a name to (step seconds, gradient parameters)."""
    lines = [
        "| network | step time (ms) | gradient (MB) | "
        + " | ".join(f"p = {p}: t_allreduce (ms), E" for p in counts)
        + " |",
        "|---|---:|---:|" + "---:|" * len(counts),
    ]
    for name, (step_s, parameters) in networks.items():
        num_bytes = 4 * parameters
        cells = []
        for workers in counts:
            allreduce_ms = 1e3 * allreduce_seconds(num_bytes, workers, links)
            efficiency = predicted_efficiency(step_s, num_bytes, workers, links)
            cells.append(f"{allreduce_ms:.2f}, {100 * efficiency:.1f} %")
        lines.append(
            f"| {name} | {1e3 * step_s:.1f} | {num_bytes / 1e6:.2f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m raylar.scaling.allreduce",
        description="Print predicted efficiencies from step times and gradient sizes on SummitDev-like links.",
    )
    parser.add_argument(
        "--network",
        action="append",
        nargs=3,
        metavar=("NAME", "STEP_MS", "PARAMETERS"),
        required=True,
        help="a network's single-worker step time (ms) and parameter count",
    )
    parser.add_argument(
        "--gpus", default="8,32,128", help="comma-separated worker (GPU) counts (default 8,32,128)"
    )
    args = parser.parse_args(argv)
    networks = {
        name: (float(step_ms) / 1e3, int(parameters)) for name, step_ms, parameters in args.network
    }
    counts = [int(count) for count in args.gpus.split(",")]
    print(prediction_table(networks, counts, SUMMITDEV))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
