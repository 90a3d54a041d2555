"""Data-independent decays of TransNormerLLM: one log decay per head and layer.

    tnl    g_{l,h} = −(1/n_h)(1 − l/(L−1) + ε),  n_h = 2 · 128^{h/(H−1)}  (geometric from 2 to 256)
    tnl-l  the same values as a learned parameter θ with g = −exp(θ), initialized to TNL's
           values (the reference code starts it at decay 1 by accident).

Scalar only; no key form.
"""

from __future__ import annotations

import torch
from torch import nn

from decaylab.decay.base import Decay, DecayContext, register

EPS = 1e-5


def tnl_log_decay(num_heads: int, layer_idx: int, num_layers: int) -> torch.Tensor:
    """TNL's fixed log decay per head [H] for one layer (float64)."""
    h = torch.arange(num_heads, dtype=torch.float64)
    n = 2.0 * 128.0 ** (h / max(num_heads - 1, 1))
    depth = 1.0 - layer_idx / max(num_layers - 1, 1) + EPS
    return -depth / n


@register
class TNLDecay(Decay):
    """Fixed g_{l,h} = −(1/n_h)(1 − l/(L−1) + ε)."""

    name = "tnl"
    uses_projection = False
    has_key_form = False
    supports_vector = False
    needs_batch_shape = True  # no f_t to take [B, T] from

    def __init__(self, ctx: DecayContext):
        super().__init__(ctx)
        self.register_buffer("value", tnl_log_decay(ctx.num_heads, ctx.layer_idx, ctx.num_layers).float())

    def log_decay(self, f: torch.Tensor | None, batch_shape: tuple[int, ...] = ()) -> torch.Tensor:
        return self.value.float().expand(*batch_shape, -1)


@register
class TNLLearnedDecay(TNLDecay):
    """Learned g_{l,h} = −exp(θ_{l,h}), θ initialized to log(−g_TNL)."""

    name = "tnl-l"

    def __init__(self, ctx: DecayContext):
        super().__init__(ctx)
        self.theta = nn.Parameter(torch.empty(ctx.num_heads))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.theta.copy_((-self.value.double()).log())

    def log_decay(self, f: torch.Tensor | None, batch_shape: tuple[int, ...] = ()) -> torch.Tensor:
        return -self.theta.float().exp().expand(*batch_shape, -1)
