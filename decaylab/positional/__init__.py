"""Relative position encodings for q and k: RoPE, the cosine LRPE of the reference code, and TPE."""

from decaylab.positional.lrpe import lrpe_cosine
from decaylab.positional.rotary import apply_rotary, rotary_angles, tie_rotated_pairs
from decaylab.positional.tpe import ToeplitzPositional

__all__ = ["ToeplitzPositional", "apply_rotary", "lrpe_cosine", "rotary_angles", "tie_rotated_pairs"]
