"""Configuration of the decay linear-attention language model (a transformers PretrainedConfig)."""

from __future__ import annotations

import math
import numbers

from transformers import PretrainedConfig

from decaylab.decay import DecaySpec
from decaylab.model.folder import AUTO_MAP


class DecayLinearConfig(PretrainedConfig):
    """The testbed model of the paper with one point of the decay design space.

    Size: ``hidden_size`` d, ``num_hidden_layers`` L, ``num_heads`` H of width ``head_dim``
    (K = V = head_dim; H defaults to d / head_dim, and H·K = d is required), SwiGLU width
    ``intermediate_size``; ``rope_theta`` and ``rms_norm_eps`` are positive.
    Decay axes: ``decay``, ``decay_granularity``, ``share_decay_key``, ``positional`` (see
    :mod:`decaylab.decay.spec`); ``decay_rank`` is the rank e of the vector decay projection
    d → e → H·K and ``gate_rank`` that of the output gate d → e → d. Invalid combinations
    raise ``ValueError`` here, naming the fields.
    """

    model_type = "decaylab-linear"

    def __init__(
        self,
        vocab_size: int = 8192,
        hidden_size: int = 256,
        num_hidden_layers: int = 4,
        num_heads: int | None = None,
        head_dim: int = 64,
        intermediate_size: int = 688,
        decay: str = "sd-0.99",
        decay_granularity: str = "vector",
        share_decay_key: bool = False,
        positional: str = "none",
        decay_rank: int = 16,
        gate_rank: int = 16,
        rope_theta: float = 10000.0,
        rms_norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        backend: str = "auto",
        tie_word_embeddings: bool = False,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_heads = num_heads if num_heads is not None else max(hidden_size // head_dim, 1)
        self.head_dim = head_dim
        self.intermediate_size = intermediate_size
        self.decay = decay
        self.decay_granularity = decay_granularity
        self.share_decay_key = share_decay_key
        self.positional = positional
        self.decay_rank = decay_rank
        self.gate_rank = gate_rank
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.initializer_range = initializer_range
        self.backend = backend
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
        self.auto_map = AUTO_MAP  # saved folders load with trust_remote_code=True (decaylab.model.folder)
        self.validate_design()

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoConfig") -> None:
        """No-op: saved folders carry decaylab's own ``auto_map``; transformers must not copy our source."""

    @property
    def decay_spec(self) -> DecaySpec:
        return DecaySpec(self.decay, self.decay_granularity, bool(self.share_decay_key), self.positional)

    def validate_design(self) -> None:
        """Raise ``ValueError`` naming every offending field."""
        problems = self.decay_spec.problems()
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_heads", "head_dim",
                     "intermediate_size", "decay_rank", "gate_rank"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name}={value!r} must be a positive integer")
        if self.positional == "rope" and self.head_dim % 2:
            problems.append(f"positional='rope' needs an even head_dim, got head_dim={self.head_dim}")
        problems += self.size_problems()
        from decaylab.ops import BACKENDS

        if self.backend not in BACKENDS:
            problems.append(f"backend={self.backend!r} must be one of {BACKENDS}")
        if problems:
            raise ValueError("DecayLinearConfig: " + "; ".join(problems))

    def size_problems(self) -> list[str]:
        """What is wrong with the sizes and numeric constants (beyond each integer being positive)."""
        problems = []
        sizes = (self.hidden_size, self.num_heads, self.head_dim)
        if all(isinstance(x, int) for x in sizes) and self.num_heads * self.head_dim != self.hidden_size:
            problems.append(f"hidden_size={self.hidden_size} must equal num_heads x head_dim = {self.num_heads} x "
                            f"{self.head_dim}; choose a hidden_size that is a multiple of head_dim")
        for name in ("rope_theta", "rms_norm_eps"):
            if not (_finite_number(getattr(self, name)) and getattr(self, name) > 0):
                problems.append(f"{name}={getattr(self, name)!r} must be a finite number > 0")
        if not (_finite_number(self.initializer_range) and self.initializer_range >= 0):
            problems.append(f"initializer_range={self.initializer_range!r} must be a finite number >= 0")
        return problems

    @property
    def decay_channels_per_head(self) -> int:
        """Decays per head: 1 (scalar), K (vector) or K/2 (vector with RoPE: one per rotated pair)."""
        if self.decay_granularity == "scalar":
            return 1
        return self.head_dim // 2 if self.positional == "rope" else self.head_dim


def _finite_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
