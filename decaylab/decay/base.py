"""The interface every decay parameterization implements, and the registry of them by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn


@dataclass(frozen=True)
class DecayContext:
    """What a decay module may know about where it sits.

    ``channels`` is the number of decay values per token: H (scalar granularity) or H·K' (vector
    granularity, K' = K, or K/2 when RoPE ties the decay within each rotated pair).
    """

    channels: int
    num_heads: int
    layer_idx: int
    num_layers: int


class Decay(nn.Module):
    """Maps the decay projection f_t ∈ R^channels to a log decay g_t ≤ 0 (float32).

    Subclasses set the class flags below, document their formula, and own their init.
    ``forward(f, state, mask, **inputs)`` returns ``(log_decay [B, T, channels], new_state)``; ``state`` is
    only used by position-dependent decays (``stateful``) and is None otherwise. ``inputs`` holds only
    what the class declares it needs (see :meth:`inputs`), as keyword arguments of its ``log_decay``:

        needs_lower_bound  lower_bound = γ [L, channels], the model's per-layer lower bounds (HGRN2)
        needs_batch_shape  batch_shape = (B, T), for a decay without a projection to take it from (TNL)
    """

    name: ClassVar[str]
    uses_projection: ClassVar[bool] = True  # needs f_t = x W_f (False: fixed or learned constants)
    has_key_form: ClassVar[bool] = True  # can be shared with the key projection (axis 2)
    supports_vector: ClassVar[bool] = True
    stateful: ClassVar[bool] = False  # carries a running quantity across positions
    needs_lower_bound: ClassVar[bool] = False
    needs_batch_shape: ClassVar[bool] = False

    def __init__(self, ctx: DecayContext):
        super().__init__()
        self.ctx = ctx

    def inputs(self, lower_bound: torch.Tensor | None, batch_shape: tuple[int, int]) -> dict:
        """Of what the model offers, the keyword arguments this decay declares (its ``needs_*`` flags)."""
        inputs = {}
        if self.needs_lower_bound:
            inputs["lower_bound"] = lower_bound
        if self.needs_batch_shape:
            inputs["batch_shape"] = batch_shape
        return inputs

    def log_decay(self, f: torch.Tensor | None) -> torch.Tensor:
        """Stateless decays: g_t from f_t alone (and the declared inputs). f: [B, T, channels] float32."""
        raise NotImplementedError

    def forward(
        self,
        f: torch.Tensor | None,
        state: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        **inputs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log decay [B, T, channels] (0 where ``mask`` [B, T] is False) and the carried state."""
        g = self.log_decay(None if f is None else f.float(), **inputs)
        if mask is not None:
            g = g.masked_fill(~mask[..., None], 0.0)
        return g, None

    def shared_key(self, f: torch.Tensor, log_decay: torch.Tensor) -> torch.Tensor:
        """The key when it shares parameters with the decay: k = 1 − λ = −expm1(g)."""
        return -torch.expm1(log_decay)

    def reset_parameters(self) -> None:
        """(Re-)initialize this decay's own parameters; called by the model's weight init."""


DECAYS: dict[str, type[Decay]] = {}


def register(cls: type[Decay]) -> type[Decay]:
    """Class decorator adding a parameterization to :data:`DECAYS` under ``cls.name``."""
    if cls.name in DECAYS:
        raise ValueError(f"decay {cls.name!r} is registered twice")
    DECAYS[cls.name] = cls
    return cls
