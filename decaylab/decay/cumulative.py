"""Decays normalized by a running sum over positions: LightNet and LSSP.

Both are position dependent: they carry a running quantity ``state`` [B, channels] across
positions, which decoding passes from step to step and packed sequences reset.

    LightNet  z_t = log(exp(z_{t−1}) + exp(f_t)), z_0 = 0 (a zero initial term)
              g_t = z_{t−1} − z_t = −softplus(f_t − z_{t−1});   shared key 1 − λ_t = exp(f_t − z_t)
    LSSP      S_t = S_{t−1} + softplus(f_t), S_0 = 1
              g_t = log S_{t−1} − log S_t = −log1p(softplus(f_t) / S_{t−1});   1 − λ_t = softplus(f_t) / S_t

Each is computed as the stable closed form on the right, never as a difference of two running
totals. Masked (padding) positions contribute nothing and get g = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from decaylab.decay.base import Decay, register

_NEG = -1e4  # exp(_NEG) == 0 in float32: a padded position adds nothing to the running sum


@register
class LightNetDecay(Decay):
    """g_t = z_{t−1} − z_t with z_t = logcumsumexp([0, f_1, …, f_t])."""

    name = "lightnet"
    stateful = True

    def forward(self, f, state=None, mask=None):
        f = f.float()
        if mask is not None:
            f = f.masked_fill(~mask[..., None], _NEG)
        z0 = f.new_zeros(f.shape[0], 1, f.shape[2]) if state is None else state[:, None].float()
        z = torch.logcumsumexp(torch.cat([z0, f], dim=1), dim=1)
        g = -F.softplus(f - z[:, :-1])
        return g, z[:, -1]


@register
class LSSPDecay(Decay):
    """g_t = log S_{t−1} − log S_t with S_t = 1 + Σ_{s≤t} softplus(f_s)."""

    name = "lssp"
    stateful = True

    def forward(self, f, state=None, mask=None):
        increment = F.softplus(f.float())
        if mask is not None:
            increment = increment.masked_fill(~mask[..., None], 0.0)
        s0 = increment.new_ones(f.shape[0], 1, f.shape[2]) if state is None else state[:, None].float()
        totals = torch.cat([s0, increment], dim=1).cumsum(dim=1)
        g = -torch.log1p(increment / totals[:, :-1])
        return g, totals[:, -1]
