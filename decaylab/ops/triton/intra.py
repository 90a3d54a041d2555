"""In-chunk algebra shared by the forward and backward kernels (Triton ``@jit`` helpers).

Inside one chunk of C tokens, with g the log decay of each token (``[C]`` scalar or ``[C, BK]``
vector), the kernels work with the inclusive in-chunk cumulative sum in log2 units,

    b_i = log2(e) · Σ_{s ≤ i} g_s            (b ≤ 0, non-increasing in i),   bl = b_{C-1},

so that, for i ≥ j, the decay from token j to token i is 2^(b_i − b_j) and the decay over the
whole chunk is 2^bl. Every exponent handed to ``exp2`` is ≤ 0 except in the factorized fast path
below, whose exponents are bounded by ``SPAN_LIMIT / 2``.

The intra-chunk scores are

    A_ij = Σ_k q_ik k_jk 2^(b_ik − b_jk)   for i ≥ j, else 0.

Scalar decay: A = (q kᵀ) ⊙ 2^(b_i − b_j), exact. Vector decay, fast path (every channel decays by
at most ``SPAN_LIMIT`` in log2 over the chunk): with the midpoint m = bl / 2 per channel,
A = (q ⊙ 2^(b − m)) (k ⊙ 2^(m − b))ᵀ, one matrix product whose factors stay within
2^(±SPAN_LIMIT/2). Slow path (a faster decay somewhere in the chunk): each column j of A is
formed elementwise from 2^(b_i − b_j) with non-positive exponents — O(C²·BK) work, only on
chunks that need it, and safe for any log decay down to −inf.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)
# Largest per-channel decay over one chunk, in log2 units, that the factorized fast path accepts:
# its factors then lie in [2^-96, 2^96], far inside float32 range even after scaling q and k.
SPAN_LIMIT = tl.constexpr(192.0)
# Log decay below which exp(g) is 0 in float32 (exp(-104) < 2^-149, the smallest subnormal).
LOG_DECAY_FLOOR = tl.constexpr(-110.0)
# Triton's CPU interpreter multiplies bf16 tiles as raw integers; there, products run in float32.
# Read at import, like the decision of ``triton.jit`` to interpret.
INTERPRETED = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") == "1")


@triton.jit
def round_tf32(x):
    """Round float32 to the nearest tf32 value (the tensor cores would truncate, biasing sums)."""
    bits = x.to(tl.uint32, bitcast=True)
    bits = (bits + 0x1000) & 0xFFFFE000
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _split_bf16(x):
    """x ≈ hi + lo with hi, lo bf16: 16 significant bits, float32's range."""
    hi = x.to(tl.bfloat16)
    return hi, (x - hi.to(tl.float32)).to(tl.bfloat16)


@triton.jit
def _dot16(a, b, acc):
    """acc + a @ b for two 16-bit tiles (float32 in the interpreter, whose bf16 products are wrong)."""
    if INTERPRETED and a.dtype == tl.bfloat16:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    return tl.dot(a, b, acc)


@triton.jit
def mma_into(acc, a, b, PREC: tl.constexpr):
    """``acc + a @ b`` with the float32 accumulator acc updated in place (the tensor cores
    accumulate into it, so no second [M, N] tile is live); operands are 16-bit inputs or float32
    intermediates.

    Two 16-bit operands go to the tensor cores as they are. A float32 operand follows ``PREC``:
      "tf32"   — rounded to the nearest tf32 (~3e-4 relative per operand, unbiased; the tensor
                 cores alone would truncate): the forward of 16-bit models;
      "bf16x3" — split into bf16 hi + lo, two or three bf16 products (~1e-5 relative): the
                 backward of bf16 models, whose dg = revcumsum(q ⊙ dq − k ⊙ dk) cancels;
      "tf32x3" — float32 accuracy: float32 models and the fp16 backward.
    """
    if a.dtype == b.dtype and a.dtype != tl.float32:
        return _dot16(a, b, acc)
    if PREC == "bf16x3":
        if a.dtype == tl.float32 and b.dtype == tl.float32:
            a_hi, a_lo = _split_bf16(a)
            b_hi, b_lo = _split_bf16(b)
            return _dot16(a_hi, b_hi, _dot16(a_lo, b_hi, _dot16(a_hi, b_lo, acc)))
        elif a.dtype == tl.float32:
            a_hi, a_lo = _split_bf16(a)
            return _dot16(a_hi, b, _dot16(a_lo, b, acc))
        else:
            b_hi, b_lo = _split_bf16(b)
            return _dot16(a, b_hi, _dot16(a, b_lo, acc))
    a = a.to(tl.float32)
    b = b.to(tl.float32)
    if PREC == "tf32":
        a = round_tf32(a)
        b = round_tf32(b)
    return tl.dot(a, b, acc, input_precision=PREC)


@triton.jit
def mma(a, b, PREC: tl.constexpr):
    """``a @ b`` accumulated in float32, in the precision of :func:`mma_into`."""
    return mma_into(tl.zeros([a.shape[0], b.shape[1]], dtype=tl.float32), a, b, PREC)


@triton.jit
def cumulative_decay(g, C: tl.constexpr, SCALAR: tl.constexpr):
    """Return (b, bl): in-chunk inclusive cumsum of ``g`` ([C] or [C, BK]) in log2 units and its
    last row (bl is read off the cumsum, not re-summed, so that bl − b_{C-1} is exactly 0).

    g is first clamped at ``LOG_DECAY_FLOOR``: exp of anything below it is 0 in float32 anyway,
    and the clamp keeps the cumsum small, so differences of it stay precise after such a token.
    """
    b = tl.cumsum(tl.maximum(g, LOG_DECAY_FLOOR) * LOG2E, axis=0)
    last = tl.arange(0, C) == C - 1
    if SCALAR:
        bl = tl.sum(tl.where(last, b, 0.0), axis=0)
    else:
        bl = tl.sum(tl.where(last[:, None], b, 0.0), axis=0)
    return b, bl


@triton.jit
def _column(x, j, C: tl.constexpr):
    """Column j of a [C, C] tile, as a [C] vector."""
    return tl.sum(tl.where(tl.arange(0, C)[None, :] == j, x, 0.0), axis=1)


@triton.jit
def _row(x, j, C: tl.constexpr):
    """Row j of a [C, N] tile, as an [N] vector."""
    return tl.sum(tl.where(tl.arange(0, C)[:, None] == j, x, 0.0), axis=0)


@triton.jit
def intra_chunk(q, k, b, bl, dA, C: tl.constexpr, SCALAR: tl.constexpr, PREC: tl.constexpr,
                WANT_A: tl.constexpr, WANT_DQ: tl.constexpr, WANT_DK: tl.constexpr):
    """Intra-chunk scores and their adjoints for one chunk.

    Args:
        q, k: [C, BK] (input dtype). b: [C] or [C, BK] and bl: [] or [BK], from
        :func:`cumulative_decay`. dA: [C, C] float32, the causally masked gradient of A
        (ignored unless WANT_DQ or WANT_DK).

    Returns:
        (A [C, C], dq [C, BK], dk [C, BK]) in float32, where A is causally masked,
        dq_i = Σ_j dA_ij k_j ⊙ 2^(b_i − b_j) and dk_j = Σ_i dA_ij q_i ⊙ 2^(b_i − b_j);
        outputs not asked for are zeros.
    """
    BK: tl.constexpr = q.shape[1]
    rows = tl.arange(0, C)
    causal = rows[:, None] >= rows[None, :]
    A = tl.zeros([C, C], dtype=tl.float32)
    dq = tl.zeros([C, BK], dtype=tl.float32)
    dk = tl.zeros([C, BK], dtype=tl.float32)
    if SCALAR:
        D = tl.exp2(tl.where(causal, b[:, None] - b[None, :], float("-inf")))
        if WANT_A:
            A = mma(q, tl.trans(k), PREC) * D
        if WANT_DQ:
            dq = mma(dA * D, k, PREC)
        if WANT_DK:
            dk = mma(tl.trans(dA * D), q, PREC)
    else:
        if tl.max(-bl, axis=0) <= SPAN_LIMIT:
            E, F, _ = midpoint_scales(b, bl)
            q_hat = q.to(tl.float32) * E
            k_hat = k.to(tl.float32) * F
            if WANT_A:
                A = tl.where(causal, mma(q_hat, tl.trans(k_hat), PREC), 0.0)
            if WANT_DQ:
                dq = mma(dA, k_hat, PREC) * E
            if WANT_DK:
                dk = mma(tl.trans(dA), q_hat, PREC) * F
        else:
            qf = q.to(tl.float32)
            kf = k.to(tl.float32)
            for j in range(C):
                k_j = _row(kf, j, C)
                w = tl.exp2(tl.where(rows[:, None] >= j, b - _row(b, j, C)[None, :], float("-inf")))
                if WANT_A:
                    col = tl.sum(qf * w * k_j[None, :], axis=1)
                    A = tl.where(rows[None, :] == j, col[:, None], A)
                if WANT_DQ or WANT_DK:
                    dA_j = _column(dA, j, C)
                    if WANT_DQ:
                        dq += dA_j[:, None] * w * k_j[None, :]
                    if WANT_DK:
                        dk_j = tl.sum(dA_j[:, None] * qf * w, axis=0)
                        dk = tl.where(rows[:, None] == j, dk_j[None, :], dk)
    return A, dq, dk


@triton.jit
def midpoint_scales(b, bl):
    """Vector decay, fast path: (E, F, m) with E = 2^(b − m), F = 2^(m − b) [C, BK] and the midpoint
    m = bl / 2 [BK], so that A = (q ⊙ E)(k ⊙ F)ᵀ (masked), q ⊙ 2^b = (q ⊙ E) ⊙ 2^m and
    k ⊙ 2^(bl − b) = (k ⊙ F) ⊙ 2^m."""
    m = bl * 0.5
    return tl.exp2(b - m[None, :]), tl.exp2(m[None, :] - b), m


@triton.jit
def forward_factors(q, k, b, bl, C: tl.constexpr, PREC: tl.constexpr):
    """Vector decay, forward: (A, P, Q, u) with A [C, C] the masked intra-chunk scores and
    q ⊙ 2^b = P ⊙ 2^u, k ⊙ 2^(bl − b) = Q ⊙ 2^u (P, Q [C, BK] float32, u [BK]).
    Fast path: P = q ⊙ E, Q = k ⊙ F (:func:`midpoint_scales`), u = bl / 2 and A = P Qᵀ, so the
    chunk needs two exponential tiles, not four; otherwise u = 0 and A is formed column by column
    as in :func:`intra_chunk`."""
    rows = tl.arange(0, C)
    if tl.max(-bl, axis=0) <= SPAN_LIMIT:
        E, F, u = midpoint_scales(b, bl)
        P = q.to(tl.float32) * E
        Q = k.to(tl.float32) * F
        A = tl.where(rows[:, None] >= rows[None, :], mma(P, tl.trans(Q), PREC), 0.0)
    else:
        A, _, _ = intra_chunk(q, k, b, bl, tl.zeros([C, C], dtype=tl.float32), C, False, PREC, True, False, False)
        P = q.to(tl.float32) * tl.exp2(b)
        Q = k.to(tl.float32) * tl.exp2(bl[None, :] - b)
        u = tl.zeros_like(bl)
    return A, P, Q, u
