"""Chunkwise-parallel form in pure PyTorch (CPU and GPU, differentiable by autograd).

Split time into chunks of C tokens. Inside chunk n, with g the log decay of its tokens,

    o_i = scale · ( Σ_{j ≤ i, j in n} (q_i ⊙ exp(Σ_{j<m≤i} g_m))ᵀ k_j v_j      (intra-chunk)
                    + (q_i ⊙ exp(Σ_{m≤i} g_m))ᵀ S_{n-1} )                      (inter-chunk)
    S_n = exp(Σ_{m in n} g_m) ⊙ S_{n-1} + Σ_j (k_j ⊙ exp(Σ_{m>j, m in n} g_m)) v_jᵀ

Numerics: every exponent is a sum of log decays over a segment, so it is ≤ 0 and exp never
overflows; segment sums are computed directly (masked cumulative sums), never as a difference
of two cumulative sums, so no precision is lost to cancellation when decays are very strong.
All arithmetic is float32 (float64 for float64 inputs) whatever the input dtype.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from decaylab.ops.varlen import per_sequence

CHUNK = 64
SUB_CHUNK = 8  # vector decay: exact pairwise decays only inside sub-chunks of this size


def _segment_sums(g: torch.Tensor, vector: bool) -> torch.Tensor:
    """seg[..., i, j, (k)] = Σ_{j<m≤i} g_m for j ≤ i, −inf above the diagonal.

    g: [..., C] (scalar) or [..., C, K] (vector, returned as [..., C, C, K]).
    """
    if not vector:
        return _segment_sums(g[..., None], vector=True)[..., 0]
    C = g.shape[-2]
    strictly_below = torch.ones(C, C, dtype=torch.bool, device=g.device).tril(-1)[:, :, None]
    rows = g[..., :, None, :].expand(*g.shape[:-2], C, C, g.shape[-1])  # rows[m, j] = g_m
    seg = rows.masked_fill(~strictly_below, 0).cumsum(dim=-3)  # seg[i, j] = Σ_{j<m≤i} g_m
    on_or_below = torch.ones(C, C, dtype=torch.bool, device=g.device).tril()[:, :, None]
    return seg.masked_fill(~on_or_below, float("-inf"))


def _vector_scores(q: torch.Tensor, k: torch.Tensor, g: torch.Tensor, sub: int) -> torch.Tensor:
    """A[i, j] = Σ_k q_ik k_jk exp(Σ_{j<m≤i} g_mk) for j ≤ i, else 0. q, k, g: [..., C, K] → [..., C, C].

    The chunk is split into P sub-chunks of ``sub`` tokens. Inside a sub-chunk the decay tensor
    [sub, sub, K] is formed exactly. For i in sub-chunk p and j in an earlier sub-chunk r the
    exponent splits into three direct sums, each ≤ 0: (start of p … i) on the query side,
    (j … end of r) + (sub-chunks strictly between r and p) on the key side — so that part is a
    matrix product.
    """
    *lead, C, K = q.shape
    P = C // sub
    qs, ks, gs = (x.reshape(*lead, P, sub, K) for x in (q, k, g))
    within = gs.cumsum(dim=-2)  # Σ_{start of p ≤ m ≤ i} g_m
    to_end = _suffix_sums(gs, dim=-2)  # Σ_{j < m ≤ end of r} g_m
    between = _segment_sums(within[..., -1, :], vector=True)  # [..., P, P, K]: Σ_{r<s≤p} totals
    between = torch.cat([torch.full_like(between[..., :1, :, :], float("-inf")), between[..., :-1, :, :]], dim=-3)
    key_side = (ks[..., None, :, :, :] * (to_end[..., None, :, :, :] + between[..., :, :, None, :]).exp())
    cross = (qs * within.exp()) @ key_side.reshape(*lead, P, C, K).transpose(-1, -2)  # [..., P, sub, C]
    pairwise = _segment_sums(gs, vector=True).exp()  # [..., P, sub, sub, K]
    inner = torch.einsum("...pik,...pijk->...pij", qs, pairwise * ks[..., None, :, :])  # [..., P, sub, sub]
    diagonal = torch.eye(P, dtype=q.dtype, device=q.device)[:, None, :, None]  # block p of row-block p
    scores = cross.reshape(*lead, P, sub, P, sub) + inner[..., :, :, None, :] * diagonal
    return scores.reshape(*lead, C, C)


def _suffix_sums(g: torch.Tensor, dim: int) -> torch.Tensor:
    """suffix_j = Σ_{m>j} g_m along ``dim`` (the last element is 0), summed directly."""
    shifted = torch.cat([g.narrow(dim, 1, g.shape[dim] - 1), torch.zeros_like(g.narrow(dim, 0, 1))], dim)
    return shifted.flip(dim).cumsum(dim).flip(dim)


def _chunk_dense(q, k, v, g, scale, initial_state, chunk_size):
    """Dense batch: q, k [B, T, H, K]; v [B, T, H, V]; g [B, T, H] or [B, T, H, K]."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    vector = g.dim() == 4
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    C = chunk_size or CHUNK
    if T == 0:
        state = q.new_zeros(B, H, K, V, dtype=acc) if initial_state is None else initial_state.to(acc)
        return v.new_zeros(B, 0, H, V, dtype=acc), state
    N = -(-T // C)
    pad = N * C - T  # padded tokens have zero key and decay 1: they leave the state unchanged

    def to_chunks(x: torch.Tensor) -> torch.Tensor:
        x = x.to(acc)
        if pad:
            x = F.pad(x, (0, 0) * (x.dim() - 2) + (0, pad))
        x = x.transpose(1, 2)  # [B, H, T, ...]
        return x.reshape(B, H, N, C, *x.shape[3:])

    q, k, v, g = (to_chunks(x) for x in (q, k, v, g))  # q [B,H,N,C,K], g [B,H,N,C(,K)]
    prefix = g.cumsum(dim=3)  # Σ_{m≤i} g_m within the chunk
    suffix = _suffix_sums(g, dim=3)  # Σ_{m>j} g_m within the chunk
    if vector:
        scores = _vector_scores(q, k, g, SUB_CHUNK if C % SUB_CHUNK == 0 else 1)
        q_in, k_out = q * prefix.exp(), k * suffix.exp()
        chunk_decay = prefix[:, :, :, -1].exp()[..., None]  # [B,H,N,K,1]
    else:
        scores = (q @ k.transpose(-1, -2)) * _segment_sums(g, vector).exp()
        q_in, k_out = q * prefix.exp()[..., None], k * suffix.exp()[..., None]
        chunk_decay = prefix[:, :, :, -1].exp()[..., None, None]  # [B,H,N,1,1]
    o = scores @ v
    chunk_states = k_out.transpose(-1, -2) @ v  # [B,H,N,K,V]: each chunk's own contribution

    state = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(acc)
    states_before = []
    for n in range(N):
        states_before.append(state)
        state = chunk_decay[:, :, n] * state + chunk_states[:, :, n]
    o = o + q_in @ torch.stack(states_before, dim=2)
    o = (scale * o).reshape(B, H, N * C, V)[:, :, :T].transpose(1, 2)
    return o, state


def chunk_decay_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    scale: float = 1.0,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunkwise backend; arguments as :func:`decaylab.ops.decay_linear_attention`.

    ``chunk_size`` defaults to 64.
    """
    if cu_seqlens is None:
        o, final = _chunk_dense(q, k, v, log_decay, scale, initial_state, chunk_size)
        return o.to(v.dtype), final if output_final_state else None
    dense = functools.partial(_chunk_dense, chunk_size=chunk_size)
    o, final = per_sequence(dense, q, k, v, log_decay, scale, initial_state, output_final_state, cu_seqlens)
    return o.to(v.dtype), final
