"""Decay parameterizations (one module each), their registry, and the spec of the four axes."""

from decaylab.decay import cumulative, fixed, gla, hgrn2, mamba2, simple  # noqa: F401  (registers)
from decaylab.decay.base import DECAYS, Decay, DecayContext, register
from decaylab.decay.hgrn2 import LayerLowerBounds
from decaylab.decay.spec import (
    GRANULARITIES,
    POSITIONALS,
    DecaySpec,
    all_decay_names,
    design_space,
    parse_decay_name,
)

__all__ = [
    "DECAYS",
    "GRANULARITIES",
    "POSITIONALS",
    "Decay",
    "DecayContext",
    "DecaySpec",
    "LayerLowerBounds",
    "all_decay_names",
    "design_space",
    "parse_decay_name",
    "register",
]
