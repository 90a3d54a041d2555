"""Triton GPU backend: chunkwise forward/backward kernels and a fused decode step.

Modules: ``intra`` (in-chunk algebra shared by the kernels), ``chunk_fwd`` (the single-pass
forward: one program walks a sequence's chunks carrying its state), ``state`` (chunk layout and
the backward's sequential state passes), ``chunk_bwd`` (the backward's per-chunk parallel
kernels and launcher), ``function`` (autograd and the backend entry point), ``decode``
(one-token step), ``config`` (launch configurations by rule).
"""

from decaylab.ops.triton.decode import triton_decode_step
from decaylab.ops.triton.function import triton_decay_linear_attention

__all__ = ["triton_decay_linear_attention", "triton_decode_step"]
