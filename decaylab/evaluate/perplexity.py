"""Validation loss and perplexity of a trained model over a split, and per-token losses.

    loss = (Σ_{b,t} −log p(y_{b,t} | x_{b,≤t})) / (number of target tokens),   ppl = exp(loss)

The loss is the training's own validation loss (:func:`decaylab.train.step.validation_loss`);
batches come from ``TokenDataset.iter_eval(seq_len, batch_size, max_batches)`` as
``(inputs, targets)`` int64 ``[B, T]``. On CUDA the forward pass runs under bf16 autocast
(:func:`decaylab.device.autocast`); losses are always computed in float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from decaylab.device import autocast, model_device
from decaylab.train.step import perplexity, validation_loss


@torch.no_grad()
def token_nll(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token negative log-likelihood −log p(targets[b, t] | inputs[b, ≤t]), float32 ``[B, T]``."""
    device = model_device(model)
    inputs, targets = inputs.to(device), targets.to(device)
    with autocast(device):
        logits = model(input_ids=inputs).logits
    nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    return nll.view_as(targets)


def evaluate_perplexity(model: nn.Module, dataset, seq_len: int, batch_size: int = 8,
                        max_batches: int | None = None, progress: bool = True) -> dict[str, float]:
    """Validation loss/perplexity of ``model`` on ``dataset`` (a ``TokenDataset``) in windows of
    ``seq_len`` tokens: ``{"loss", "ppl", "tokens", "seq_len"}``."""
    total = max_batches
    if total is None and hasattr(dataset, "num_windows"):  # for the progress bar's ETA
        total = math.ceil(dataset.num_windows(seq_len) / batch_size)
    batches = tqdm(dataset.iter_eval(seq_len, batch_size, max_batches), desc="perplexity", total=total,
                   disable=not progress, leave=False)
    model.eval()
    loss, tokens = validation_loss(model, batches, autocast=autocast(model_device(model)))
    return {"loss": loss, "ppl": perplexity(loss), "tokens": tokens, "seq_len": seq_len}
