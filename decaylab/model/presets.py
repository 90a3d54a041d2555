"""Model sizes (tiny CPU sizes and the paper's 160M / 410M / 1.45B) and the one place that builds models.

``arch="decay_linear"`` builds :class:`DecayLinearForCausalLM`; ``arch="softmax"`` builds the
softmax-attention reference: transformers' LLaMA (RoPE, SwiGLU, RMSNorm, PyTorch SDPA; with
decaylab's loss head, :mod:`decaylab.model.softmax`) at the same width, depth, FFN and vocabulary.
"""

from __future__ import annotations

import contextlib
import inspect
import typing
from pathlib import Path

from transformers import AutoConfig, LlamaConfig, PretrainedConfig, PreTrainedModel
from transformers.utils import logging as hf_logging

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

#: The fields ``arch="softmax"`` takes (mapped onto a LlamaConfig), with their types.
SOFTMAX_FIELDS: dict[str, type] = {
    "hidden_size": int, "num_hidden_layers": int, "intermediate_size": int, "vocab_size": int, "head_dim": int,
    "num_attention_heads": int, "rope_theta": float, "rms_norm_eps": float, "initializer_range": float,
}


def config_fields(arch: str) -> dict[str, typing.Any]:
    """The fields a model of ``arch`` takes as overrides, with their types (``Optional[int]`` for
    a field that may be None): the arguments of :class:`DecayLinearConfig`, or :data:`SOFTMAX_FIELDS`."""
    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r} must be one of {ARCHS}")
    if arch == "softmax":
        return dict(SOFTMAX_FIELDS)
    hints = typing.get_type_hints(DecayLinearConfig.__init__)
    fields = {}
    for name, parameter in inspect.signature(DecayLinearConfig.__init__).parameters.items():
        if name == "self" or parameter.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        tp = hints[name]
        args = typing.get_args(tp)
        fields[name] = typing.Optional[next(a for a in args if a is not type(None))] if type(None) in args else tp
    return fields


def make_config(size: str = "tiny", arch: str = "decay_linear", **overrides) -> PretrainedConfig:
    """A model config for ``size`` (a key of :data:`PRESETS`), with field ``overrides``."""
    if size not in PRESETS:
        raise ValueError(f"size={size!r} is not a preset; choose one of {sorted(PRESETS)}")
    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r} must be one of {ARCHS}")
    fields = {**PRESETS[size], **overrides}
    if arch == "decay_linear":
        return DecayLinearConfig(**fields)
    unknown = set(fields) - set(SOFTMAX_FIELDS)
    head_dim = fields.pop("head_dim")
    fields.setdefault("num_attention_heads", fields["hidden_size"] // head_dim)
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
    softmax reference is a plain transformers LLaMA folder; it loads here with decaylab's loss head).

    Raises ValueError when the weights do not fit the model config.json describes (a weight missing,
    unexpected or of another shape), where transformers would initialise the model at random."""
    config = AutoConfig.from_pretrained(path)
    with _quiet_transformers():
        model, info = model_class(config).from_pretrained(path, output_loading_info=True)
    wrong = {kind: sorted(map(str, info.get(f"{kind}_keys") or ())) for kind in ("missing", "unexpected", "mismatched")}
    if any(wrong.values()):
        found = ", ".join(f"{len(keys)} {kind} (e.g. {keys[0]})" for kind, keys in wrong.items() if keys)
        raise ValueError(f"{path}: the weights do not match the {config.model_type} model its config.json describes: "
                         f"{found}; use the config.json saved with these weights")
    return model


@contextlib.contextmanager
def _quiet_transformers():
    """Without transformers' progress bars and its report of missing or unexpected weights (which
    :func:`load_pretrained` turns into an error of its own)."""
    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def count_parameters(config: PretrainedConfig) -> int:
    """Parameter count of the model ``config`` describes, without allocating its weights."""
    import torch

    with torch.device("meta"):
        model = build_model(config)
    return sum(p.numel() for p in model.parameters())
