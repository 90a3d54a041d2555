"""The cosine "LRPE" of the reference code (not RoPE): it doubles the key dimension.

    x → [x ⊙ cos(θ t), x ⊙ sin(θ t)],   θ_i = base^{−i/K}

so q'_t · k'_s = Σ_i q_i k_i cos(θ_i (t − s)). A vector decay is repeated for both halves
(:func:`~decaylab.positional.rotary.tie_rotated_pairs`).
"""

from __future__ import annotations

import torch


def lrpe_cosine(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """x [B, T, H, K], positions [B, T] → [B, T, H, 2K] in x's dtype."""
    K = x.shape[-1]
    theta = base ** (-torch.arange(K, device=x.device, dtype=torch.float32) / K)
    angles = (positions.float()[..., None] * theta)[:, :, None]  # [B, T, 1, K]
    xf = x.float()
    return torch.cat([xf * angles.cos(), xf * angles.sin()], dim=-1).to(x.dtype)
