"""``decaylab space``: print the design table (:mod:`decaylab.model.design_table`), optionally as CSV too."""

from __future__ import annotations

import argparse

from decaylab.model.presets import PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", default="tiny", choices=sorted(PRESETS), help="model size for parameter counts")
    parser.add_argument("--csv", default=None, help="also write the table as CSV to this path")


def main(args: argparse.Namespace) -> int:
    from decaylab.atomic import write_text_atomic
    from decaylab.model.design_table import design_rows, format_table, table_csv

    rows = design_rows(args.size)
    print(format_table(rows))
    if args.csv:
        write_text_atomic(args.csv, table_csv(rows))
    return 0
