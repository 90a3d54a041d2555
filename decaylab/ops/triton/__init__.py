"""Triton GPU backend: chunkwise forward/backward kernels and a fused decode step.

Modules: ``intra`` (in-chunk algebra shared by the kernels), ``chunk_fwd`` (the single-pass
forward: one program walks a sequence's chunks carrying its state), ``state`` (chunk layout and
the backward's sequential state passes), ``chunk_bwd`` (the backward's per-chunk parallel
kernels and launcher), ``decode`` (one-token step), ``config`` (launch configurations by rule),
``function`` (the kernels as PyTorch custom operators with autograd, and the entry points).
"""

from decaylab.ops.triton.decode import triton_decode_step
from decaylab.ops.triton.function import triton_decay_linear_attention, triton_decode

__all__ = ["triton_decay_linear_attention", "triton_decode", "triton_decode_step"]
