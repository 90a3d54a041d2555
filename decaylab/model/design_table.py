"""The design table: every valid combination of the four axes (:func:`decaylab.decay.design_space`)
with the parameter count of its model and the median decay that model starts with."""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass

import torch

from decaylab.decay import DecaySpec, design_space
from decaylab.model.layers import DecayLinearAttention
from decaylab.model.modeling import init_module, layer_lower_bounds
from decaylab.model.presets import count_parameters, make_config

CSV_COLUMNS = ("decay", "decay_granularity", "share_decay_key", "positional", "parameters", "median_initial_decay")


@dataclass(frozen=True)
class DesignRow:
    spec: DecaySpec
    parameters: int
    median_initial_decay: float  # median of λ = exp(g) over layers, heads, channels and tokens


def initial_decays(config, tokens: int = 256, seed: int = 0) -> torch.Tensor:
    """λ = exp(g) of every layer of a freshly initialized model, for unit-RMS random inputs
    (what the pre-attention RMSNorm feeds the layer). Only the attention layers are built."""
    torch.manual_seed(seed)
    x = torch.randn(1, tokens, config.hidden_size)
    bounds = layer_lower_bounds(config)
    gammas = None if bounds is None else bounds()
    values = []
    with torch.no_grad():
        for layer in range(config.num_hidden_layers):
            attn = DecayLinearAttention(config, layer)
            attn.apply(functools.partial(init_module, std=config.initializer_range))
            g, _ = attn.decay_and_key(x, lower_bound=gammas)
            values.append(g.exp().flatten())
    return torch.cat(values)


def design_rows(size: str = "tiny") -> list[DesignRow]:
    """One row per valid combination of the four axes, for the model preset ``size``."""
    rows = []
    for spec in design_space():
        config = make_config(size, decay=spec.decay, decay_granularity=spec.decay_granularity,
                             share_decay_key=spec.share_decay_key, positional=spec.positional)
        rows.append(DesignRow(spec, count_parameters(config), initial_decays(config).median().item()))
    return rows


def format_table(rows: list[DesignRow]) -> str:
    """The rows as an aligned text table, with the number of combinations on its last line."""
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


def table_csv(rows: list[DesignRow]) -> str:
    """The rows as CSV text with the header :data:`CSV_COLUMNS`."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        s = r.spec
        writer.writerow([s.decay, s.decay_granularity, s.share_decay_key, s.positional, r.parameters,
                         f"{r.median_initial_decay:.6f}"])
    return out.getvalue()
