"""TPE: the Toeplitz-style positional layer of LightNet, as a tiny decay linear attention.

Per head h (head width D = d/H), with learned constant q_h, k_h ∈ R^D and a learned scalar
decay λ_h = σ(w_h):

    S_t = λ_h S_{t−1} + k_h x_tᵀ,   y_t = S_tᵀ q_h = Σ_{s≤t} λ_h^{t−s} (q_h·k_h) x_s

i.e. a causal Toeplitz mixing along time, then RMSNorm and an output projection. It runs on the
same operator (and carries its own recurrent state while decoding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from decaylab.ops.cached import attend_with_state


class ToeplitzPositional(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, eps: float = 1e-6, backend: str = "auto"):
        super().__init__()
        self.num_heads, self.head_width = num_heads, hidden_size // num_heads
        self.q = nn.Parameter(torch.empty(num_heads, self.head_width))
        self.k = nn.Parameter(torch.empty(num_heads, self.head_width))
        self.decay_logit = nn.Parameter(torch.empty(num_heads))
        self.norm = nn.RMSNorm(hidden_size, eps=eps)
        self.out = nn.Linear(hidden_size, hidden_size, bias=False)
        self.backend = backend
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.q, std=self.head_width**-0.5)
        nn.init.normal_(self.k, std=self.head_width**-0.5)
        nn.init.normal_(self.decay_logit)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, state: torch.Tensor | None, use_cache: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [B, T, d], mask [B, T] bool (False = padding), state [B, H, D, D] → (y [B, T, d], state)."""
        B, T, _ = x.shape
        v = x.view(B, T, self.num_heads, self.head_width)
        q = self.q.to(x.dtype).expand(B, T, -1, -1)
        k = self.k.to(x.dtype).expand(B, T, -1, -1)
        g = F.logsigmoid(self.decay_logit.float()).expand(B, T, -1)
        if mask is not None:
            k = k * mask[:, :, None, None]
            g = g * mask[..., None]
        y, state = attend_with_state(q, k, v, g, state, use_cache, backend=self.backend)
        return self.out(self.norm(y.reshape(B, T, -1))), state
