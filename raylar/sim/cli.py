"""Command line of the simulator: generate an event file, validate the physics, draw an event.

python -m raylar.simulate --events N --out FILE [--seed S] [--downsample K] [--classes ...]
                          [--workers W] [--overwrite]
python -m raylar.simulate validate [--json]
python -m raylar.simulate show FILE --event I --out PNG
"""

import argparse
import json
import multiprocessing
import os
import sys
import time

from raylar import geometry
from raylar.log import get_logger
from raylar.sim.config import SimConfig
from raylar.sim.eventfile import (
    EventFileError,
    EventFileWriter,
    check_output_path,
    count_events,
    read_events,
)
from raylar.sim.generate import simulate_event

log = get_logger(__name__)

CHUNK_EVENTS = 8


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _generate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m raylar.simulate",
        description=(
            "Generate single-particle MicroBooNE collection-plane events into raylar's HDF5 event file. "
            "Other commands: 'validate' (physics checks) and 'show FILE --event I --out PNG' (event display); "
            "run them with --help for their options."
        ),
    )
    parser.add_argument(
        "--events",
        type=_positive_int,
        required=True,
        help="number of events to generate (a positive integer)",
    )
    parser.add_argument(
        "--out", required=True, help="output HDF5 file; its folder must exist and be writable"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="master seed; event i uses the seed sequence (seed, i) (default 0)",
    )
    parser.add_argument(
        "--downsample",
        type=int,
        default=1,
        help=f"integer factor that sums factor x factor pixel blocks; must divide {geometry.IMAGE_SIZE} (default 1: full 3600 x 3600 images)",
    )
    parser.add_argument(
        "--classes",
        nargs="+",
        default=list(geometry.CLASS_NAMES),
        help="particle classes, cycled over the events: gamma electron muon pion kaon (default: all five)",
    )
    parser.add_argument(
        "--momentum",
        nargs=2,
        type=float,
        metavar=("MIN", "MAX"),
        default=None,
        help="primary momentum range in MeV/c, uniform, for every class (default 100 1000)",
    )
    parser.add_argument(
        "--noise-rms",
        type=float,
        default=None,
        help="electronic noise RMS in ADC counts (default 2.5)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="zero-suppression threshold in ADC counts (default 10)",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="number of worker processes (default 1); the output does not depend on it",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace FILE if it exists (default: refuse)"
    )
    return parser


def _config_from_args(args) -> SimConfig:
    values = {"downsample": args.downsample, "classes": tuple(args.classes)}
    if args.momentum is not None:
        low, high = args.momentum
        values["spectra"] = {
            name: {"p_min_mev": low, "p_max_mev": high} for name in geometry.CLASS_NAMES
        }
    if args.noise_rms is not None:
        values["noise_rms_adc"] = args.noise_rms
    if args.threshold is not None:
        values["threshold_adc"] = args.threshold
    return SimConfig(**values)


def _simulate_chunk(task):
    start, stop, seed, config_dict = task
    config = SimConfig.from_dict(config_dict)
    return [simulate_event(index, seed, config) for index in range(start, stop)]


def _chunks(num_events, seed, config):
    config_dict = config.to_dict()
    for start in range(0, num_events, CHUNK_EVENTS):
        yield start, min(start + CHUNK_EVENTS, num_events), seed, config_dict


def generate(
    num_events: int,
    out: str,
    seed: int,
    config: SimConfig,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> str:
    """Write ``num_events`` events of the stream (seed, config) to ``out`` using ``workers`` processes."""
    from tqdm import tqdm

    attrs = {
        "generator": "raylar.sim",
        "config": config.to_dict(),
        "seed": int(seed),
        "requested_events": int(num_events),
    }
    started = time.perf_counter()
    with EventFileWriter(out, attrs, overwrite=overwrite) as writer:
        bar = tqdm(total=num_events, unit="event", disable=not progress, file=sys.stderr)
        if workers == 1:
            batches = map(_simulate_chunk, _chunks(num_events, seed, config))
            pool = None
        else:
            # Spawned workers start clean (no inherited threads or Ray state); chunks come back in order.
            pool = multiprocessing.get_context("spawn").Pool(workers)
            batches = pool.imap(_simulate_chunk, _chunks(num_events, seed, config))
        try:
            for events in batches:
                for event in events:
                    writer.write(event)
                bar.update(len(events))
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
                pool.join()
    elapsed = time.perf_counter() - started
    log.info(
        "generated %d events in %.1f s (%.1f events/s, %d worker%s) into %s",
        num_events,
        elapsed,
        num_events / elapsed,
        workers,
        "" if workers == 1 else "s",
        out,
    )
    return out


def _run_generate(argv) -> int:
    parser = _generate_parser()
    args = parser.parse_args(argv)
    try:
        config = _config_from_args(args)
        check_output_path(args.out, args.overwrite)
    except (ValueError, EventFileError) as error:
        parser.error(str(error))
    generate(args.events, args.out, args.seed, config, args.workers, args.overwrite)
    print(f"wrote {args.events} events to {os.path.abspath(args.out)}")
    return 0


def _run_validate(argv) -> int:
    from raylar.sim.validation import CHECKS, format_table, run_validation

    parser = argparse.ArgumentParser(
        prog="python -m raylar.simulate validate",
        description="Run the physics checks and print computed values next to reference values and tolerances.",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the table as JSON instead of text"
    )
    parser.add_argument(
        "--checks",
        nargs="+",
        metavar="KEY",
        default=None,
        help=f"run only these checks: {', '.join(CHECKS)}",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.checks or ()) - set(CHECKS))
    if unknown:
        parser.error(f"unknown checks {unknown}; choose from {', '.join(CHECKS)}")
    rows = run_validation(args.checks)
    if args.json:
        print(json.dumps([row.to_dict() for row in rows], indent=2))
    else:
        print(format_table(rows))
    failed = [row.key for row in rows if not row.passed]
    if failed:
        log.error("validation failed for %s", ", ".join(failed))
        return 1
    return 0


def _run_show(argv) -> int:
    from raylar.sim.display import draw_event

    parser = argparse.ArgumentParser(
        prog="python -m raylar.simulate show",
        description="Draw one event of an event file as a PNG.",
    )
    parser.add_argument("file", help="raylar HDF5 event file")
    parser.add_argument(
        "--event", type=int, default=0, help="index of the event in the file, from 0 (default 0)"
    )
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument(
        "--full",
        action="store_true",
        help="show the whole image instead of the region around the hits",
    )
    args = parser.parse_args(argv)
    try:
        total = count_events(args.file)
    except EventFileError as error:
        parser.error(str(error))
    if not 0 <= args.event < total:
        parser.error(
            f"event {args.event} is out of range: {args.file} holds events 0 to {total - 1}"
        )
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        parser.error(f"output folder {folder} does not exist")
    event = next(read_events(args.file, args.event, args.event + 1))
    draw_event(event, args.out, zoom=not args.full)
    print(f"wrote {os.path.abspath(args.out)}")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "validate":
        return _run_validate(argv[1:])
    if argv and argv[0] == "show":
        return _run_show(argv[1:])
    return _run_generate(argv)
