"""``decaylab report SWEEP_DIR``: (re)write the Markdown/CSV/PNG report of a sweep directory."""

from __future__ import annotations

import argparse
import sys

from decaylab.sweep.report import write_report
from decaylab.sweep.rundir import SweepError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``report`` arguments to ``parser``."""
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a directory made by `decaylab sweep --out`")


def main(args: argparse.Namespace) -> int:
    """Write the report and print its path; 2 when the directory is not a sweep."""
    try:
        path = write_report(args.sweep_dir)
    except SweepError as err:
        print(f"decaylab report: error: {err}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0
