"""Length extrapolation: loss and perplexity by position, on sequences longer than training.

A model trained on L tokens is run on windows of ``factor · L`` tokens. Target positions
t ∈ [0, factor·L) are cut into buckets [s, s + w) (w = ``bucket_size``, default L, so the buckets
are [0, L), [L, 2L), …). For bucket j, over all windows b:

    loss_j = Σ_b Σ_{t ∈ bucket j} nll[b, t] / (number of those tokens),   ppl_j = exp(loss_j)

The buckets partition the positions, so the token-weighted mean of the loss_j is the overall loss.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from decaylab.evaluate.perplexity import token_nll
from decaylab.train.step import perplexity


def extrapolation_table(model: nn.Module, dataset, train_len: int, factor: int = 4, batch_size: int = 4,
                        max_batches: int | None = None, bucket_size: int | None = None,
                        progress: bool = True) -> dict:
    """Loss/ppl per position bucket on ``dataset.iter_eval(factor · train_len, …)`` windows.

    Returns ``{"train_len", "eval_len", "buckets": [{"start", "end", "tokens", "loss", "ppl"}, …],
    "overall": {"loss", "ppl", "tokens"}}`` with buckets in position order.
    """
    if train_len < 1 or factor < 1:
        raise ValueError(f"extrapolation needs train_len ≥ 1 and factor ≥ 1, got {train_len=}, {factor=}")
    eval_len = factor * train_len
    width = bucket_size or train_len
    edges = list(range(0, eval_len, width)) + [eval_len]
    nll_sum = torch.zeros(eval_len, dtype=torch.float64)  # Σ over windows, per position
    windows = 0
    model.eval()
    batches = dataset.iter_eval(eval_len, batch_size, max_batches)
    for inputs, targets in tqdm(batches, desc=f"extrapolation ×{factor}", total=max_batches,
                                disable=not progress, leave=False):
        nll_sum += token_nll(model, inputs, targets).double().sum(dim=0).cpu()
        windows += inputs.shape[0]
    if windows == 0:
        raise ValueError("extrapolation: no batches to evaluate")
    buckets = [_row(nll_sum[a:b].sum().item(), (b - a) * windows, start=a, end=b)
               for a, b in itertools.pairwise(edges)]
    overall = _row(nll_sum.sum().item(), eval_len * windows)
    return {"train_len": train_len, "eval_len": eval_len, "buckets": buckets, "overall": overall}


def _row(nll: float, tokens: int, **where) -> dict:
    loss = nll / tokens
    return {**where, "tokens": tokens, "loss": loss, "ppl": perplexity(loss)}


def plot_extrapolation(tables: dict[str, dict], path: str | Path, metric: str = "ppl"):
    """One line per model (label → :func:`extrapolation_table` result): ``metric`` per bucket against
    the bucket's centre in units of the training length; a dashed line marks the training length.
    Writes a PNG to ``path`` and returns the matplotlib Figure."""
    from decaylab.figures import new_figure, save_figure

    fig, ax = new_figure()
    for label, table in tables.items():
        L = table["train_len"]
        x = [(b["start"] + b["end"]) / 2 / L for b in table["buckets"]]
        ax.plot(x, [b[metric] for b in table["buckets"]], marker="o", label=label)
    ax.axvline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_xlabel("position / training length")
    ax.set_ylabel("perplexity" if metric == "ppl" else metric)
    ax.set_title("Length extrapolation")
    ax.legend(fontsize="small")
    save_figure(fig, path)
    return fig
