"""Decay parameterizations (one module each), their registry, and the spec of the four axes."""

# Registration order is the order of the paper's table: Mamba2, GLA, HGRN2, LightNet/LSSP, TNL, SD.
from decaylab.decay import mamba2, gla, hgrn2, cumulative, fixed, simple  # noqa: F401,I001  (registers)
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
