"""In-chunk algebra shared by the forward and backward kernels (Triton ``@jit`` helpers).

Inside one chunk of C tokens, with g the log decay of each token (``[C]`` scalar or ``[C, BK]``
vector), the kernels work with the inclusive in-chunk cumulative sum in log2 units,

    b_i = log2(e) · Σ_{s ≤ i} g_s            (b ≤ 0, non-increasing in i),   bl = b_{C-1},

so that, for i ≥ j, the decay from token j to token i is 2^(b_i − b_j) and the decay over the
whole chunk is 2^bl. Every exponent handed to ``exp2`` is ≤ 0 except in the factorized fast path
below, whose exponents are bounded by ``SPAN_LIMIT / 2``.

The intra-chunk scores are

    A_ij = Σ_k q_ik k_jk 2^(b_ik − b_jk)   for i ≥ j, else 0.

Scalar decay: A = (q kᵀ) ⊙ 2^(b_i − b_j), exact. Vector decay, two paths, chosen per chunk:

  fast       every channel decays by at most ``SPAN_LIMIT`` in log2 over the chunk: with the
             midpoint m = bl / 2 per channel, A = (q ⊙ 2^(b − m)) (k ⊙ 2^(m − b))ᵀ, one matrix
             product whose factors stay within 2^(±SPAN_LIMIT/2).
  blocked    the chunk spans more: the block of rows I below the columns of block J (blocks of
             ``SUB`` rows) is anchored at r = b at J's last row, (q_I ⊙ 2^(b_I − r)) (k_J ⊙ 2^(r − b_J))ᵀ,
             both factors ≤ 1 for any decay: C / SUB − 1 matrix products. The blocks on the
             diagonal are the fast path with each block's own midpoint if every block spans at
             most ``SPAN_LIMIT``; otherwise (a token that forgets almost everything) their columns
             are formed elementwise from 2^(b_i − b_j) with non-positive exponents, all blocks at
             once — SUB steps of C·BK work, safe for any log decay down to −inf.

Trained models need the blocked path: on the H200 (2026-12-03) a Mamba2 model of the study's
``small`` size had, after 700 steps, chunks spanning more than 2^-192 in most programs, and the
earlier fallback (whole chunks formed column by column) made the operator's kernels 10–14× slower
than at initialization.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)
# Largest per-channel decay over one chunk, in log2 units, that the factorized fast path accepts:
# its factors then lie in [2^-96, 2^96], far inside float32 range even after scaling q and k.
SPAN_LIMIT = tl.constexpr(192.0)
# Rows per block of the blocked path (a tensor-core tile edge); chunks are multiples of it.
SUB = tl.constexpr(16)
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
            A, dq, dk = blocked(q, k, b, dA, C, PREC, WANT_A, WANT_DQ, WANT_DK)
    return A, dq, dk


@triton.jit
def _block_midpoints(b, C: tl.constexpr):
    """(m, span) [C, BK]: for each row, the midpoint and the width of b over its block of SUB rows."""
    block = tl.arange(0, C)[:, None] // SUB
    m = tl.zeros_like(b)
    span = tl.zeros_like(b)
    for J in tl.static_range(C // SUB):
        first = _row(b, J * SUB, C)[None, :]
        last = _row(b, J * SUB + SUB - 1, C)[None, :]
        m = tl.where(block == J, (first + last) * 0.5, m)
        span = tl.where(block == J, first - last, span)
    return m, span


@triton.jit
def _diagonal_columns(q, k, b, dA, C: tl.constexpr,
                      WANT_A: tl.constexpr, WANT_DQ: tl.constexpr, WANT_DK: tl.constexpr):
    """The diagonal blocks of (A, dq, dk) elementwise, for blocks that span more than SPAN_LIMIT.

    Tiles are viewed as [C / SUB, SUB, BK]; step j forms column j of every diagonal block at once
    from 2^(b_i − b_j) with non-positive exponents (i ≥ j in the block): SUB steps of C·BK work,
    safe for any log decay down to −inf."""
    BK: tl.constexpr = q.shape[1]
    NB: tl.constexpr = C // SUB
    rows = tl.arange(0, C)
    local = tl.arange(0, SUB)
    q3 = tl.reshape(q.to(tl.float32), [NB, SUB, BK])
    k3 = tl.reshape(k.to(tl.float32), [NB, SUB, BK])
    b3 = tl.reshape(b, [NB, SUB, BK])
    A = tl.zeros([C, C], dtype=tl.float32)
    dq3 = tl.zeros([NB, SUB, BK], dtype=tl.float32)
    dk3 = tl.zeros([NB, SUB, BK], dtype=tl.float32)
    for j in range(SUB):
        at_j = (local == j)[None, :, None]
        k_j = tl.sum(tl.where(at_j, k3, 0.0), axis=1)[:, None, :]
        w = tl.exp2(tl.where((local >= j)[None, :, None], b3 - tl.sum(tl.where(at_j, b3, 0.0), axis=1)[:, None, :],
                             float("-inf")))
        column = (rows[None, :] == (rows // SUB * SUB + j)[:, None])
        if WANT_A:
            A = tl.where(column, tl.reshape(tl.sum(q3 * w * k_j, axis=2), [C])[:, None], A)
        if WANT_DQ or WANT_DK:
            dA_j = tl.reshape(tl.sum(tl.where(column, dA, 0.0), axis=1), [NB, SUB])[:, :, None]
            if WANT_DQ:
                dq3 += dA_j * w * k_j
            if WANT_DK:
                dk3 = tl.where(at_j, tl.sum(dA_j * q3 * w, axis=1)[:, None, :], dk3)
    return A, tl.reshape(dq3, [C, BK]), tl.reshape(dk3, [C, BK])


@triton.jit
def blocked(q, k, b, dA, C: tl.constexpr, PREC: tl.constexpr,
            WANT_A: tl.constexpr, WANT_DQ: tl.constexpr, WANT_DK: tl.constexpr):
    """Vector decay, blocked path (module docstring): (A, dq, dk) as :func:`intra_chunk` returns them.

    Diagonal blocks, if each spans at most SPAN_LIMIT: A = (q ⊙ E)(k ⊙ F)ᵀ with E = 2^(b − m),
    F = 2^(m − b) and m the row's block midpoint (masked to the block and i ≥ j); otherwise
    :func:`_diagonal_columns`. Below them, for each block J of columns and r = b at its last row:
    A += (q ⊙ 2^(b − r) on rows below J)(k ⊙ 2^(r − b) on rows of J)ᵀ, so
    dq += (dA (k ⊙ 2^(r − b))) ⊙ 2^(b − r) and dk += (dAᵀ (q ⊙ 2^(b − r))) ⊙ 2^(r − b): both
    factors ≤ 1, whatever the decay, so these C / SUB − 1 products are always safe."""
    BK: tl.constexpr = q.shape[1]
    block = tl.arange(0, C) // SUB
    rows = tl.arange(0, C)
    diagonal = (block[:, None] == block[None, :]) & (rows[:, None] >= rows[None, :])
    qf = q.to(tl.float32)
    kf = k.to(tl.float32)
    m, span = _block_midpoints(b, C)
    if tl.max(tl.max(span, axis=1), axis=0) <= SPAN_LIMIT:
        E = tl.exp2(b - m)
        F = tl.exp2(m - b)
        A = tl.zeros([C, C], dtype=tl.float32)
        dq = tl.zeros([C, BK], dtype=tl.float32)
        dk = tl.zeros([C, BK], dtype=tl.float32)
        if WANT_A:
            A = tl.where(diagonal, mma(qf * E, tl.trans(kf * F), PREC), 0.0)
        if WANT_DQ or WANT_DK:
            dA_diagonal = tl.where(diagonal, dA, 0.0)
            if WANT_DQ:
                dq = mma(dA_diagonal, kf * F, PREC) * E
            if WANT_DK:
                dk = mma(tl.trans(dA_diagonal), qf * E, PREC) * F
    else:
        A, dq, dk = _diagonal_columns(q, k, b, dA, C, WANT_A, WANT_DQ, WANT_DK)
    for J in tl.static_range(C // SUB - 1):
        r = _row(b, J * SUB + SUB - 1, C)[None, :]
        to_q = tl.exp2(tl.where((block > J)[:, None], b - r, float("-inf")))
        to_k = tl.exp2(tl.where((block == J)[:, None], r - b, float("-inf")))
        q_J = qf * to_q
        k_J = kf * to_k
        if WANT_A:
            A = mma_into(A, q_J, tl.trans(k_J), PREC)
        if WANT_DQ:
            dq += mma(dA, k_J, PREC) * to_q
        if WANT_DK:
            dk += mma(tl.trans(dA), q_J, PREC) * to_k
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
    chunk needs two exponential tiles, not four; otherwise u = 0 and A is formed by
    :func:`intra_chunk` (its blocked path)."""
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
