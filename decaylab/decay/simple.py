"""Simple Decay SD-p: a sigmoid gate with a per-channel offset that starts the decay at p.

    g_t = log σ(f_t + Δ),   Δ initialized to ln(p / (1 − p)) so that λ ≈ p at init.

Named ``sd-<p>`` (e.g. ``sd-0.99``); plain ``sd`` means p = 0.99.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from decaylab.decay.base import Decay, DecayContext, register

DEFAULT_P = 0.99


@register
class SimpleDecay(Decay):
    """g = log σ(f + Δ), Δ = logit(p) at init."""

    name = "sd"

    def __init__(self, ctx: DecayContext, p: float = DEFAULT_P):
        super().__init__(ctx)
        if not 0.0 < p < 1.0:
            raise ValueError(f"decay: Simple Decay needs p in (0, 1), got sd-{p}")
        self.p = p
        self.offset = nn.Parameter(torch.empty(ctx.channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.offset, math.log(self.p / (1.0 - self.p)))

    def log_decay(self, f: torch.Tensor) -> torch.Tensor:
        return F.logsigmoid(f + self.offset.float())
