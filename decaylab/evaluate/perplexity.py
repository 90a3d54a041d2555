"""Validation loss and perplexity: token-weighted mean next-token cross-entropy over a split.

    loss = (Σ_{b,t} −log p(y_{b,t} | x_{b,≤t})) / (number of target tokens),   ppl = exp(loss)

Batches come from ``TokenDataset.iter_eval(seq_len, batch_size, max_batches)`` as
``(inputs, targets)`` int64 ``[B, T]``; the last batch may be smaller, hence the token weighting.
On CUDA the forward pass runs under bf16 autocast; losses are always computed in float32.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm


def autocast(device: torch.device | str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, nothing elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def token_nll(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token negative log-likelihood −log p(targets[b, t] | inputs[b, ≤t]), float32 ``[B, T]``."""
    device = model_device(model)
    inputs, targets = inputs.to(device), targets.to(device)
    with autocast(device):
        logits = model(input_ids=inputs).logits
    nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    return nll.view_as(targets)


def perplexity_over(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    progress: bool = True, total: int | None = None) -> dict[str, float]:
    """Token-weighted loss over ``batches`` of ``(inputs, targets)``: ``{"loss", "ppl", "tokens"}``."""
    model.eval()
    total_nll, tokens = 0.0, 0
    for inputs, targets in tqdm(batches, desc="perplexity", total=total, disable=not progress, leave=False):
        nll = token_nll(model, inputs, targets)
        total_nll += nll.double().sum().item()
        tokens += nll.numel()
    if tokens == 0:
        raise ValueError("perplexity: no batches to evaluate")
    loss = total_nll / tokens
    return {"loss": loss, "ppl": math.exp(min(loss, 700.0)), "tokens": tokens}


def evaluate_perplexity(model: nn.Module, dataset, seq_len: int, batch_size: int = 8,
                        max_batches: int | None = None, progress: bool = True) -> dict[str, float]:
    """Validation loss/perplexity of ``model`` on ``dataset`` (a ``TokenDataset``) in windows of
    ``seq_len`` tokens: ``{"loss", "ppl", "tokens", "seq_len"}``."""
    batches = dataset.iter_eval(seq_len, batch_size, max_batches)
    total = max_batches
    if total is None and hasattr(dataset, "num_windows"):  # for the progress bar's ETA
        total = math.ceil(dataset.num_windows(seq_len) / batch_size)
    result = perplexity_over(model, batches, progress=progress, total=total)
    return {**result, "seq_len": seq_len}
