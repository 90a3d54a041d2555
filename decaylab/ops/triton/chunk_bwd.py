"""Chunkwise backward: sequential state passes, then parallel dv and dq/dk/dg kernels.

Per chunk i, with entering state S_i and the gradient dS_i of the state leaving it (float32,
[NT, H, K, V], from :func:`state.chunk_state_kernel` or, for S_i, kept by the forward),
do = ∂L/∂o, dA = scale · (do vᵀ) (causally masked) and k̃ = k ⊙ 2^(bl − b):

    dq = scale · (do S_iᵀ) ⊙ 2^b  +  Σ_j dA_ij k_j ⊙ 2^(b_i − b_j)
    dk = (v dS_iᵀ) ⊙ 2^(bl − b)   +  Σ_i dA_ij q_i ⊙ 2^(b_i − b_j)
    dv = scale · Aᵀ do  +  k̃ dS_i

dq, dk and dg by ``chunk_bwd_dqk_kernel``, one program per (K block, chunk, head); dv by
``chunk_bwd_dv_kernel``, one per (V block, chunk, head). The log decay enters only through
q ⊙ 2^G and k ⊙ 2^-G (G its running sum), so ∂L/∂g_t = Σ_{s ≥ t} (q_s ⊙ dq_s − k_s ⊙ dk_s),
summed over the rest of the sequence and closed by the final state's term. Shifting G by δ for
every token after chunk i scales the state leaving chunk i by e^δ, so the part of that sum
beyond chunk i is Σ_v S_{i+1} ⊙ dS_i, and dg needs no pass over the sequence:

    dg_t = Σ_{s ≥ t, s in chunk i} (q_s ⊙ dq_s − k_s ⊙ dk_s)  +  Σ_v S_{i+1} ⊙ dS_i   (summed over K for scalar decay)

with S_{i+1} = 2^bl ⊙ S_i + k̃ᵀ v formed in the kernel from terms it already has. h and dh take
4·K·V bytes each per chunk and head (1.07 GB each at B16·T4096·H16·K=V=128, 50 MB per layer for
the 160M model at batch 8 × 2048); h kept by the forward lives from the forward to the backward.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from decaylab.ops.triton.config import (
    BackwardConfig,
    backward_configs,
    dot_precision,
    launch_first_fitting,
    padded,
)
from decaylab.ops.triton.intra import intra_chunk, mma
from decaylab.ops.triton.state import (
    ChunkStates,
    chunk_bounds,
    chunk_layout,
    chunk_states,
    load_decay,
    load_tile,
)


@triton.jit
def chunk_bwd_dv_kernel(
    q, k, do, g, dh, dv, chunk_table, scale, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    SCALAR: tl.constexpr, IS_VARLEN: tl.constexpr, PREC: tl.constexpr,
):
    """Grid (cdiv(V, BV), NT, H): dv = (k ⊙ 2^(bl − b)) dS_i + scale · Aᵀ do of one chunk and
    V block. q, k [*, H, K]; do, dv [*, H, V]; g [*, H] or [*, H, K] float32 log decay, flat over
    tokens; dh [NT, H, K, V] float32. K is covered in blocks of BK (A and the state term are
    sums over K)."""
    i_v = tl.program_id(0)
    i_c = tl.program_id(1)
    i_h = tl.program_id(2)
    t0, eos = chunk_bounds(chunk_table, i_c, T, C, IS_VARLEN)
    t = t0 + tl.arange(0, C)
    mt = t < eos
    row = t * H + i_h
    rv = i_v * BV + tl.arange(0, BV)
    mv = rv < V
    dh_c = dh + (i_c.to(tl.int64) * H + i_h) * K * V

    A = tl.zeros([C, C], dtype=tl.float32)
    dv_c = tl.zeros([C, BV], dtype=tl.float32)
    for i_k in range(tl.cdiv(K, BK)):
        rk = i_k * BK + tl.arange(0, BK)
        mk = rk < K
        b, bl = load_decay(g, row, mt, rk, mk, K, C, SCALAR)
        q_c = load_tile(q, row, rk, mt, mk, K)
        k_c = load_tile(k, row, rk, mt, mk, K)
        A_k, _, _ = intra_chunk(q_c, k_c, b, bl, A, C, SCALAR, PREC, True, False, False)
        A += A_k
        dS = tl.load(dh_c + rk[:, None] * V + rv[None, :], mask=mk[:, None] & mv[None, :], other=0.0)
        if SCALAR:
            dv_c += mma(k_c, dS, PREC) * tl.exp2(bl - b)[:, None]
        else:
            dv_c += mma(k_c.to(tl.float32) * tl.exp2(bl[None, :] - b), dS, PREC)
    do_c = load_tile(do, row, rv, mt, mv, V)
    dv_c += scale * mma(tl.trans(A), do_c, PREC)
    tl.store(dv + row[:, None] * V + rv[None, :], dv_c.to(dv.dtype.element_ty), mask=mt[:, None] & mv[None, :])


@triton.jit
def chunk_bwd_dqk_kernel(
    q, k, v, g, do, h, dh, dq, dk, dg, chunk_table, scale, T, dg_stride,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    SCALAR: tl.constexpr, IS_VARLEN: tl.constexpr, PREC: tl.constexpr,
):
    """Grid (cdiv(K, BK), NT, H): dq, dk and dg of one chunk and K block; V is covered in blocks
    of BV (dA and the state terms are sums over V). g is the log decay (float32, flat over tokens);
    h, dh [NT, H, K, V] float32. dg (float32) is written whole for vector decay; for scalar decay
    each K block writes its part at dg[i_k, token, head]. q, k, g are loaded after the V loop, to
    keep them out of its live set."""
    i_k = tl.program_id(0)
    i_c = tl.program_id(1)
    i_h = tl.program_id(2)
    t0, eos = chunk_bounds(chunk_table, i_c, T, C, IS_VARLEN)
    rc = tl.arange(0, C)
    t = t0 + rc
    mt = t < eos
    row = t * H + i_h
    rk = i_k * BK + tl.arange(0, BK)
    mk = rk < K
    state = (i_c.to(tl.int64) * H + i_h) * K * V + rk[:, None] * V

    dA = tl.zeros([C, C], dtype=tl.float32)
    dq_c = tl.zeros([C, BK], dtype=tl.float32)
    dk_c = tl.zeros([C, BK], dtype=tl.float32)
    state_dot = tl.zeros([BK], dtype=tl.float32)  # Σ_v S_i ⊙ dS_i
    for i_v in range(tl.cdiv(V, BV)):
        rv = i_v * BV + tl.arange(0, BV)
        mv = rv < V
        v_c = load_tile(v, row, rv, mt, mv, V)
        do_c = load_tile(do, row, rv, mt, mv, V)
        S = tl.load(h + state + rv[None, :], mask=mk[:, None] & mv[None, :], other=0.0)
        dS = tl.load(dh + state + rv[None, :], mask=mk[:, None] & mv[None, :], other=0.0)
        dA += mma(do_c, tl.trans(v_c), PREC)
        dq_c += mma(do_c, tl.trans(S), PREC)
        dk_c += mma(v_c, tl.trans(dS), PREC)
        state_dot += tl.sum(S * dS, axis=1)

    b, bl = load_decay(g, row, mt, rk, mk, K, C, SCALAR)
    q_c = load_tile(q, row, rk, mt, mk, K)
    k_c = load_tile(k, row, rk, mt, mk, K)
    dA = tl.where(rc[:, None] >= rc[None, :], dA * scale, 0.0)
    # dq first, then dk: the two intra-chunk adjoints are never live together.
    _, dq_i, _ = intra_chunk(q_c, k_c, b, bl, dA, C, SCALAR, PREC, False, True, False)
    if SCALAR:
        dq_c = dq_i + dq_c * (scale * tl.exp2(b))[:, None]
    else:
        dq_c = dq_i + dq_c * (scale * tl.exp2(b))
    mtk = mt[:, None] & mk[None, :]
    tl.store(dq + row[:, None] * K + rk[None, :], dq_c.to(dq.dtype.element_ty), mask=mtk)
    local = q_c.to(tl.float32) * dq_c
    if SCALAR:
        dk_c = dk_c * tl.exp2(bl - b)[:, None]
    else:
        dk_c = dk_c * tl.exp2(bl[None, :] - b)
    # Σ_v S_{i+1} ⊙ dS_i, with S_{i+1} = 2^bl ⊙ S_i + (k ⊙ 2^(bl − b))ᵀ v: its second part is k ⊙ dk's state term.
    carry = tl.exp2(bl) * state_dot + tl.sum(k_c.to(tl.float32) * dk_c, axis=0)
    _, _, dk_i = intra_chunk(q_c, k_c, b, bl, dA, C, SCALAR, PREC, False, False, True)
    dk_c += dk_i
    tl.store(dk + row[:, None] * K + rk[None, :], dk_c.to(dk.dtype.element_ty), mask=mtk)
    local -= k_c.to(tl.float32) * dk_c
    # The in-chunk reverse cumsum as a product with the upper triangle of ones (exact in bf16).
    upper = tl.where(rc[:, None] <= rc[None, :], 1.0, 0.0).to(q.dtype.element_ty)
    if SCALAR:
        dg_c = tl.sum(mma(upper, local, PREC), axis=1) + tl.sum(carry, axis=0)
        tl.store(dg + i_k * dg_stride + row, dg_c, mask=mt)
    else:
        dg_c = mma(upper, local, PREC) + carry[None, :]
        tl.store(dg + row[:, None] * K + rk[None, :], dg_c, mask=mtk)


def chunk_backward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, do: torch.Tensor,
    scale: float, initial_state: torch.Tensor | None, d_final_state: torch.Tensor | None,
    want_d_initial_state: bool, cu_seqlens: torch.Tensor | None, config: BackwardConfig | None = None,
    states: ChunkStates | None = None,
):
    """Launch the backward kernels. Inputs contiguous; g float32; ``config`` overrides the rule
    of :func:`backward_configs`; ``states``, kept by the forward, replace the forward state pass
    when their chunk size is the configuration's.

    Returns (dq, dk, dv in the inputs' dtypes, dg float32 shaped like g, d_initial_state or None).
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    scalar = g.dim() == 3
    prec = dot_precision(q.dtype, backward=True)
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)

    def launch(cfg: BackwardConfig):
        C = cfg.chunk
        layout = chunk_layout(B, T, C, cu_seqlens)
        passes = {"cu_seqlens": cu_seqlens, "layout": layout, "cfg": cfg, "prec": prec}
        if states is not None and states.chunk == C:
            h = states.h
        else:
            h, _ = chunk_states(k, v, g, scale, initial_state, False, False, **passes)
        dh, dh0 = chunk_states(q, do, g, scale, d_final_state, want_d_initial_state, True, **passes)
        dv = torch.empty_like(v)
        BV = min(cfg.dv.v, padded(V))
        chunk_bwd_dv_kernel[(triton.cdiv(V, BV), layout[0], H)](
            q, k, do, g, dh, dv, layout[2], scale, T,
            H=H, K=K, V=V, C=C, BK=min(cfg.dv.k, padded(K)), BV=BV, SCALAR=scalar,
            IS_VARLEN=cu_seqlens is not None, PREC=prec, num_warps=cfg.dv.num_warps, num_stages=cfg.dv.num_stages,
        )
        BK = min(cfg.dqk.k, padded(K))
        NK = triton.cdiv(K, BK)
        dg = q.new_empty((NK, B, T, H) if scalar else (B, T, H, K), dtype=torch.float32)
        chunk_bwd_dqk_kernel[(NK, layout[0], H)](
            q, k, v, g, do, h, dh, dq, dk, dg, layout[2], scale, T, B * T * H,
            H=H, K=K, V=V, C=C, BK=BK, BV=min(cfg.dqk.v, padded(V)), SCALAR=scalar,
            IS_VARLEN=cu_seqlens is not None, PREC=prec, num_warps=cfg.dqk.num_warps, num_stages=cfg.dqk.num_stages,
        )
        return dv, dg.sum(0) if scalar else dg, dh0

    if config is not None:
        dv, dg, dh0 = launch(config)
    else:
        key = ("bwd", K, V, q.dtype, scalar, initial_state is not None, d_final_state is not None,
               want_d_initial_state, cu_seqlens is not None)
        dv, dg, dh0 = launch_first_fitting(backward_configs(K, V, scalar), launch, key)
    return dq, dk, dv, dg, dh0
