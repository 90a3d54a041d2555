"""Chunkwise backward kernels.

Per chunk, with entering state S, the gradient dS of the state leaving the chunk, do = ∂L/∂o,
dA = scale · (do vᵀ) (causally masked), q̃ = q ⊙ 2^b and k̃ = k ⊙ 2^(bl − b):

    dq = scale · (do Sᵀ) ⊙ 2^b  +  Σ_j dA_ij k_j ⊙ 2^(b_i − b_j)            needs S   (forward walk)
    dk = (v dSᵀ) ⊙ 2^(bl − b)   +  Σ_i dA_ij q_i ⊙ 2^(b_i − b_j)            needs dS  (reverse walk)
    dv = scale · Aᵀ do  +  k̃ dS
    dS_enter = 2^bl ⊙ dS  +  scale · q̃ᵀ do ;   d initial_state = dS_enter of the first chunk.

The log decay enters only through q ⊙ 2^G and k ⊙ 2^-G (G the running cumsum) and the final
state, so its gradient is a reverse cumulative sum over the sequence:

    dg_t = Σ_{s ≥ t} (q_s ⊙ dq_s − k_s ⊙ dk_s)  +  Σ_v (dS_T ⊙ S_T)         (summed over K for scalar decay)

Two kernels, neither storing per-chunk states: ``chunk_bwd_dq_kernel`` walks forward carrying S
and writes dq, q ⊙ dq and (when dg needs it) the final state; ``chunk_bwd_dkv_kernel`` walks
backward carrying dS and the running reverse sum, and writes dk, dv, dg and d initial_state.
Both split the state by rows (K); the pieces of dv from several row blocks are summed with atomics.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from decaylab.ops.triton.chunk_fwd import sequence_bounds
from decaylab.ops.triton.config import (
    ChunkConfig,
    backward_configs,
    dot_precision,
    launch_first_fitting,
    padded,
)
from decaylab.ops.triton.intra import cumulative_decay, intra_chunk, mma


@triton.jit
def load_chunk(q, k, v, g, do, row, mt, mtk, mtv, rk, rv, causal, scale,
               K: tl.constexpr, V: tl.constexpr, C: tl.constexpr, SCALAR: tl.constexpr, PREC: tl.constexpr):
    """What both kernels read of one chunk (rows ``row``; zero where masked by the token mask mt
    and its [C, BK] / [C, BV] extensions mtk, mtv): q, k [C, BK],
    v, do [C, BV], the decay's in-chunk cumulative sums b, bl (see ``cumulative_decay``) and
    dA = scale · (do vᵀ) causally masked [C, C]."""
    q_c = tl.load(q + row[:, None] * K + rk[None, :], mask=mtk, other=0.0)
    k_c = tl.load(k + row[:, None] * K + rk[None, :], mask=mtk, other=0.0)
    v_c = tl.load(v + row[:, None] * V + rv[None, :], mask=mtv, other=0.0)
    do_c = tl.load(do + row[:, None] * V + rv[None, :], mask=mtv, other=0.0)
    if SCALAR:
        g_c = tl.load(g + row, mask=mt, other=0.0)
    else:
        g_c = tl.load(g + row[:, None] * K + rk[None, :], mask=mtk, other=0.0)
    b, bl = cumulative_decay(g_c, C, SCALAR)
    dA = tl.where(causal, mma(do_c, tl.trans(v_c), PREC) * scale, 0.0)
    return q_c, k_c, v_c, do_c, b, bl, dA


@triton.jit
def chunk_bwd_dq_kernel(
    q, k, v, g, do, dq, dgp, h0, ht, cu_seqlens, scale, T, dgp_stride,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    SCALAR: tl.constexpr, HAS_H0: tl.constexpr, STORE_HT: tl.constexpr,
    IS_VARLEN: tl.constexpr, PREC: tl.constexpr,
):
    """Grid (cdiv(K, BK), N·H). Writes dq and dgp = q ⊙ dq (float32; for scalar decay summed
    over this program's K block, at dgp[i_k, token, head]); with STORE_HT also the final state
    it recomputed, so that dg's final-state term matches the backward's own arithmetic."""
    i_k = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)

    rc = tl.arange(0, C)
    rk = i_k * BK + tl.arange(0, BK)
    rv = tl.arange(0, BV)
    mk = rk < K
    mv = rv < V
    causal = rc[:, None] >= rc[None, :]
    state_off = i_nh.to(tl.int64) * K * V + rk[:, None] * V + rv[None, :]
    if HAS_H0:
        S = tl.load(h0 + state_off, mask=mk[:, None] & mv[None, :], other=0.0)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)

    for ic in range(tl.cdiv(eos - bos, C)):
        t = bos + ic * C + rc
        mt = t < eos
        row = t * H + i_h
        mtk = mt[:, None] & mk[None, :]
        mtv = mt[:, None] & mv[None, :]
        q_c, k_c, v_c, do_c, b, bl, dA = load_chunk(q, k, v, g, do, row, mt, mtk, mtv, rk, rv, causal,
                                                     scale, K, V, C, SCALAR, PREC)
        _, dq_c, _ = intra_chunk(q_c, k_c, b, bl, dA, C, SCALAR, PREC, False, True, False)
        if SCALAR:
            dq_c += mma(do_c, tl.trans(S), PREC) * (scale * tl.exp2(b))[:, None]
            k_in = k_c.to(tl.float32) * tl.exp2(bl - b)[:, None]
            decay = tl.exp2(bl)
        else:
            dq_c += mma(do_c, tl.trans(S), PREC) * (scale * tl.exp2(b))
            k_in = k_c.to(tl.float32) * tl.exp2(bl[None, :] - b)
            decay = tl.exp2(bl)[:, None]
        tl.store(dq + row[:, None] * K + rk[None, :], dq_c.to(dq.dtype.element_ty), mask=mtk)
        qdq = q_c.to(tl.float32) * dq_c
        if SCALAR:
            tl.store(dgp + i_k * dgp_stride + row, tl.sum(qdq, axis=1), mask=mt)
        else:
            tl.store(dgp + row[:, None] * K + rk[None, :], qdq, mask=mtk)
        S = S * decay + mma(tl.trans(k_in), v_c, PREC)

    if STORE_HT:
        tl.store(ht + state_off, S, mask=mk[:, None] & mv[None, :])


@triton.jit
def chunk_bwd_dkv_kernel(
    q, k, v, g, do, dk, dv, dgp, ht, dht, dh0, cu_seqlens, scale, T, dgp_stride,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    SCALAR: tl.constexpr, HAS_DHT: tl.constexpr, STORE_DH0: tl.constexpr,
    DV_ATOMIC: tl.constexpr, IS_VARLEN: tl.constexpr, PREC: tl.constexpr,
):
    """Grid (cdiv(K, BK), N·H), chunks in reverse. Reads dgp from the dq kernel and overwrites it
    with dg (for scalar decay: this K block's share, summed over blocks by the caller). dv is
    float32 and accumulated atomically when DV_ATOMIC (several K blocks)."""
    i_k = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)

    rc = tl.arange(0, C)
    rk = i_k * BK + tl.arange(0, BK)
    rv = tl.arange(0, BV)
    mk = rk < K
    mv = rv < V
    causal = rc[:, None] >= rc[None, :]
    state_off = i_nh.to(tl.int64) * K * V + rk[:, None] * V + rv[None, :]
    state_mask = mk[:, None] & mv[None, :]
    if HAS_DHT:
        dS = tl.load(dht + state_off, mask=state_mask, other=0.0)
        dS_ht = dS * tl.load(ht + state_off, mask=state_mask, other=0.0)
        if SCALAR:
            carry = tl.sum(tl.sum(dS_ht, axis=1), axis=0)
        else:
            carry = tl.sum(dS_ht, axis=1)
    else:
        dS = tl.zeros([BK, BV], dtype=tl.float32)
        if SCALAR:
            carry = tl.sum(tl.zeros([BK], dtype=tl.float32), axis=0)
        else:
            carry = tl.zeros([BK], dtype=tl.float32)

    NC = tl.cdiv(eos - bos, C)
    for i in range(NC):
        t = bos + (NC - 1 - i) * C + rc
        mt = t < eos
        row = t * H + i_h
        mtk = mt[:, None] & mk[None, :]
        mtv = mt[:, None] & mv[None, :]
        q_c, k_c, v_c, do_c, b, bl, dA = load_chunk(q, k, v, g, do, row, mt, mtk, mtv, rk, rv, causal,
                                                     scale, K, V, C, SCALAR, PREC)
        A, _, dk_c = intra_chunk(q_c, k_c, b, bl, dA, C, SCALAR, PREC, True, False, True)
        if SCALAR:
            k_decay = tl.exp2(bl - b)[:, None]
            q_in = q_c.to(tl.float32) * tl.exp2(b)[:, None]
            decay = tl.exp2(bl)
        else:
            k_decay = tl.exp2(bl[None, :] - b)
            q_in = q_c.to(tl.float32) * tl.exp2(b)
            decay = tl.exp2(bl)[:, None]
        dv_c = scale * mma(tl.trans(A), do_c, PREC) + mma(k_c.to(tl.float32) * k_decay, dS, PREC)
        dk_c += mma(v_c, tl.trans(dS), PREC) * k_decay
        dS = dS * decay + scale * mma(tl.trans(q_in), do_c, PREC)

        dv_ptr = dv + row[:, None] * V + rv[None, :]
        if DV_ATOMIC:
            tl.atomic_add(dv_ptr, dv_c, mask=mtv)
        else:
            tl.store(dv_ptr, dv_c.to(dv.dtype.element_ty), mask=mtv)
        tl.store(dk + row[:, None] * K + rk[None, :], dk_c.to(dk.dtype.element_ty), mask=mtk)

        kdk = k_c.to(tl.float32) * dk_c
        if SCALAR:
            dgp_ptr = dgp + i_k * dgp_stride + row
            local = tl.load(dgp_ptr, mask=mt, other=0.0) - tl.sum(kdk, axis=1)
            tl.store(dgp_ptr, tl.cumsum(local, axis=0, reverse=True) + carry, mask=mt)
        else:
            dgp_ptr = dgp + row[:, None] * K + rk[None, :]
            local = tl.load(dgp_ptr, mask=mtk, other=0.0) - kdk
            tl.store(dgp_ptr, tl.cumsum(local, axis=0, reverse=True) + carry[None, :], mask=mtk)
        carry += tl.sum(local, axis=0)

    if STORE_DH0:
        tl.store(dh0 + state_off, dS, mask=state_mask)


def chunk_backward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, do: torch.Tensor,
    scale: float, initial_state: torch.Tensor | None, d_final_state: torch.Tensor | None,
    want_d_initial_state: bool, cu_seqlens: torch.Tensor | None, config: ChunkConfig | None = None,
):
    """Launch both backward kernels. Inputs contiguous; g float32; ``config`` overrides the rule
    of :func:`backward_configs`. The final state that dg needs (with ``d_final_state``) is
    recomputed by the dq kernel rather than taken from the forward, whose 16-bit-model products
    are less precise: dg's terms cancel, so both must come from the same arithmetic.

    Returns (dq, dk, dv in the inputs' dtypes, dg float32 shaped like g, d_initial_state or None).
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    scalar = g.dim() == 3
    has_dht = d_final_state is not None
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)
    dh0 = q.new_empty(N, H, K, V, dtype=torch.float32) if want_d_initial_state else None
    ht = q.new_empty(N, H, K, V, dtype=torch.float32) if has_dht else None

    def launch(cfg: ChunkConfig):
        NK = triton.cdiv(K, cfg.block)
        dv = torch.zeros_like(v, dtype=torch.float32) if NK > 1 else torch.empty_like(v)
        dgp = q.new_empty((NK, B, T, H) if scalar else (B, T, H, K), dtype=torch.float32)
        common = {
            "H": H, "K": K, "V": V, "C": cfg.chunk, "BK": cfg.block, "BV": padded(V), "SCALAR": scalar,
            "IS_VARLEN": cu_seqlens is not None, "PREC": dot_precision(q.dtype, backward=True),
            "num_warps": cfg.num_warps, "num_stages": cfg.num_stages,
        }
        grid = (NK, N * H)
        chunk_bwd_dq_kernel[grid](
            q, k, v, g, do, dq, dgp, initial_state, ht, cu_seqlens, scale, T, B * T * H,
            HAS_H0=initial_state is not None, STORE_HT=has_dht, **common,
        )
        chunk_bwd_dkv_kernel[grid](
            q, k, v, g, do, dk, dv, dgp, ht, d_final_state, dh0, cu_seqlens, scale, T, B * T * H,
            HAS_DHT=has_dht, STORE_DH0=want_d_initial_state, DV_ATOMIC=NK > 1, **common,
        )
        return dv.to(v.dtype), dgp.sum(0) if scalar else dgp

    if config is not None:
        dv, dg = launch(config)
    else:
        key = ("bwd", K, V, q.dtype, scalar, initial_state is not None, has_dht, want_d_initial_state,
               cu_seqlens is not None)
        dv, dg = launch_first_fitting(backward_configs(K, V, scalar), launch, key)
    return dq, dk, dv, dg, dh0
