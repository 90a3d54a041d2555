"""Chunk layout, tile loading and the sequential state pass of the backward.

The backward splits every sequence into chunks of C tokens and numbers the chunks of all
sequences consecutively (global chunk index i). Only the state recurrences are sequential; they
run in :func:`chunk_state_kernel`, which stores the state (or its gradient) at every chunk
boundary (float32, [NT, H, K, V]) so that all per-chunk gradient work can run in parallel over
(chunk, head, tile). The forward kernel can store the same states (:class:`ChunkStates`), which
then replace the forward pass here. float32 because the stored states feed every gradient: rounding them to
bf16 (2^-9 relative each) would spend most of the 2e-3 error budget of bf16 models.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from decaylab.ops.triton.config import BackwardConfig, padded
from decaylab.ops.triton.intra import cumulative_decay, mma


class ChunkStates(NamedTuple):
    """The state entering every chunk, h [NT, H, K, V] float32, for chunks of ``chunk`` tokens
    numbered as in :func:`chunk_layout`."""

    h: torch.Tensor
    chunk: int


@triton.jit
def sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN: tl.constexpr):
    """First and one-past-last flat token index of sequence i_n (int64)."""
    if IS_VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
    else:
        bos = i_n.to(tl.int64) * T
        eos = bos + T
    return bos, eos


@triton.jit
def first_chunk(chunk_offsets, i_n, T, C: tl.constexpr, IS_VARLEN: tl.constexpr):
    """Global index of sequence i_n's first chunk (int64)."""
    if IS_VARLEN:
        return tl.load(chunk_offsets + i_n).to(tl.int64)
    return i_n.to(tl.int64) * tl.cdiv(T, C)


@triton.jit
def chunk_bounds(chunk_table, i_c, T, C: tl.constexpr, IS_VARLEN: tl.constexpr):
    """First and one-past-last flat token index of global chunk i_c (int64; equal for padding)."""
    if IS_VARLEN:
        t0 = tl.load(chunk_table + 2 * i_c).to(tl.int64)
        eos = tl.load(chunk_table + 2 * i_c + 1).to(tl.int64)
    else:
        n_chunks = tl.cdiv(T, C)
        bos = (i_c // n_chunks).to(tl.int64) * T
        t0 = bos + (i_c % n_chunks) * C
        eos = bos + T
    return t0, eos


@triton.jit
def load_tile(x, row, cols, mt, mcols, D: tl.constexpr):
    """Tile x[row, cols] of a [tokens·H, D] tensor as [C, len(cols)], zero outside the masks."""
    return tl.load(x + row[:, None] * D + cols[None, :], mask=mt[:, None] & mcols[None, :], other=0.0)


@triton.jit
def load_decay(g, row, mt, rk, mk, K: tl.constexpr, C: tl.constexpr, SCALAR: tl.constexpr):
    """The chunk's in-chunk cumulative log2 decay b ([C] or [C, BK]) and its last row bl, from g
    (rows past the sequence's end read as 0, so b stays flat there and every b_i − b_j ≤ 0)."""
    if SCALAR:
        g_c = tl.load(g + row, mask=mt, other=0.0)
    else:
        g_c = load_tile(g, row, rk, mt, mk, K)
    return cumulative_decay(g_c, C, SCALAR)


@triton.jit
def chunk_state_kernel(
    a, c, g, h, x0, xt, chunk_offsets, cu_seqlens, scale, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    SCALAR: tl.constexpr, REVERSE: tl.constexpr, HAS_X0: tl.constexpr, STORE_XT: tl.constexpr,
    IS_VARLEN: tl.constexpr, PREC: tl.constexpr,
):
    """Grid (cdiv(K, BK), cdiv(V, BV), N·H); the program owns X[k-block, v-block] (float32).

    Forward (a = k, c = v), chunks in order, X the state:   h[i] = X;  X ← 2^bl ⊙ X + (k ⊙ 2^(bl−b))ᵀ v.
    Reverse (a = q, c = do), chunks backward, X = ∂L/∂S:    h[i] = X;  X ← 2^bl ⊙ X + scale·(q ⊙ 2^b)ᵀ do.
    So h[i] is the state entering chunk i (forward) or the gradient of the state leaving it
    (reverse). X starts from x0 (initial state / final-state gradient) and ends in xt.
    a [*, H, K]; c [*, H, V]; g [*, H] or [*, H, K] float32; h [NT, H, K, V]; x0, xt [N, H, K, V].
    """
    i_k = tl.program_id(0)
    i_v = tl.program_id(1)
    i_nh = tl.program_id(2)
    i_n = i_nh // H
    i_h = i_nh % H
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)
    NC = tl.cdiv(eos - bos, C)
    first = first_chunk(chunk_offsets, i_n, T, C, IS_VARLEN)

    rc = tl.arange(0, C)
    rk = i_k * BK + tl.arange(0, BK)
    rv = i_v * BV + tl.arange(0, BV)
    mk = rk < K
    mv = rv < V
    tile = rk[:, None] * V + rv[None, :]
    tile_mask = mk[:, None] & mv[None, :]
    if HAS_X0:
        X = tl.load(x0 + i_nh.to(tl.int64) * K * V + tile, mask=tile_mask, other=0.0)
    else:
        X = tl.zeros([BK, BV], dtype=tl.float32)

    for i in range(NC):
        ic = NC - 1 - i if REVERSE else i
        tl.store(h + ((first + ic) * H + i_h) * K * V + tile, X, mask=tile_mask)
        t0 = bos + ic * C
        t = t0 + rc
        mt = t < eos
        row = t * H + i_h
        bc, bl = load_decay(g, row, mt, rk, mk, K, C, SCALAR)
        a_c = load_tile(a, row, rk, mt, mk, K).to(tl.float32)
        c_c = load_tile(c, row, rv, mt, mv, V)
        if SCALAR:
            a_c *= tl.exp2(bc if REVERSE else bl - bc)[:, None]
            decay = tl.exp2(bl)
        else:
            a_c *= tl.exp2(bc if REVERSE else bl[None, :] - bc)
            decay = tl.exp2(bl)[:, None]
        if REVERSE:
            a_c *= scale
        X = X * decay + mma(tl.trans(a_c), c_c, PREC)

    if STORE_XT:
        tl.store(xt + i_nh.to(tl.int64) * K * V + tile, X, mask=tile_mask)


def num_chunks(B: int, T: int, C: int, num_sequences: int | None) -> int:
    """NT of the global chunk numbering: B·cdiv(T, C) without cu_seqlens; with ``num_sequences``
    = N packed sequences, the upper bound cdiv(B·T, C) + N (it depends on shapes only)."""
    if num_sequences is None:
        return B * triton.cdiv(T, C)
    return triton.cdiv(B * T, C) + num_sequences


def chunk_layout(B: int, T: int, C: int, cu_seqlens: torch.Tensor | None):
    """(NT, chunk_offsets, chunk_table) of the global chunk numbering.

    Without cu_seqlens: B·cdiv(T, C) chunks, addressed arithmetically (None, None). With it:
    chunk_offsets [N + 1] int32 (first global chunk of each sequence) and chunk_table [NT, 2]
    int32 (first token, one-past-last token of the chunk's sequence), computed on the device
    without a host sync; NT = cdiv(total, C) + N is an upper bound, padding rows are (0, 0).
    """
    if cu_seqlens is None:
        return num_chunks(B, T, C, None), None, None
    N = cu_seqlens.numel() - 1
    cu = cu_seqlens.long()
    n_chunks = (cu[1:] - cu[:-1] + C - 1) // C
    offsets = torch.nn.functional.pad(torch.cumsum(n_chunks, 0), (1, 0))
    NT = num_chunks(B, T, C, N)
    i = torch.arange(NT, device=cu.device)
    n = torch.searchsorted(offsets[1:], i, right=True)
    valid = n < N
    n = n.clamp(max=N - 1)
    t0 = torch.where(valid, cu[n] + (i - offsets[n]) * C, 0)
    eos = torch.where(valid, cu[n + 1], 0)
    return NT, offsets.int(), torch.stack([t0, eos], 1).int().contiguous()


def chunk_states(
    a: torch.Tensor, c: torch.Tensor, g: torch.Tensor, scale: float, x0: torch.Tensor | None,
    store_xt: bool, reverse: bool, cu_seqlens: torch.Tensor | None, layout, cfg: BackwardConfig, prec: str,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Launch :func:`chunk_state_kernel` with ``cfg``. Returns (h [NT, H, K, V]
    float32, xt or None)."""
    B, T, H, K = a.shape
    V = c.shape[-1]
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    NT, chunk_offsets, _ = layout
    h = a.new_empty(NT, H, K, V, dtype=torch.float32)
    xt = a.new_empty(N, H, K, V, dtype=torch.float32) if store_xt else None
    BK, BV = min(cfg.state.k, padded(K)), min(cfg.state.v, padded(V))
    chunk_state_kernel[(triton.cdiv(K, BK), triton.cdiv(V, BV), N * H)](
        a, c, g, h, x0, xt, chunk_offsets, cu_seqlens, scale, T,
        H=H, K=K, V=V, C=cfg.chunk, BK=BK, BV=BV, SCALAR=g.dim() == 3, REVERSE=reverse, HAS_X0=x0 is not None,
        STORE_XT=store_xt, IS_VARLEN=cu_seqlens is not None, PREC=prec,
        num_warps=cfg.state.num_warps, num_stages=cfg.state.num_stages,
    )
    return h, xt
