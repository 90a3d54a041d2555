"""Autograd wrapper and the public entry point of the Triton backend."""

from __future__ import annotations

import torch

from decaylab.ops.triton.chunk_bwd import chunk_backward
from decaylab.ops.triton.chunk_fwd import chunk_forward
from decaylab.ops.triton.config import keep_forward_states
from decaylab.ops.triton.state import ChunkStates


class ChunkDecayLinearAttention(torch.autograd.Function):
    """Chunked decay linear attention with gradients for q, k, v, log decay and initial state."""

    @staticmethod
    def forward(ctx, q, k, v, g, scale, initial_state, output_final_state, cu_seqlens, store_states):
        o, final_state, states = chunk_forward(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens,
                                               store_states=store_states)
        ctx.save_for_backward(q, k, v, g, initial_state, cu_seqlens, None if states is None else states.h)
        ctx.scale = scale
        ctx.chunk = None if states is None else states.chunk
        return o, final_state

    @staticmethod
    def backward(ctx, do, d_final_state):
        q, k, v, g, initial_state, cu_seqlens, h = ctx.saved_tensors
        dq, dk, dv, dg, dh0 = chunk_backward(
            q, k, v, g, do.contiguous(), ctx.scale, initial_state,
            None if d_final_state is None else d_final_state.float().contiguous(),
            initial_state is not None and ctx.needs_input_grad[5], cu_seqlens,
            states=None if h is None else ChunkStates(h, ctx.chunk),
        )
        return dq, dk, dv, dg, None, dh0, None, None, None


def triton_decay_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    scale: float = 1.0,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Triton backend of :func:`decaylab.ops.decay_linear_attention` (inputs already validated).

    q, k [B, T, H, K]; v [B, T, H, V]; log_decay [B, T, H] or [B, T, H, K] (computed in
    float32, gradient returned in its dtype); initial_state float32 [N, H, K, V]. q and k are
    cast to v's dtype if they differ; float64 inputs are computed in float32. Returns
    (o in v's dtype, final state float32 or None).
    """
    out_dtype = v.dtype
    dtype = torch.float32 if out_dtype == torch.float64 else out_dtype
    q, k, v = (x.to(dtype).contiguous() for x in (q, k, v))
    g = log_decay.float().contiguous()
    h0 = None if initial_state is None else initial_state.float().contiguous()
    cu = None if cu_seqlens is None else cu_seqlens.to(device=q.device, dtype=torch.int32).contiguous()
    # The forward keeps its chunk states for the backward only when one can follow and use them.
    store_states = keep_forward_states(q.shape[-1], v.shape[-1], g.dim() == 3) and torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (q, k, v, g, h0))
    o, final_state = ChunkDecayLinearAttention.apply(
        q, k, v, g, float(scale), h0, output_final_state, cu, store_states)
    return o.to(out_dtype), final_state
