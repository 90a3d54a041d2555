"""Gated Linear Attention decays: a sigmoid gate with temperature τ = 16.

    gla      g_t = log σ(f_t / τ)      (the paper's reference code)
    gla-pow  g_t = log σ(f_t) / τ      (the original GLA paper: λ = σ(f)^(1/τ))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from decaylab.decay.base import Decay, register

TEMPERATURE = 16.0


@register
class GLADecay(Decay):
    """g = log σ(f / 16)."""

    name = "gla"

    def log_decay(self, f: torch.Tensor) -> torch.Tensor:
        return F.logsigmoid(f / TEMPERATURE)


@register
class GLAPowerDecay(Decay):
    """g = log σ(f) / 16, i.e. λ = σ(f)^(1/16)."""

    name = "gla-pow"

    def log_decay(self, f: torch.Tensor) -> torch.Tensor:
        return F.logsigmoid(f) / TEMPERATURE
