"""Where and in which precision a model runs: the one device choice and the one autocast rule.

    device = pick_device("auto")              # cuda when available, else cpu
    with autocast(device, "auto"):            # bf16 on CUDA, plain fp32 elsewhere
        loss = model(...).loss
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when a GPU is available, else the CPU; any other value as given."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s (first) parameters."""
    return next(model.parameters()).device


def autocast(device: torch.device | str, precision: str = "auto") -> contextlib.AbstractContextManager:
    """bf16 autocast for ``precision="bf16"`` and for ``"auto"`` on CUDA; otherwise plain fp32
    (``"fp32"``, or ``"auto"`` elsewhere). Losses are computed in float32 either way."""
    device = torch.device(device)
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
