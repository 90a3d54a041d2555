"""``decaylab space``: the table of every valid design-space combination."""

from __future__ import annotations

import argparse

from decaylab.model.presets import PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", default="tiny", choices=sorted(PRESETS), help="model size for parameter counts")
    parser.add_argument("--csv", default=None, help="also write the table as CSV to this path")


def main(args: argparse.Namespace) -> int:
    import csv

    from decaylab.space import format_table, space_table

    rows = space_table(args.size)
    print(format_table(rows))
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["decay", "decay_granularity", "share_decay_key", "positional", "parameters", "median_initial_decay"])
            for r in rows:
                s = r.spec
                writer.writerow([s.decay, s.decay_granularity, s.share_decay_key, s.positional, r.parameters,
                                 f"{r.median_initial_decay:.6f}"])
    return 0
