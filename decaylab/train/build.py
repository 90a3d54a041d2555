"""What a run trains: the model and the data named by ``TrainConfig.model`` and ``TrainConfig.data``,
and how the model is compiled."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from decaylab.train.config import ConfigError


def open_datasets(spec: dict, progress: bool) -> tuple[Any, Any]:
    """The (train, val) splits of the dataset ``spec`` names.

    With ``spec["source"]`` set, the dataset is first prepared into ``spec["dir"]`` (idempotent,
    and safe to call from every process at once); otherwise ``spec["dir"]`` must hold one.
    Corrupt or mismatched data raises here, before any training."""
    from decaylab.data import TokenDataset, prepare_dataset

    path = Path(spec["dir"])
    if spec["source"] is not None:
        path = prepare_dataset(spec["source"], path, vocab_size=spec["vocab_size"], seed=spec["seed"], progress=progress)
    return TokenDataset.open(path, "train"), TokenDataset.open(path, "val")


def make_model(spec: dict, vocab_size: int) -> nn.Module:
    """The causal LM of ``spec`` (size, arch, overrides) with the dataset's vocabulary size."""
    from decaylab.model import build_model, make_config

    overrides = dict(spec["overrides"])
    if overrides.setdefault("vocab_size", vocab_size) != vocab_size:
        raise ConfigError(
            f"model.overrides.vocab_size={overrides['vocab_size']} does not match the dataset's vocab_size={vocab_size}"
        )
    return build_model(make_config(spec["size"], spec["arch"], **overrides))


def seed_everything(seed: int) -> None:
    """Seed every generator a run may draw from (the model init draws from torch's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def initial_model(spec: dict, vocab_size: int, seed: int) -> nn.Module:
    """The model of ``spec`` as a run of ``seed`` starts training it (its step-0 weights): every
    generator seeded with ``seed``, then :func:`make_model`."""
    seed_everything(seed)
    return make_model(spec, vocab_size)


def compile_model(model: nn.Module, setting: str, mode: str, device: torch.device) -> bool:
    """``torch.compile`` ``model`` in place (its state-dict keys stay the same) when ``setting`` is
    "true", or "auto" on CUDA; return whether it was compiled. The decay operator is a custom
    operator (:mod:`decaylab.ops.triton.function`), so the whole model traces as one graph.
    Shapes are static (a run has one training and one validation shape): PyTorch's symbolic
    strides for padded chunk tensors differ from the real ones in the backward."""
    if setting == "false" or (setting == "auto" and device.type != "cuda"):
        return False
    model.compile(mode=mode, dynamic=False)
    return True
