"""Triton GPU backend: chunkwise forward/backward kernels and a fused decode step.

Modules: ``intra`` (in-chunk algebra shared by the kernels), ``state`` (chunk layout and the
sequential state pass), ``chunk_fwd`` / ``chunk_bwd`` (per-chunk parallel kernels and
launchers), ``function`` (autograd and the backend entry point), ``decode`` (one-token step),
``config`` (launch configurations by rule).
"""

from decaylab.ops.triton.decode import triton_decode_step
from decaylab.ops.triton.function import triton_decay_linear_attention

__all__ = ["triton_decay_linear_attention", "triton_decode_step"]
