"""Command line of raylar.data: ``python -m raylar.data inspect FILE``."""

import argparse
import json
import sys

from raylar.data.inspect import format_summary, summarize
from raylar.data.larcv3 import LArCV3Source, is_larcv3_file, list_products
from raylar.data.sources import DataFormatError, check_hdf5_file, open_source


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m raylar.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser(
        "inspect", help="print events, classes, image size, occupancy and each codec's compression ratio"
    )
    inspect.add_argument("file", help="raylar event file or larcv3 file (HDF5), or simulated:N[:SEED]")
    inspect.add_argument("--producer", help="larcv3 sparse2d producer (default: the only one in the file)")
    inspect.add_argument("--projection", type=int, default=0, help="larcv3 projection (plane) id (default 0)")
    inspect.add_argument(
        "--labels", help="larcv3 labels: particle:NAME or a label file (default: particle of the producer)"
    )
    inspect.add_argument("--max-events", type=int, default=50, help="events to measure (default 50)")
    inspect.add_argument("--compressor", default="lz4", help="BLOSC compressor: lz4, zstd or blosclz")
    inspect.add_argument("--level", type=int, default=5, help="BLOSC compression level 0-9 (default 5)")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def open_for_inspect(args):
    if args.file.startswith("simulated:"):
        return open_source(args.file)
    path = check_hdf5_file(args.file)
    if not is_larcv3_file(path):
        return open_source(path)
    producers = list_products(path)
    producer = args.producer
    if producer is None:
        if len(producers) != 1:
            raise DataFormatError(f"{path} has the sparse2d producers {producers}; choose one with --producer")
        producer = producers[0]
    return LArCV3Source(path, producer, args.projection, labels=args.labels)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_events < 1:
        print(f"error: --max-events must be at least 1, got {args.max_events}", file=sys.stderr)
        return 2
    try:
        source = open_for_inspect(args)
        summary = summarize(source, args.max_events, args.compressor, args.level)
    except (DataFormatError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
