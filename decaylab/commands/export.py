"""``decaylab export RUN OUT``: a run's (or a checkpoint's) model as a complete model folder.

A run directory holds checkpoints, not a model, so transformers cannot load it by its path; OUT gets
the newest checkpoint's weights and everything else of a model folder (:mod:`decaylab.model.folder`),
without the training state. OUT must not exist yet: it is written beside itself and renamed into place.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a run directory (its latest checkpoint), a checkpoint or a model folder")
    parser.add_argument("out", help="the model folder to create (must not exist)")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer.json, prepared dataset directory or HF name (default: the model's own, else "
                             "its training data's)")


def export_model(run: str | Path, out: str | Path, tokenizer: str | None = None) -> Path:
    """Write the model folder ``out`` for ``run`` (see the module docstring) and return it."""
    from transformers import AutoConfig

    from decaylab.evaluate.loading import load_model_tokenizer, resolve_model_dir
    from decaylab.model.folder import write_model_files
    from decaylab.train.checkpoint import MODEL_FILE

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; name a new directory for the exported model")
    source = resolve_model_dir(run)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(source / MODEL_FILE, tmp / MODEL_FILE)
    write_model_files(tmp, AutoConfig.from_pretrained(source), load_model_tokenizer(source, tokenizer))
    os.replace(tmp, out)
    return out


def main(args: argparse.Namespace) -> int:
    import decaylab.model  # noqa: F401  (registers the config with AutoConfig)

    try:
        print(export_model(args.run, args.out, args.tokenizer))
    except (FileExistsError, FileNotFoundError) as err:
        raise SystemExit(f"decaylab export: {err}") from None
    return 0
