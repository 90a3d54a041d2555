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
    "space": ("decaylab.commands.space", "print every valid design-space combination with its size and initial decay"),
    "generate": ("decaylab.commands.generate", "generate text from a trained model directory"),
}
OPTIONAL_COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("decaylab.data.command", "build a tokenized dataset (embedded corpus, local files or HF datasets)"),
    "train": ("decaylab.train.command", "train one model from a config file and key=value overrides"),
    "eval": ("decaylab.evaluate.command", "evaluate a trained model: perplexity, extrapolation, recall"),
    "analyze": ("decaylab.analysis.command", "decay statistics and plots of trained models"),
    "sweep": ("decaylab.sweep.command", "run an experiment family of the paper (skips finished runs, resumes)"),
    "report": ("decaylab.sweep.report_command", "write the Markdown/CSV/PNG report of a sweep"),
}


def available_commands() -> dict[str, tuple[str, str]]:
    found = dict(COMMANDS)
    for name, (module, text) in OPTIONAL_COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            found[name] = (module, text)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decaylab", description="The design space of decay in linear attention.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, text) in available_commands().items():
        sp = sub.add_parser(name, help=text, description=text, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        sp.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    # Let each subcommand define its own arguments only when it is the one being run.
    known, _ = parser.parse_known_args(argv[:1] if argv and not argv[0].startswith("-") else argv)
    module = importlib.import_module(known._module)
    sub_parser = parser._subparsers._group_actions[0].choices[known.command]
    module.add_arguments(sub_parser)
    args = parser.parse_args(argv)
    return int(module.main(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
