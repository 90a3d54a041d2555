"""The table of every valid design-space combination: parameters and the decay it starts with."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from decaylab.decay import DecaySpec, LayerLowerBounds, design_space
from decaylab.model import count_parameters, make_config
from decaylab.model.layers import DecayLinearAttention
from decaylab.model.modeling import init_module


@dataclass(frozen=True)
class SpaceRow:
    spec: DecaySpec
    parameters: int
    median_initial_decay: float  # median of λ = exp(g) over layers, heads, channels and tokens


def initial_decays(config, tokens: int = 256, seed: int = 0) -> torch.Tensor:
    """λ = exp(g) of every layer of a freshly initialized model, for unit-RMS random inputs
    (what the pre-attention RMSNorm feeds the layer). Only the attention layers are built."""
    torch.manual_seed(seed)
    x = torch.randn(1, tokens, config.hidden_size)
    bounds = None
    if config.decay_spec.decay_class.needs_lower_bound:
        bounds = LayerLowerBounds(config.num_hidden_layers, config.num_heads * config.decay_channels_per_head)()
    values = []
    with torch.no_grad():
        for layer in range(config.num_hidden_layers):
            attn = DecayLinearAttention(config, layer)
            attn.apply(functools.partial(init_module, std=config.initializer_range))
            g, _ = attn.decay_and_key(x, lower_bound=bounds)
            values.append(g.exp().flatten())
    return torch.cat(values)


def space_table(size: str = "tiny") -> list[SpaceRow]:
    """One row per valid combination of the four axes at model size ``size``."""
    rows = []
    for spec in design_space():
        config = make_config(size, decay=spec.decay, decay_granularity=spec.decay_granularity,
                             share_decay_key=spec.share_decay_key, positional=spec.positional)
        rows.append(SpaceRow(spec, count_parameters(config), initial_decays(config).median().item()))
    return rows


def format_table(rows: list[SpaceRow]) -> str:
    header = f"{'decay':<22}{'granularity':<13}{'shared key':<12}{'positional':<11}{'parameters':>14}{'median λ₀':>11}"
    lines = [header, "-" * len(header)]
    for r in rows:
        s = r.spec
        lines.append(
            f"{s.decay:<22}{s.decay_granularity:<13}{'yes' if s.share_decay_key else 'no':<12}{s.positional:<11}"
            f"{r.parameters:>14,}{r.median_initial_decay:>11.4f}"
        )
    lines.append(f"{len(rows)} valid combinations")
    return "\n".join(lines)
