"""decaylab: the design space of decay in linear attention.

Importing the package registers ``DecayLinearConfig`` / ``DecayLinearForCausalLM`` with
transformers' ``AutoConfig`` and ``AutoModelForCausalLM``.
"""

from decaylab import model  # noqa: F401  (registers the Auto classes)
from decaylab.model import DecayLinearConfig, DecayLinearForCausalLM, build_model, make_config
from decaylab.ops import decay_linear_attention

__version__ = "0.1.0"
__all__ = ["DecayLinearConfig", "DecayLinearForCausalLM", "build_model", "decay_linear_attention", "make_config"]
