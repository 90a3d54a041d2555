"""HGRN2 decay with a learned, depth-monotone lower bound.

    g_t = log(γ_l + (1 − γ_l) σ(f_t)),   γ_l = Σ_{i<l} softmax_over_layers(w)_i

w ∈ R^{L × channels} belongs to the model (:class:`LayerLowerBounds`) so that the bound rises
with depth; w = 0 at init gives γ_l = l / L, and γ_0 = 0 exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from decaylab.decay.base import Decay, register


class LayerLowerBounds(nn.Module):
    """γ [L, channels]: cumulative softmax over layers, shifted so that γ_0 = 0."""

    def __init__(self, num_layers: int, channels: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_layers, channels))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.logits)

    def forward(self) -> torch.Tensor:
        p = self.logits.float().softmax(dim=0)
        return torch.cat([torch.zeros_like(p[:1]), p[:-1].cumsum(dim=0)])


@register
class HGRN2Decay(Decay):
    """g = log(γ_l + (1 − γ_l) σ(f)), γ_l from the model's :class:`LayerLowerBounds`."""

    name = "hgrn2"
    needs_lower_bound = True

    def log_decay(self, f: torch.Tensor, lower_bound: torch.Tensor | None = None) -> torch.Tensor:
        if lower_bound is None:
            raise ValueError("hgrn2 decay needs the model's per-layer lower bound (lower_bound=...)")
        if self.ctx.layer_idx == 0:
            return F.logsigmoid(f)  # γ_0 = 0 exactly; avoids log(0) in the graph
        gamma = lower_bound[self.ctx.layer_idx]
        return torch.logaddexp(gamma.log(), torch.log1p(-gamma) + F.logsigmoid(f))
