"""The Triton backend as PyTorch custom operators, and its public entry points.

``decaylab::chunk_forward``, ``decaylab::chunk_backward`` and ``decaylab::decode_step`` are
registered with ``torch.library.custom_op``: each has a fake (shape-only) implementation, the
forward has a registered autograd formula, so ``torch.compile`` traces a model through them
without a graph break and Inductor treats the kernels as opaque calls. Optional outputs are
returned as empty tensors (custom operators return tensors only). Every output's shape follows
from the input shapes, and no output lives on the CPU, so a compiled step can be captured as a
CUDA graph (``mode="reduce-overhead"``). The operators accept CPU tensors too, for Triton's
interpreter (``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import torch

from decaylab.ops.triton.chunk_bwd import chunk_backward
from decaylab.ops.triton.chunk_fwd import chunk_forward
from decaylab.ops.triton.config import keep_forward_states, stored_state_chunk
from decaylab.ops.triton.decode import triton_decode_step
from decaylab.ops.triton.state import ChunkStates, num_chunks

_NONE = 0  # size of the empty tensor that stands for an absent optional output


def _absent(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty(_NONE, dtype=torch.float32)


def _present(x: torch.Tensor | None) -> torch.Tensor | None:
    return None if x is None or x.numel() == 0 else x


@torch.library.custom_op("decaylab::chunk_forward", mutates_args=())
def _forward_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, scale: float,
                initial_state: torch.Tensor | None, output_final_state: bool, cu_seqlens: torch.Tensor | None,
                store_states: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(o, final state or empty, chunk states h [NT, H, K, V] of :func:`stored_state_chunk` tokens, or empty)."""
    o, ht, states = chunk_forward(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens,
                                  store_states=store_states)
    return o, _absent(q) if ht is None else ht, _absent(q) if states is None else states.h


@_forward_op.register_fake
def _(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens, store_states):
    B, T, H, K = q.shape
    V = v.shape[-1]
    N = B if cu_seqlens is None else cu_seqlens.shape[0] - 1
    ht = q.new_empty(N, H, K, V, dtype=torch.float32) if output_final_state else _absent(q)
    if store_states:
        NT = num_chunks(B, T, stored_state_chunk(K, V, g.dim() == 3), None if cu_seqlens is None else N)
        h = q.new_empty(NT, H, K, V, dtype=torch.float32)
    else:
        h = _absent(q)
    return torch.empty_like(v), ht, h


@torch.library.custom_op("decaylab::chunk_backward", mutates_args=())
def _backward_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, do: torch.Tensor, scale: float,
                 initial_state: torch.Tensor | None, d_final_state: torch.Tensor | None, want_d_initial_state: bool,
                 cu_seqlens: torch.Tensor | None, h: torch.Tensor,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv, dg, d initial state or empty); ``h`` holds the forward's kept states or is empty."""
    states = None if h.numel() == 0 else ChunkStates(h, stored_state_chunk(q.shape[-1], v.shape[-1], g.dim() == 3))
    dq, dk, dv, dg, dh0 = chunk_backward(q, k, v, g, do, scale, initial_state, d_final_state,
                                         want_d_initial_state, cu_seqlens, states=states)
    return dq, dk, dv, dg, _absent(q) if dh0 is None else dh0


@_backward_op.register_fake
def _(q, k, v, g, do, scale, initial_state, d_final_state, want_d_initial_state, cu_seqlens, h):
    dh0 = torch.empty_like(initial_state, dtype=torch.float32) if want_d_initial_state else _absent(q)
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(g), dh0


def _setup_context(ctx, inputs, output):
    q, k, v, g, scale, initial_state, output_final_state, cu_seqlens, store_states = inputs
    _, _, h = output
    ctx.save_for_backward(q, k, v, g, initial_state, cu_seqlens, h)
    ctx.scale = scale


def _backward(ctx, do, d_final_state, _dh):
    q, k, v, g, initial_state, cu_seqlens, h = ctx.saved_tensors
    d_final_state = _present(d_final_state)
    want_dh0 = initial_state is not None and ctx.needs_input_grad[5]
    dq, dk, dv, dg, dh0 = _backward_op(
        q, k, v, g, do.contiguous(), ctx.scale, initial_state,
        None if d_final_state is None else d_final_state.float().contiguous(), want_dh0, cu_seqlens, h)
    return dq, dk, dv, dg, None, _present(dh0), None, None, None


_forward_op.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("decaylab::decode_step", mutates_args=("state",))
def _decode_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor, state: torch.Tensor,
               scale: float) -> torch.Tensor:
    return triton_decode_step(q, k, v, log_decay, state, scale)


@_decode_op.register_fake
def _(q, k, v, log_decay, state, scale):
    return v.new_empty(*q.shape[:2], v.shape[-1])


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
    o, final_state, _ = _forward_op(q, k, v, g, float(scale), h0, output_final_state, cu, store_states)
    return o.to(out_dtype), final_state if output_final_state else None


def triton_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor,
                  state: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """One recurrent step through the ``decaylab::decode_step`` operator (see
    :func:`decaylab.ops.triton.decode.triton_decode_step`); ``state`` is updated in place."""
    return _decode_op(q, k, v, log_decay, state, float(scale))
