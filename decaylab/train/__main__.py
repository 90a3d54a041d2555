"""``python -m decaylab.train``: the ``decaylab train`` command (also the torchrun entry point)."""

import sys

from decaylab.cli import ArgumentParser, add_debug_flag, run_command
from decaylab.commands.train import add_arguments, main

parser = ArgumentParser(prog="decaylab train")
add_arguments(parser)
add_debug_flag(parser)
sys.exit(run_command("train", main, parser.parse_args()))
