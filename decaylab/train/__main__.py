"""``python -m decaylab.train``: the ``decaylab train`` command (also the torchrun entry point)."""

import argparse
import sys

from decaylab.train.command import add_arguments, main

parser = argparse.ArgumentParser(prog="decaylab train")
add_arguments(parser)
sys.exit(main(parser.parse_args()))
