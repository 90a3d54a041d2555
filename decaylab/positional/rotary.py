"""Rotary position embedding (true RoPE, half-split pairs (i, i + K/2)).

    x'_i       = x_i cos(θ_i t) − x_{i+K/2} sin(θ_i t)
    x'_{i+K/2} = x_i sin(θ_i t) + x_{i+K/2} cos(θ_i t),     θ_i = base^{−2i/K}

so q'_t · k'_s depends on t − s only. A rotation commutes with a decay only if both channels of
a pair decay alike: with vector decay the model computes K/2 decays per head and uses each for
both channels of its pair (:func:`tie_rotated_pairs`).
"""

from __future__ import annotations

import torch


def rotary_angles(positions: torch.Tensor, dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [B, T, 1, dim/2] (float32) for integer positions [B, T]."""
    inv_freq = base ** (-torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim)
    angles = positions.float()[..., None] * inv_freq
    return angles.cos()[:, :, None], angles.sin()[:, :, None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, T, H, K] by the angles of :func:`rotary_angles`; keeps x's dtype."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


def tie_rotated_pairs(log_decay: torch.Tensor) -> torch.Tensor:
    """[..., n] decays → [..., 2n]: channels i and i + n share a decay. Used for RoPE's rotated pairs
    (n = K/2) and for the cosine LRPE, whose channels i and i + K are the cos and sin copies of channel i."""
    return torch.cat([log_decay, log_decay], dim=-1)
