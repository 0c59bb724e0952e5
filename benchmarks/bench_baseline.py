"""A gradient-boosted baseline on summary figures of each event: the accuracy a network should beat.

For every event it computes 36 figures from the image alone: charge statistics, clusters, the
principal axis of the largest cluster, the charge and width profile along it, the charge per wire.
It trains scikit-learn's HistGradientBoostingClassifier on all events after the first ``--val``
and scores it on those first events. It does so at each image size of ``--factors`` (pixels summed
in blocks, as the simulator's downsampling does), so it shows how much of the particle type
survives downsampling. The figures need no truth, so the script also runs on larcv3-converted or
other raylar event files. Uncertainties are binomial.

    .venv/bin/python benchmarks/bench_baseline.py --events 16000 --seed 21 --workers 2
    .venv/bin/python benchmarks/bench_baseline.py --data events.h5 --val 2000
"""

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from raylar import geometry
from raylar.geometry import CLASS_NAMES
from raylar.log import get_logger
from raylar.sim import SimConfig
from raylar.sim.cli import generate
from raylar.sim.detector import downsample_pixels
from raylar.sim.eventfile import EventFileError, count_events, read_events

logger = get_logger("raylar.benchmarks.baseline")
RESULTS = Path(__file__).parent / "results" / "bench_baseline.json"

TICK_CM = geometry.TICK_PERIOD_US * SimConfig().drift_velocity_cm_per_us
PROFILE_BINS = 10
FIGURE_NAMES = (
    ["hits", "charge", "max", "p50", "p75", "p90", "p99", "mean"]
    + ["clusters", "largest_cluster_fraction", "clusters_over_2pc"]
    + ["major_rms_cm", "minor_rms_cm", "length_cm", "charge_per_cm", "axis_along_wires", "mean_distance_cm"]
    + [f"profile_{i}" for i in range(PROFILE_BINS)]
    + ["width_start_cm", "width_end_cm", "width_max_cm"]
    + ["wire_charge_p10", "wire_charge_p50", "wire_charge_p90", "wire_charge_start", "wire_charge_end", "wires"]
)


def summary_figures(rows, cols, values, wire_cm: float, tick_cm: float, min_value: float) -> list:
    """Return the figures of FIGURE_NAMES for one image given as pixel lists; zeros if it is empty."""
    keep = values >= min_value
    z, x, q = rows[keep] * wire_cm, cols[keep] * tick_cm, values[keep].astype(np.float64)
    if q.size < 3:
        return [float(q.size)] + [0.0] * (len(FIGURE_NAMES) - 1)
    total = q.sum()
    figures = [q.size, total, q.max(), *np.percentile(q, [50, 75, 90, 99]), q.mean()]

    # Clusters of hits on a 1 cm grid, touching cells joined.
    cell_z, cell_x = (z - z.min()).astype(int), (x - x.min()).astype(int)
    occupied = np.zeros((cell_z.max() + 1, cell_x.max() + 1), bool)
    occupied[cell_z, cell_x] = True
    labels, count = ndimage.label(occupied, structure=np.ones((3, 3)))
    hit_cluster = labels[cell_z, cell_x]
    cluster_charge = np.bincount(hit_cluster, weights=q)[1:]
    figures += [count, cluster_charge.max() / total, int((cluster_charge > 0.02 * total).sum())]

    # Charge-weighted principal axis of the largest cluster.
    main = hit_cluster == np.argmax(cluster_charge) + 1
    z, x, q = z[main], x[main], q[main]
    offsets = np.stack([z - np.average(z, weights=q), x - np.average(x, weights=q)], axis=1)
    covariance = (offsets * q[:, None]).T @ offsets / q.sum()
    spreads, axes = np.linalg.eigh(covariance)
    along, across = offsets @ axes[:, 1], offsets @ axes[:, 0]
    low, high = np.percentile(along, [1, 99])
    length = max(high - low, wire_cm)
    figures += [np.sqrt(max(spreads[1], 0.0)), np.sqrt(max(spreads[0], 0.0)), length, q.sum() / length,
                abs(axes[0, 1]), np.abs(across).mean()]

    # Charge and width along the axis, turned so that the brighter end comes last.
    bins = np.clip(((along - low) / length * PROFILE_BINS).astype(int), 0, PROFILE_BINS - 1)
    profile = np.bincount(bins, weights=q, minlength=PROFILE_BINS)
    width_sum = np.bincount(bins, weights=np.abs(across), minlength=PROFILE_BINS)
    hits = np.bincount(bins, minlength=PROFILE_BINS)
    width = np.divide(width_sum, hits, out=np.zeros(PROFILE_BINS), where=hits > 0)
    if profile[:2].sum() > profile[-2:].sum():
        profile, width = profile[::-1], width[::-1]
    figures += list(profile / profile.mean()) + [width[:3].mean(), width[-3:].mean(), width.max()]

    # Charge per wire, corrected for the axis angle: a dE/dx proxy along the particle.
    wires = np.rint(z / wire_cm).astype(int)
    per_wire = np.bincount(wires - wires.min(), weights=q)
    per_wire = per_wire[per_wire > 0] * abs(axes[0, 1])
    figures += list(np.percentile(per_wire, [10, 50, 90])) + [per_wire[:5].mean(), per_wire[-5:].mean(),
                                                              per_wire.size]
    return [float(value) for value in figures]


def event_figures(path: str, factor: int, min_adc: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Return (figures, labels, image side) for every event of ``path`` with pixels summed by ``factor``."""
    figures, labels, side = [], [], None
    for event in read_events(path):
        file_factor = geometry.IMAGE_SIZE // event.shape[0]
        scale = file_factor * factor
        rows, cols, values = downsample_pixels(event.rows, event.cols, event.values, factor)
        # A track crossing a block of scale x scale pixels leaves roughly scale times the charge
        # of one of its pixels, so the hit threshold grows with the block side (an estimate).
        figures.append(summary_figures(rows, cols, values, geometry.WIRE_PITCH_CM * scale, TICK_CM * scale,
                                       min_adc * scale))
        labels.append(event.label)
        side = event.shape[0] // factor
    return np.asarray(figures), np.asarray(labels), side


def fit_and_score(figures, labels, num_val: int, seed: int) -> dict:
    """Train on events after the first ``num_val`` and score on those; return the figures of merit."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.inspection import permutation_importance

    def classifier():
        return HistGradientBoostingClassifier(max_iter=400, learning_rate=0.05, early_stopping=True,
                                              random_state=seed)

    model = classifier().fit(figures[num_val:], labels[num_val:])
    predicted = model.predict(figures[:num_val])
    truth = labels[:num_val]
    accuracy = float((predicted == truth).mean())
    counts = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), int)
    np.add.at(counts, (truth, predicted), 1)
    per_class = counts.diagonal() / np.maximum(counts.sum(axis=1), 1)

    # γ against e± alone: how well the showers separate, and which figures do it.
    showers = labels < 2
    shower_figures, shower_labels = figures[showers], labels[showers]
    shower_val = int(showers[:num_val].sum())
    pair = classifier().fit(shower_figures[shower_val:], shower_labels[shower_val:])
    importance = permutation_importance(pair, shower_figures[:shower_val], shower_labels[:shower_val],
                                        n_repeats=5, random_state=seed)
    order = np.argsort(-importance.importances_mean)[:5]
    return {
        "val_events": int(num_val),
        "train_events": int(len(labels) - num_val),
        "val_accuracy": accuracy,
        "val_accuracy_err": float(np.sqrt(accuracy * (1 - accuracy) / num_val)),
        "train_accuracy": float(model.score(figures[num_val:], labels[num_val:])),
        "per_class_accuracy": dict(zip(CLASS_NAMES, per_class.tolist(), strict=True)),
        # Rows are the true class and columns the predicted class, in the order of "classes".
        "confusion_percent": (100 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)).round(1).tolist(),
        "gamma_vs_electron_accuracy": float(pair.score(shower_figures[:shower_val], shower_labels[:shower_val])),
        # Each value is the mean drop in γ-against-e± accuracy when that figure is shuffled among events.
        "gamma_vs_electron_top_figures": {FIGURE_NAMES[i]: round(float(importance.importances_mean[i]), 4)
                                          for i in order},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="raylar event file; without it --events are simulated at full size")
    parser.add_argument("--events", type=int, default=16000, help="events to simulate (default 16000)")
    parser.add_argument("--seed", type=int, default=21, help="simulation seed (default 21)")
    parser.add_argument("--workers", type=int, default=2, help="simulation processes (default 2)")
    parser.add_argument("--val", type=int, default=2000, help="first events held out (default 2000)")
    parser.add_argument("--factors", default="1,3,9",
                        help="block sizes to sum pixels in, on top of the file's own downsampling (default 1,3,9)")
    parser.add_argument("--min-adc", type=float, default=30.0,
                        help="pixels below this many ADC counts (per full-size pixel) are ignored (default 30)")
    parser.add_argument("--output", type=Path, default=RESULTS,
                        help=f"JSON file to write (default {RESULTS.relative_to(Path(__file__).parent.parent)})")
    args = parser.parse_args(argv)
    try:
        factors = [int(text) for text in args.factors.split(",")]
    except ValueError:
        factors = []
    if not factors or any(factor < 1 for factor in factors):
        parser.error(f"--factors {args.factors!r}: give positive integers separated by commas, such as 1,3,9")

    if args.events < 2 or args.workers < 1:
        parser.error(f"--events {args.events} and --workers {args.workers}: give at least 2 events and 1 worker")

    if args.data is not None:
        try:
            total = count_events(args.data)
            side = next(read_events(args.data, 0, 1)).shape[0]
        except (EventFileError, StopIteration) as error:
            parser.error(f"--data {args.data}: {error or 'the file holds no events'}")
    else:
        total, side = args.events, geometry.IMAGE_SIZE
    if not 0 < args.val < total:
        parser.error(f"--val {args.val} must be between 1 and {total - 1}: the data hold {total} events")
    for factor in factors:
        if side % factor:
            divisors = ", ".join(str(d) for d in range(1, 10) if side % d == 0)
            parser.error(f"--factors: {factor} does not divide the images' {side}-pixel side; "
                         f"use divisors of {side}, such as {divisors}")

    with tempfile.TemporaryDirectory(prefix="raylar-baseline-") as scratch:
        path, simulate_s = args.data, None
        if path is None:
            path = str(Path(scratch) / "events.h5")
            started = time.perf_counter()
            generate(args.events, path, args.seed, SimConfig(downsample=1), workers=args.workers, progress=False)
            simulate_s = time.perf_counter() - started
        runs = []
        for factor in factors:
            started = time.perf_counter()
            figures, labels, image_side = event_figures(path, factor, args.min_adc)
            figures_s = time.perf_counter() - started
            started = time.perf_counter()
            scores = fit_and_score(figures, labels, args.val, args.seed)
            runs.append({"factor": factor, "image_size": image_side, "figures_s": figures_s,
                         "fit_s": time.perf_counter() - started, **scores})
            logger.info("%d x %d: validation accuracy %.3f +- %.3f, gamma vs e %.3f", image_side, image_side,
                        scores["val_accuracy"], scores["val_accuracy_err"], scores["gamma_vs_electron_accuracy"])

    result = {
        "benchmark": "bench_baseline",
        "machine": {"node": platform.node(), "processor": platform.machine()},
        "command": "benchmarks/bench_baseline.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "data": args.data or f"{args.events} simulated events, seed {args.seed}, full size",
        "events": total,
        "file_image_size": side,
        "min_adc": args.min_adc,
        "seed": args.seed,
        "classes": list(CLASS_NAMES),
        "simulate_s": simulate_s,
        "figures": list(FIGURE_NAMES),
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1))
    print(json.dumps({run["image_size"]: round(run["val_accuracy"], 4) for run in runs}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
