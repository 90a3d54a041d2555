"""The ``decaylab`` command line: one subcommand per stage of the pipeline.

Each stage's module provides ``add_arguments(parser)`` and ``main(args) -> int``; they are
imported only when their subcommand runs, so ``decaylab --help`` stays fast. A user mistake (a
bad argument, a missing or unreadable file, a refused operation) ends the command with one line
``decaylab <cmd>: error: ...`` on stderr and exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from decaylab.errors import DecaylabError

#: What a user can cause and fix: refused operations, invalid values, missing or unreadable files
#: (UnicodeDecodeError is a ValueError).
USER_ERRORS = (DecaylabError, ValueError, OSError)

# subcommand → (module providing add_arguments/main, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("decaylab.commands.prepare", "build a tokenized dataset (embedded corpus, local files or HF datasets)"),
    "train": ("decaylab.commands.train", "train one model from a config file and key=value overrides"),
    "eval": ("decaylab.commands.eval", "evaluate a trained model: perplexity, extrapolation, recall"),
    "analyze": ("decaylab.commands.analyze", "decay statistics and plots of trained models"),
    "sweep": ("decaylab.commands.sweep", "run an experiment family of the paper (skips finished runs, resumes)"),
    "recall": ("decaylab.commands.recall", "MQAR recall against the number of key–value pairs for a sweep's designs"),
    "report": ("decaylab.commands.report", "write the Markdown/CSV/PNG report of a sweep"),
    "generate": ("decaylab.commands.generate", "generate text from a trained model"),
    "export": ("decaylab.commands.export", "write a run's model as a folder that plain transformers loads"),
    "space": ("decaylab.commands.space", "print every valid design-space combination with its size and initial decay"),
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error: ``PROG: error: MESSAGE (see PROG --help)``, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="on an error, show the full traceback")


def run_command(name: str, command_main: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``command_main(args)``, with a user mistake (:data:`USER_ERRORS`) turned into one line on
    stderr and exit status 2, unless ``args.debug``."""
    try:
        return int(command_main(args) or 0)
    except USER_ERRORS as e:
        if getattr(args, "debug", False):
            raise
        print(f"decaylab {name}: error: {one_line(e)}", file=sys.stderr)
        return 2


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (an OSError as 'reason: path')."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        text = f"{error.strerror}: {error.filename}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = ArgumentParser(
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
        add_debug_flag(sub_parsers[argv[0]])
    args = parser.parse_args(argv)
    return run_command(args.command, module.main, args)


if __name__ == "__main__":
    raise SystemExit(main())
