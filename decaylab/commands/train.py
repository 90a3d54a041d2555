"""``decaylab train``: train a model from a config file plus ``key=value`` overrides.

Run it again with the same arguments to resume an interrupted run, under ``torchrun`` for
several processes (``parallel=ddp`` or ``parallel=fsdp2``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from decaylab.train.config import describe_fields, load_config
from decaylab.train.loop import TrainingDiverged, train

DESCRIPTION = """\
Train a language model. Fields come from --config (YAML or JSON), then key=value overrides
(nested keys with dots: model.size=small, model.overrides.decay=sd-0.99, data.dir=...).
Rerunning the same command resumes from the latest checkpoint in run_dir; a run with
run_dir/final.json is finished and is not redone. Several processes: torchrun
--nproc_per_node N -m decaylab.train ... parallel=ddp (or fsdp2)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` arguments (and a help text listing every config field) to ``parser``."""
    parser.description = DESCRIPTION
    parser.epilog = "config fields (name = default):\n" + describe_fields()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config field overrides")
    parser.add_argument("--config", metavar="FILE", help="a .yaml/.yml/.json config file (default: all defaults)")
    parser.add_argument("--run-dir", metavar="DIR", help="same as the override run_dir=DIR")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")


def main(args: argparse.Namespace) -> int:
    """Run ``decaylab train``; the exit status is 0 on success, 1 if training diverged (a bad config
    raises ConfigError, which the CLI reports with exit status 2)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    overrides = list(args.overrides) + ([f"run_dir={args.run_dir}"] if args.run_dir else [])
    try:
        cfg = load_config(args.config, overrides)
        if args.print_config:
            print(json.dumps(cfg.to_dict(), indent=2))
            return 0
        final = train(cfg)
    except TrainingDiverged as e:
        print(f"decaylab train: {e}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(final, indent=2))
    return 0
