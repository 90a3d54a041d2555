"""Chunkwise forward kernel.

One program owns one (sequence, head) and a slice of state columns S[:, v-block] (float32,
[K, BV], kept in registers) and walks that sequence's chunks in order. For a chunk of C tokens
with in-chunk cumulative log2 decay b (see ``intra.py``) and entering state S:

    o     = scale · ( (q ⊙ 2^b) S  +  A v )                   [C, BV]
    S_new = 2^bl ⊙ S  +  (k ⊙ 2^(bl − b))ᵀ v                   [K, BV]

with A the causal intra-chunk scores. For vector decay the kernel writes q ⊙ 2^b = P ⊙ 2^u and
k ⊙ 2^(bl − b) = Q ⊙ 2^u with the factors A is made of (``intra.forward_factors``), so that with
S_u = 2^u ⊙ S (rows)

    o     = scale · ( P S_u  +  A v )
    S_new = 2^u ⊙ ( 2^(bl − 2u) ⊙ S_u  +  Qᵀ v )

where the tensor cores accumulate Qᵀ v into the state in place: fewer [C, K] and [K, BV] tiles
are live at once. In the fast path 2^u ≥ 2^(−SPAN_LIMIT/2) = 2^-96, so S_u stays a normal float32
for every state entry of magnitude ≥ 2^-30.

The in-chunk cumsum of the log decay is computed in the kernel. Sequences are independent
programs, so packed (varlen) sequences and a T that is not a multiple of C need only a row mask.

When a backward will follow, the kernel also stores S entering every chunk (float32,
[NT, H, K, V], 4·K·V/C bytes per token and head), which spares the backward its forward state
pass. The state update therefore runs in the backward's precision (``dot_precision(...,
backward=True)``), so the stored states agree with the ones the backward would compute to within
float32 rounding.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from decaylab.ops.triton.config import (
    ForwardConfig,
    dot_precision,
    forward_configs,
    launch_first_fitting,
    padded,
)
from decaylab.ops.triton.intra import forward_factors, intra_chunk, mma, mma_into
from decaylab.ops.triton.state import (
    ChunkStates,
    chunk_layout,
    first_chunk,
    load_decay,
    load_tile,
    sequence_bounds,
)


@triton.jit
def chunk_fwd_kernel(
    q, k, v, g, o, h0, ht, h, chunk_offsets, cu_seqlens, scale, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    SCALAR: tl.constexpr, HAS_H0: tl.constexpr, STORE_HT: tl.constexpr, STORE_H: tl.constexpr,
    IS_VARLEN: tl.constexpr, PREC: tl.constexpr, STATE_PREC: tl.constexpr,
):
    """Grid (cdiv(V, BV), N·H). q, k [*, H, K]; v, o [*, H, V]; g [*, H] or [*, H, K] float32
    (flat over tokens); h0, ht [N, H, K, V] and h [NT, H, K, V] float32. PREC is the precision of
    the output's products, STATE_PREC that of the state update."""
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    bos, eos = sequence_bounds(cu_seqlens, i_n, T, IS_VARLEN)

    rc = tl.arange(0, C)
    rk = tl.arange(0, BK)
    rv = i_v * BV + tl.arange(0, BV)
    mk = rk < K
    mv = rv < V
    tile = rk[:, None] * V + rv[None, :]
    state_off = i_nh.to(tl.int64) * K * V + tile
    state_mask = mk[:, None] & mv[None, :]
    if HAS_H0:
        S = tl.load(h0 + state_off, mask=state_mask, other=0.0)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)
    if STORE_H:
        first = first_chunk(chunk_offsets, i_n, T, C, IS_VARLEN)

    for ic in range(tl.cdiv(eos - bos, C)):
        if STORE_H:
            tl.store(h + ((first + ic) * H + i_h) * K * V + tile, S, mask=state_mask)
        t = bos + ic * C + rc
        mt = t < eos
        row = t * H + i_h
        q_c = load_tile(q, row, rk, mt, mk, K)
        k_c = load_tile(k, row, rk, mt, mk, K)
        v_c = load_tile(v, row, rv, mt, mv, V)
        b, bl = load_decay(g, row, mt, rk, mk, K, C, SCALAR)
        if SCALAR:
            A, _, _ = intra_chunk(q_c, k_c, b, bl, tl.zeros([C, C], dtype=tl.float32), C, True, PREC, True, False, False)
            o_c = scale * (mma(q_c, S, PREC) * tl.exp2(b)[:, None] + mma(A, v_c, PREC))
            k_in = k_c.to(tl.float32) * tl.exp2(bl - b)[:, None]
            S = S * tl.exp2(bl) + mma(tl.trans(k_in), v_c, STATE_PREC)
        else:
            A, P, Q, u = forward_factors(q_c, k_c, b, bl, C, PREC)
            S = S * tl.exp2(u)[:, None]  # S_u
            o_c = scale * mma_into(mma(A, v_c, PREC), P, S, PREC)
            S = mma_into(S * tl.exp2(bl - 2 * u)[:, None], tl.trans(Q), v_c, STATE_PREC) * tl.exp2(u)[:, None]
        tl.store(o + row[:, None] * V + rv[None, :], o_c.to(o.dtype.element_ty), mask=mt[:, None] & mv[None, :])

    if STORE_HT:
        tl.store(ht + state_off, S, mask=state_mask)


def chunk_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, scale: float,
    initial_state: torch.Tensor | None, output_final_state: bool,
    cu_seqlens: torch.Tensor | None, config: ForwardConfig | None = None, store_states: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, ChunkStates | None]:
    """Launch the forward kernel. Inputs contiguous; g float32 [B, T, H] or [B, T, H, K].
    ``config`` overrides the rule of :func:`forward_configs`; ``store_states`` keeps the state
    entering every chunk for the backward.

    Returns (o [B, T, H, V] in v's dtype, final state [N, H, K, V] float32 or None, the stored
    states or None).
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    scalar = g.dim() == 3
    o = torch.empty_like(v)
    ht = q.new_empty(N, H, K, V, dtype=torch.float32) if output_final_state else None

    def launch(cfg: ForwardConfig) -> ChunkStates | None:
        h = chunk_offsets = None
        if store_states:  # the global chunk numbering is needed only to address the stored states
            NT, chunk_offsets, _ = chunk_layout(B, T, cfg.chunk, cu_seqlens)
            h = q.new_empty(NT, H, K, V, dtype=torch.float32)
        chunk_fwd_kernel[(triton.cdiv(V, cfg.block), N * H)](
            q, k, v, g, o, initial_state, ht, h, chunk_offsets, cu_seqlens, scale, T,
            H=H, K=K, V=V, C=cfg.chunk, BK=padded(K), BV=cfg.block,
            SCALAR=scalar, HAS_H0=initial_state is not None, STORE_HT=output_final_state, STORE_H=store_states,
            IS_VARLEN=cu_seqlens is not None, PREC=dot_precision(q.dtype, backward=False),
            STATE_PREC=dot_precision(q.dtype, backward=True), num_warps=cfg.num_warps, num_stages=cfg.num_stages,
        )
        return ChunkStates(h, cfg.chunk) if store_states else None

    if config is not None:
        states = launch(config)
    else:
        key = ("fwd", K, V, q.dtype, scalar, initial_state is not None, output_final_state, store_states,
               cu_seqlens is not None)
        states = launch_first_fitting(forward_configs(K, V, scalar, store_states), launch, key)
    return o, ht, states
