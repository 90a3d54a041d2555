"""The decay linear-attention operator and its backends (naive, chunk, triton, fla)."""

from decaylab.ops.api import BACKENDS, decay_linear_attention, decode_step, resolve_backend
from decaylab.ops.naive import naive_decay_linear_attention, recurrent_step

__all__ = [
    "BACKENDS",
    "decay_linear_attention",
    "decode_step",
    "naive_decay_linear_attention",
    "recurrent_step",
    "resolve_backend",
]
