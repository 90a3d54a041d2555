"""Fused decode step: one token for a batch of recurrent states, updated in place.

    S ← exp(g) ⊙ S + k vᵀ          (state float32 [N, H, K, V]; g scalar or [K] per head)
    o = scale · Sᵀ q               ([N, H, V], in v's dtype)

Memory-bound: each program reads and writes its block of the state exactly once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from decaylab.ops.triton.config import decode_block, padded
from decaylab.ops.triton.intra import LOG2E


@triton.jit
def decode_kernel(
    q, k, v, g, state, o, scale,
    K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, SCALAR: tl.constexpr,
):
    """Grid (cdiv(V, BV), N·H). q, k [N·H, K]; v, o [N·H, V]; g [N·H] or [N·H, K]."""
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1).to(tl.int64)
    rk = tl.arange(0, BK)
    rv = i_v * BV + tl.arange(0, BV)
    mk = rk < K
    mv = rv < V
    ptrs = state + i_nh * K * V + rk[:, None] * V + rv[None, :]
    mask = mk[:, None] & mv[None, :]
    S = tl.load(ptrs, mask=mask, other=0.0)
    q_t = tl.load(q + i_nh * K + rk, mask=mk, other=0.0).to(tl.float32)
    k_t = tl.load(k + i_nh * K + rk, mask=mk, other=0.0).to(tl.float32)
    v_t = tl.load(v + i_nh * V + rv, mask=mv, other=0.0).to(tl.float32)
    if SCALAR:
        S = S * tl.exp2(tl.load(g + i_nh).to(tl.float32) * LOG2E)
    else:
        S = S * tl.exp2(tl.load(g + i_nh * K + rk, mask=mk, other=0.0).to(tl.float32) * LOG2E)[:, None]
    S += k_t[:, None] * v_t[None, :]
    tl.store(ptrs, S, mask=mask)
    o_t = tl.sum(S * q_t[:, None], axis=0) * scale
    tl.store(o + i_nh * V + rv, o_t.to(o.dtype.element_ty), mask=mv)


def triton_decode_step(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor,
    state: torch.Tensor, scale: float = 1.0,
) -> torch.Tensor:
    """One recurrent step. q, k [N, H, K]; v [N, H, V]; log_decay [N, H] or [N, H, K];
    state float32 [N, H, K, V], updated in place. Returns o [N, H, V] in v's dtype."""
    if state.dtype != torch.float32:
        raise ValueError(f"triton_decode_step: state must be float32, got {state.dtype}")
    N, H, K = q.shape
    V = v.shape[-1]
    block = decode_block(K, V)
    work = state if state.is_contiguous() else state.contiguous()
    o = v.new_empty(N, H, V)
    grid = (triton.cdiv(V, block), N * H)
    decode_kernel[grid](
        q.contiguous(), k.contiguous(), v.contiguous(), log_decay.contiguous(), work, o, float(scale),
        K=K, V=V, BK=padded(K), BV=block, SCALAR=log_decay.dim() == 2, num_warps=4,
    )
    if work is not state:
        state.copy_(work)
    return o
