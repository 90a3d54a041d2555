"""Decay statistics of a trained model on real text, per layer and per head.

For every attention layer l, the log decay g [B, T, H, K'] (K' = 1 for scalar decay) that the
model computes on the batches is captured by a forward hook on the layer's decay module, so it is
exactly what the model uses (after any positional layer, lower bound or running state). Over the
real tokens only (attention mask True) and all decay channels of a head, we summarize

    decay      λ = exp(g) ∈ (0, 1]
    half-life  h = −ln 2 / g  (tokens after which λᵗ = 1/2; +∞ where g = 0)

by min, quartiles and max, per (layer, head) and pooled per layer. Quartiles are order statistics
(no interpolation), so for each statistic h = −ln 2 / ln λ holds between the two columns, and λ = 1
gives h = +∞ without an undefined ∞ − ∞.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from decaylab.atomic import write_text_atomic
from decaylab.device import autocast, model_device

STATS = ("min", "q25", "median", "q75", "max")
LN2 = math.log(2.0)


def half_life(log_decay: np.ndarray | torch.Tensor):
    """h = −ln 2 / g for log decay g ≤ 0, i.e. −ln 2 / ln λ (float64; +∞ where g = 0, λ = 1)."""
    if isinstance(log_decay, torch.Tensor):
        g = log_decay.double()
        return torch.where(g == 0, torch.inf, -LN2 / g)
    g = np.asarray(log_decay, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(g == 0, np.inf, -LN2 / g)


def summarize(values: np.ndarray) -> dict[str, float]:
    """min, q25, median, q75, max of a 1-D array (float64), each an order statistic (numpy's
    "inverted_cdf", no interpolation): so the decay and half-life rows are the same samples."""
    q = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0], method="inverted_cdf")
    return dict(zip(STATS, (float(x) for x in q)))


@dataclass
class DecayStats:
    """Tidy decay statistics of one model.

    ``heads``: one row per (layer, head); ``layers``: one row per layer pooling all its heads.
    Each row: ``model, layer, head`` ("all" in layer rows), ``tokens`` (real tokens seen), ``values``
    (decay values summarized: tokens × channels), and ``decay_<stat>``, ``half_life_<stat>`` for
    stat in min, q25, median, q75, max.
    """

    model: str
    granularity: str
    heads: list[dict] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def layer_values(self, key: str = "decay_median") -> list[float]:
        """``key`` of each layer row, in layer order."""
        return [row[key] for row in self.layers]

    def head_matrix(self, key: str = "decay_median") -> np.ndarray:
        """``key`` per (layer, head) as an [L, H] array."""
        L, H = self.num_layers, max(row["head"] for row in self.heads) + 1
        out = np.full((L, H), np.nan)
        for row in self.heads:
            out[row["layer"], row["head"]] = row[key]
        return out

    def rows(self) -> list[dict]:
        """All rows in layer order: each layer's pooled row, then its heads in order."""
        return sorted(self.layers + self.heads, key=lambda r: (r["layer"], -1 if r["head"] == "all" else r["head"]))


def _row(model: str, layer: int, head, g: np.ndarray, tokens: int) -> dict:
    row = {"model": model, "layer": layer, "head": head, "tokens": tokens, "values": int(g.size)}
    for name, values in (("decay", np.exp(g)), ("half_life", half_life(g))):
        row.update({f"{name}_{stat}": v for stat, v in summarize(values).items()})
    return row


def decay_modules(model: nn.Module) -> list[nn.Module]:
    """The attention layers of a decaylab model (each has a ``decay`` module); refuses other models."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    attns = [getattr(layer, "attn", None) for layer in (layers or [])]
    if not attns or not all(hasattr(a, "decay") for a in attns):
        raise ValueError(f"{type(model).__name__} has no decay linear-attention layers to analyse "
                         "(the softmax baseline has no decay)")
    return attns


@torch.no_grad()
def collect_log_decays(model: nn.Module, batches: Iterable, max_tokens: int | None = None,
                       progress: bool = True) -> list[np.ndarray]:
    """Per layer, the log decays the model computes on the real tokens of ``batches``: float32
    [H, N·K'] (N real tokens). A batch is ``input_ids`` [B, T] or ``(input_ids, attention_mask)``
    (mask [B, T]: 1 = real token, 0 = left padding); collection stops once ``max_tokens`` real
    tokens were seen."""
    attns = decay_modules(model)
    captured: list[list[torch.Tensor]] = [[] for _ in attns]
    current_mask: list[torch.Tensor | None] = [None]

    def hook(index: int, attn: nn.Module):
        def record(module, args, output):
            g = output[0]  # [B, T, channels] float32
            B, T = g.shape[:2]
            g = g.reshape(B, T, attn.H, -1)
            mask = current_mask[0]
            g = g[mask] if mask is not None else g.reshape(B * T, attn.H, -1)  # [N, H, K']
            captured[index].append(g.transpose(0, 1).reshape(attn.H, -1).float().cpu())
        return record

    handles = [a.decay.register_forward_hook(hook(i, a)) for i, a in enumerate(attns)]
    device, seen = model_device(model), 0
    model.eval()
    try:
        for batch in tqdm(batches, desc="decay stats", disable=not progress, leave=False):
            input_ids, mask = (batch, None) if isinstance(batch, torch.Tensor) else batch
            if max_tokens is not None and seen >= max_tokens:
                break
            current_mask[0] = None if mask is None else mask.bool().to(device)
            with autocast(device):
                model(input_ids=input_ids.to(device), attention_mask=None if mask is None else mask.to(device))
            seen += int(mask.sum()) if mask is not None else input_ids.numel()
    finally:
        for h in handles:
            h.remove()
    if seen == 0:
        raise ValueError("decay stats: no tokens in the batches")
    return [torch.cat(parts, dim=1).numpy() for parts in captured]


def decay_stats(model: nn.Module, batches: Iterable, name: str = "model", max_tokens: int | None = None,
                progress: bool = True) -> DecayStats:
    """:class:`DecayStats` of ``model`` on ``batches`` (see :func:`collect_log_decays`)."""
    per_layer = collect_log_decays(model, batches, max_tokens=max_tokens, progress=progress)
    stats = DecayStats(name, model.config.decay_granularity)
    for layer, (attn, g) in enumerate(zip(decay_modules(model), per_layer)):
        g = g.astype(np.float64)
        H = attn.H
        tokens = g.shape[1] // (attn.decay.ctx.channels // H)  # values per head = tokens × K'
        stats.layers.append(_row(name, layer, "all", g.reshape(-1), tokens))
        stats.heads.extend(_row(name, layer, h, g[h], tokens) for h in range(H))
    return stats


def write_csv(stats: DecayStats | list[DecayStats], path: str | Path) -> Path:
    """All rows of one or several models as CSV (``inf`` for infinite half-lives)."""
    rows = [r for s in (stats if isinstance(stats, list) else [stats]) for r in s.rows()]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, text.getvalue())
    return path


def _json_safe(value):
    return value if not isinstance(value, float) or math.isfinite(value) else str(value)


def to_dict(stats: DecayStats) -> dict:
    """A JSON-ready dict (non-finite floats as the strings "inf" / "nan")."""
    clean = lambda rows: [{k: _json_safe(v) for k, v in r.items()} for r in rows]
    return {"model": stats.model, "granularity": stats.granularity,
            "layers": clean(stats.layers), "heads": clean(stats.heads)}


def write_json(stats: DecayStats | list[DecayStats], path: str | Path) -> Path:
    """One model's :func:`to_dict`, or a list of them."""
    data = [to_dict(s) for s in stats] if isinstance(stats, list) else to_dict(stats)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
    return path
