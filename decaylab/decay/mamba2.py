"""Mamba2 decay and its three ablations.

    g_t = −exp(a) ⊙ softplus(f_t + b)      (Mamba2)
    g_t = −softplus(f_t + b)               (w/o A)
    g_t = −exp(a) ⊙ softplus(f_t)          (w/o Δ)
    g_t = −softplus(f_t)                   (w/o A & Δ)

a = log A with A ~ U[1, 16]; b = softplus⁻¹(Δ₀) with Δ₀ log-uniform in [1e-3, 1e-1], floored
at 1e-4. With a shared key, the key is the step size Δ_t = softplus(f_t (+ b)) itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from decaylab.decay.base import Decay, DecayContext, register

DT_MIN, DT_MAX, DT_FLOOR = 1e-3, 1e-1, 1e-4


class _Mamba2Family(Decay):
    """g = −exp(a) ⊙ softplus(f + b), with a and b each switched on or off by the member's flags."""

    use_a: bool
    use_delta_bias: bool

    def __init__(self, ctx: DecayContext):
        super().__init__(ctx)
        self.a_log = nn.Parameter(torch.empty(ctx.channels)) if self.use_a else None
        self.dt_bias = nn.Parameter(torch.empty(ctx.channels)) if self.use_delta_bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.a_log is not None:
                self.a_log.copy_(torch.empty_like(self.a_log).uniform_(1, 16).log())
            if self.dt_bias is not None:
                log_dt = torch.empty_like(self.dt_bias).uniform_(math.log(DT_MIN), math.log(DT_MAX))
                dt = log_dt.exp().clamp_min(DT_FLOOR)
                self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)

    def step_size(self, f: torch.Tensor) -> torch.Tensor:
        """Δ_t = softplus(f_t + b) (or softplus(f_t) without b)."""
        return F.softplus(f if self.dt_bias is None else f + self.dt_bias.float())

    def log_decay(self, f: torch.Tensor) -> torch.Tensor:
        dt = self.step_size(f)
        return -dt if self.a_log is None else -self.a_log.float().exp() * dt

    def shared_key(self, f: torch.Tensor, log_decay: torch.Tensor) -> torch.Tensor:
        return self.step_size(f.float())


def _variant(class_name: str, name: str, use_a: bool, use_delta_bias: bool, formula: str) -> type[Decay]:
    """Register the member ``name`` of the family (with or without A, with or without the Δ bias)."""
    attributes = {"name": name, "use_a": use_a, "use_delta_bias": use_delta_bias, "__doc__": formula}
    return register(type(class_name, (_Mamba2Family,), attributes))


Mamba2Decay = _variant("Mamba2Decay", "mamba2", True, True, "Mamba2: g = −exp(a) ⊙ softplus(f + b).")
Mamba2NoADecay = _variant("Mamba2NoADecay", "mamba2-no-a", False, True, "Mamba2 without A: g = −softplus(f + b).")
Mamba2NoDeltaDecay = _variant("Mamba2NoDeltaDecay", "mamba2-no-delta", True, False,
                              "Mamba2 without Δ bias: g = −exp(a) ⊙ softplus(f).")
Mamba2NoANoDeltaDecay = _variant("Mamba2NoANoDeltaDecay", "mamba2-no-a-no-delta", False, False,
                                 "Mamba2 without A and Δ bias: g = −softplus(f).")
