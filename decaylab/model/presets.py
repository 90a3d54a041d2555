"""Model sizes (tiny CPU sizes and the paper's 160M / 410M / 1.45B) and the one place that builds models.

``arch="decay_linear"`` builds :class:`DecayLinearForCausalLM`; ``arch="softmax"`` builds the
softmax-attention reference: transformers' LLaMA (RoPE, SwiGLU, RMSNorm, PyTorch SDPA; with
decaylab's loss head, :mod:`decaylab.model.softmax`) at the same width, depth, FFN and vocabulary.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, LlamaConfig, PretrainedConfig, PreTrainedModel

from decaylab.model.config import DecayLinearConfig
from decaylab.model.modeling import DecayLinearForCausalLM
from decaylab.model.softmax import SoftmaxForCausalLM

PAPER_VOCAB = 50304  # ≈ 50k, a multiple of 128

PRESETS: dict[str, dict] = {
    "micro": dict(hidden_size=64, num_hidden_layers=2, head_dim=16, intermediate_size=176, vocab_size=512),
    "tiny": dict(hidden_size=128, num_hidden_layers=2, head_dim=32, intermediate_size=352, vocab_size=8192),
    "small": dict(hidden_size=256, num_hidden_layers=4, head_dim=64, intermediate_size=688, vocab_size=8192),
    "160m": dict(hidden_size=768, num_hidden_layers=12, head_dim=64, intermediate_size=2048, vocab_size=PAPER_VOCAB),
    "410m": dict(hidden_size=1024, num_hidden_layers=24, head_dim=64, intermediate_size=2816, vocab_size=PAPER_VOCAB),
    "1.45b": dict(hidden_size=2048, num_hidden_layers=24, head_dim=64, intermediate_size=5632, vocab_size=PAPER_VOCAB),
}
ARCHS = ("decay_linear", "softmax")


def make_config(size: str = "tiny", arch: str = "decay_linear", **overrides) -> PretrainedConfig:
    """A model config for ``size`` (a key of :data:`PRESETS`), with field ``overrides``."""
    if size not in PRESETS:
        raise ValueError(f"size={size!r} is not a preset; choose one of {sorted(PRESETS)}")
    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r} must be one of {ARCHS}")
    fields = {**PRESETS[size], **overrides}
    if arch == "decay_linear":
        return DecayLinearConfig(**fields)
    head_dim = fields.pop("head_dim")
    fields.setdefault("num_attention_heads", fields["hidden_size"] // head_dim)
    unknown = set(fields) - {"hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size",
                             "num_attention_heads", "rope_theta", "rms_norm_eps", "initializer_range"}
    if unknown:
        raise ValueError(f"arch='softmax' does not take the field(s) {sorted(unknown)}")
    return LlamaConfig(
        head_dim=head_dim, num_key_value_heads=fields["num_attention_heads"], tie_word_embeddings=False,
        max_position_embeddings=1 << 16, attn_implementation="sdpa", **fields,
    )


def model_class(config: PretrainedConfig) -> type[PreTrainedModel]:
    """decaylab's causal-LM class for ``config`` (decay linear attention, or the LLaMA softmax reference)."""
    if isinstance(config, DecayLinearConfig):
        return DecayLinearForCausalLM
    if isinstance(config, LlamaConfig):
        return SoftmaxForCausalLM
    raise ValueError(f"no decaylab model for config type {type(config).__name__}")


def build_model(config: PretrainedConfig) -> PreTrainedModel:
    """A freshly initialised causal LM for ``config``."""
    return model_class(config)(config)


def load_pretrained(path: str | Path) -> PreTrainedModel:
    """The causal LM saved in the model directory ``path``, as decaylab's class for its config (a saved
    softmax reference is a plain transformers LLaMA folder; it loads here with decaylab's loss head)."""
    return model_class(AutoConfig.from_pretrained(path)).from_pretrained(path)


def count_parameters(config: PretrainedConfig) -> int:
    """Parameter count of the model ``config`` describes, without allocating its weights."""
    import torch

    with torch.device("meta"):
        model = build_model(config)
    return sum(p.numel() for p in model.parameters())
