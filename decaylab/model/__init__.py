"""Models: the decay linear-attention causal LM, a softmax baseline, presets, and Auto* registration."""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from decaylab.model.cache import RecurrentCache
from decaylab.model.config import DecayLinearConfig
from decaylab.model.modeling import DecayLinearForCausalLM, DecayLinearModel
from decaylab.model.presets import PRESETS, build_model, count_parameters, load_pretrained, make_config

AutoConfig.register(DecayLinearConfig.model_type, DecayLinearConfig, exist_ok=True)
AutoModel.register(DecayLinearConfig, DecayLinearModel, exist_ok=True)
AutoModelForCausalLM.register(DecayLinearConfig, DecayLinearForCausalLM, exist_ok=True)

__all__ = [
    "PRESETS",
    "DecayLinearConfig",
    "DecayLinearForCausalLM",
    "DecayLinearModel",
    "RecurrentCache",
    "build_model",
    "count_parameters",
    "load_pretrained",
    "make_config",
]
