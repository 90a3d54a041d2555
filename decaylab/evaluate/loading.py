"""Find and load a trained model: a model directory, a checkpoint, or a run directory.

A *model directory* holds ``config.json`` and ``model.safetensors`` (``save_pretrained`` output or a
training checkpoint ``run_dir/checkpoints/step_…``). A *run directory* is resolved to its newest
checkpoint (``run_dir/checkpoints/latest``). Loading never executes code from the directory.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from decaylab.model import load_pretrained
from decaylab.train.checkpoint import TRAIN_CONFIG_FILE, latest_checkpoint, read_train_config


def resolve_model_dir(path: str | Path) -> Path:
    """The model directory ``path`` names: itself when it holds ``config.json``, else the run's newest
    intact checkpoint (the one ``path/checkpoints/latest`` names, see
    :func:`decaylab.train.checkpoint.latest_checkpoint`). Raises FileNotFoundError saying what was expected."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    checkpoint = latest_checkpoint(path)  # raises FileNotFoundError when `latest` names no intact checkpoint
    if checkpoint is not None:
        return checkpoint
    raise FileNotFoundError(
        f"{path} is neither a model directory (config.json + model.safetensors) nor a run directory "
        "(checkpoints/latest); pass a directory written by save_pretrained or by `decaylab train`"
    )


def load_model(path: str | Path, device: str | torch.device = "cpu") -> PreTrainedModel:
    """The causal LM in ``path`` (see :func:`resolve_model_dir`), in eval mode on ``device``."""
    model = load_pretrained(resolve_model_dir(path))
    return model.to(device).eval()


def training_seq_len(path: str | Path) -> int | None:
    """The ``seq_len`` the model was trained with, from the checkpoint's train_config.json (None if absent)."""
    model_dir = resolve_model_dir(path)
    return int(read_train_config(model_dir)["seq_len"]) if (model_dir / TRAIN_CONFIG_FILE).is_file() else None


def load_model_tokenizer(path: str | Path, tokenizer: str | Path | None = None) -> PreTrainedTokenizerFast:
    """The tokenizer of a model: ``tokenizer`` (a tokenizer.json, a prepared dataset directory or a
    Hugging Face name) if given, else ``tokenizer.json`` in the model directory, else the tokenizer of
    the dataset the checkpoint was trained on (``data.dir`` of its train_config.json)."""
    from decaylab.data.tokenizer import TOKENIZER_FILE, load_tokenizer

    if tokenizer is not None:
        return load_tokenizer(tokenizer)
    model_dir = resolve_model_dir(path)
    if (model_dir / TOKENIZER_FILE).is_file():
        return load_tokenizer(model_dir / TOKENIZER_FILE)
    if (model_dir / TRAIN_CONFIG_FILE).is_file():
        data_dir = read_train_config(model_dir).get("data", {}).get("dir")
        if data_dir and Path(data_dir).is_dir():
            return load_tokenizer(data_dir)
    raise FileNotFoundError(
        f"no tokenizer for {model_dir}: it has no tokenizer.json and its training data directory is not found; "
        "pass a tokenizer (a tokenizer.json or the prepared dataset directory)"
    )
