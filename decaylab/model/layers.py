"""The testbed block: pre-RMSNorm → decay linear attention → residual; pre-RMSNorm → SwiGLU → residual."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from decaylab.decay import DecayContext
from decaylab.model.config import DecayLinearConfig
from decaylab.ops.cached import attend_with_state
from decaylab.positional import ToeplitzPositional, apply_rotary, lrpe_cosine, rotary_angles, tie_rotated_pairs


class LowRank(nn.Sequential):
    """x W₁ W₂ with W₁: d → e, W₂: e → out (no bias)."""

    def __init__(self, d_in: int, rank: int, d_out: int):
        super().__init__(nn.Linear(d_in, rank, bias=False), nn.Linear(rank, d_out, bias=False))


class DecayLinearAttention(nn.Module):
    """Decay linear attention with a gated RMSNorm on its output.

        q = SiLU(x W_q), k = SiLU(x W_k) (or derived from the decay when shared), v = x W_v
        g = decay(x W_f)                      [B, T, H] or [B, T, H, K]
        o = op(q, k, v, g)                    S_t = exp(g_t) ⊙ S_{t−1} + k_t v_tᵀ, o_t = S_tᵀ q_t
        y = (RMSNorm(o) ⊙ σ(x W_g₁ W_g₂)) W_o
    """

    def __init__(self, config: DecayLinearConfig, layer_idx: int):
        super().__init__()
        spec = config.decay_spec
        self.spec, self.backend = spec, config.backend
        self.H, self.K = config.num_heads, config.head_dim
        self.rope_theta = config.rope_theta
        d, HK = config.hidden_size, config.num_heads * config.head_dim
        channels = config.num_heads * config.decay_channels_per_head
        ctx = DecayContext(channels, config.num_heads, layer_idx, config.num_hidden_layers)
        self.decay = spec.build(ctx)
        self.tpe = None
        if spec.positional == "tpe":
            self.tpe = ToeplitzPositional(d, config.num_heads, config.rms_norm_eps, config.backend)
        self.q_proj = nn.Linear(d, HK, bias=False)
        self.k_proj = nn.Linear(d, HK, bias=False)
        self.v_proj = nn.Linear(d, HK, bias=False)
        if spec.share_decay_key or not self.decay.uses_projection:
            self.f_proj = None
        elif spec.vector:
            self.f_proj = LowRank(d, config.decay_rank, channels)
        else:
            self.f_proj = nn.Linear(d, channels, bias=False)
        self.gate = LowRank(d, config.gate_rank, HK)
        self.out_norm = nn.RMSNorm(HK, eps=config.rms_norm_eps)
        self.o_proj = nn.Linear(HK, d, bias=False)

    def _log_decay(self, f, mask, cache, lower_bound, cu_seqlens, batch_shape):
        """g [B, T, channels] (float32); position-dependent decays restart at packed boundaries."""
        inputs = self.decay.inputs(lower_bound, batch_shape)
        if not self.decay.stateful:
            return self.decay(f, mask=mask, **inputs)[0]
        if cu_seqlens is not None:
            bounds = cu_seqlens.tolist()
            parts = [self.decay(f[:, a:b], mask=None, **inputs)[0] for a, b in zip(bounds[:-1], bounds[1:])]
            return torch.cat(parts, dim=1)
        g, state = self.decay(f, state=None if cache is None else cache.get("decay"), mask=mask, **inputs)
        if cache is not None:
            cache["decay"] = state
        return g

    def decay_and_key(self, x, mask=None, cache=None, lower_bound=None, cu_seqlens=None):
        """Log decay g (float32; [B, T, H] scalar, [B, T, H, K'] vector, before any positional
        expansion) and the key k [B, T, H, K] (SiLU(x W_k), or derived from the decay when shared)."""
        B, T, _ = x.shape
        H, K = self.H, self.K
        if self.spec.share_decay_key:
            f = self.k_proj(x)
            g = self._log_decay(f, mask, cache, lower_bound, cu_seqlens, (B, T))
            k = self.decay.shared_key(f, g).to(x.dtype).view(B, T, H, K)
        else:
            k = F.silu(self.k_proj(x)).view(B, T, H, K)
            f = None if self.f_proj is None else self.f_proj(x)
            g = self._log_decay(f, mask, cache, lower_bound, cu_seqlens, (B, T))
        return (g.view(B, T, H, -1) if self.spec.vector else g.view(B, T, H)), k

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor | None = None,
        cache: dict | None = None,
        lower_bound: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, T, d]; positions [B, T]; mask [B, T] bool (False = padding); cache: this layer's dict."""
        B, T, _ = x.shape
        H, K = self.H, self.K
        if self.tpe is not None:
            y, tpe_state = self.tpe(x, mask, None if cache is None else cache.get("tpe"), cache is not None)
            x = x + y
            if cache is not None:
                cache["tpe"] = tpe_state

        q = F.silu(self.q_proj(x)).view(B, T, H, K)
        v = self.v_proj(x).view(B, T, H, K)
        g, k = self.decay_and_key(x, mask, cache, lower_bound, cu_seqlens)

        if self.spec.positional == "rope":
            cos, sin = rotary_angles(positions, K, self.rope_theta)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        elif self.spec.positional == "lrpe-cos":
            q, k = lrpe_cosine(q, positions), lrpe_cosine(k, positions)
        if self.spec.vector and self.spec.positional in ("rope", "lrpe-cos"):
            g = tie_rotated_pairs(g)  # each decay serves both channels that rotate (or are cos/sin) together
        if mask is not None:
            k = k * mask[:, :, None, None]  # padding never writes to the state (its decay is 0 → λ = 1)

        state = None if cache is None else cache.get("state")
        o, state = attend_with_state(q, k, v, g, state, cache is not None, cu_seqlens, self.backend)
        if cache is not None:
            cache["state"] = state
        o = self.out_norm(o.reshape(B, T, H * K)) * torch.sigmoid(self.gate(x))
        return self.o_proj(o)


class SwiGLU(nn.Module):
    """(SiLU(x W_gate) ⊙ x W_up) W_down."""

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(d, hidden, bias=False)
        self.up_proj = nn.Linear(d, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecayLinearBlock(nn.Module):
    """x + Attn(RMSNorm(x)), then + SwiGLU(RMSNorm(·))."""

    def __init__(self, config: DecayLinearConfig, layer_idx: int):
        super().__init__()
        self.attn_norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.attn = DecayLinearAttention(config, layer_idx)
        self.mlp_norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = SwiGLU(config.hidden_size, config.intermediate_size)

    def forward(self, x, positions, mask=None, cache=None, lower_bound=None, cu_seqlens=None):
        x = x + self.attn(self.attn_norm(x), positions, mask, cache, lower_bound, cu_seqlens)
        return x + self.mlp(self.mlp_norm(x))
