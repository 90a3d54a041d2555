"""The ``decaylab`` command line: one subcommand per stage of the pipeline.

Each stage's module provides ``add_arguments(parser)`` and ``main(args) -> int``; they are
imported only when their subcommand runs, so ``decaylab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand → (module providing add_arguments/main, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("decaylab.data.command", "build a tokenized dataset (embedded corpus, local files or HF datasets)"),
    "train": ("decaylab.train.command", "train one model from a config file and key=value overrides"),
    "eval": ("decaylab.evaluate.command", "evaluate a trained model: perplexity, extrapolation, recall"),
    "analyze": ("decaylab.analysis.command", "decay statistics and plots of trained models"),
    "sweep": ("decaylab.sweep.command", "run an experiment family of the paper (skips finished runs, resumes)"),
    "report": ("decaylab.sweep.report_command", "write the Markdown/CSV/PNG report of a sweep"),
    "generate": ("decaylab.commands.generate", "generate text from a trained model"),
    "export": ("decaylab.commands.export", "write a run's model as a folder that plain transformers loads"),
    "space": ("decaylab.commands.space", "print every valid design-space combination with its size and initial decay"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="decaylab", description="The design space of decay in linear attention.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub_parsers = {
        name: sub.add_parser(name, help=text, description=text, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        for name, (_, text) in COMMANDS.items()
    }
    # Only the subcommand being run imports its module and defines its arguments.
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(COMMANDS[argv[0]][0])
        module.add_arguments(sub_parsers[argv[0]])
    args = parser.parse_args(argv)
    return int(module.main(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
