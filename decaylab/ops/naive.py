"""Token-by-token recurrence: the oracle of every other backend and the decode step.

Per head, with state S [K, V], key k_t [K], value v_t [V], query q_t [K] and log decay g_t
(a scalar per head, or a vector [K]):

    S_t = exp(g_t) ⊙ S_{t-1} + k_t v_tᵀ        (vector decay scales the rows of S)
    o_t = scale · S_tᵀ q_t

All arithmetic runs in float32 (or float64 if the inputs are float64); the output has the
dtype of ``v``.
"""

from __future__ import annotations

import functools

import torch

from decaylab.ops.varlen import per_sequence


def recurrent_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    state: torch.Tensor,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token of the recurrence for a batch of sequences.

    Shapes: q, k [N, H, K]; v [N, H, V]; log_decay [N, H] or [N, H, K]; state [N, H, K, V]
    (float32 or float64). Returns (o [N, H, V] in v's dtype, new state), out of place.
    """
    acc = state.dtype
    decay = log_decay.to(acc).exp()
    decay = decay[..., None, None] if log_decay.dim() == 2 else decay[..., None]
    state = decay * state + k.to(acc)[..., :, None] * v.to(acc)[..., None, :]
    o = scale * torch.einsum("nhk,nhkv->nhv", q.to(acc), state)
    return o.to(v.dtype), state


def naive_decay_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    scale: float = 1.0,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the recurrence over time. Shapes as in :func:`decaylab.ops.decay_linear_attention`."""
    if cu_seqlens is not None:
        dense = functools.partial(naive_decay_linear_attention, output_final_state=True)
        return per_sequence(dense, q, k, v, log_decay, scale, initial_state, output_final_state, cu_seqlens)

    B, T, H, K = q.shape
    V = v.shape[-1]
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    state = q.new_zeros(B, H, K, V, dtype=acc) if initial_state is None else initial_state.to(acc)
    outs = []
    for t in range(T):
        o, state = recurrent_step(q[:, t], k[:, t], v[:, t], log_decay[:, t], state, scale)
        outs.append(o)
    o = torch.stack(outs, dim=1) if outs else v.new_zeros(B, 0, H, V)
    return o, (state if output_final_state else None)
