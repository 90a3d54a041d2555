"""One optimizer step, and the validation loss: the arithmetic of training, shared by the
training loop, the evaluation of a trained model and the recall probe.

For optimizer step ``s`` (0-based), every process ``r`` of ``W`` takes ``A`` micro-batches;
micro-batch ``m`` is shard ``m·W + r`` of the global batch of step ``s``. The step is

    loss(s) = 1/(A·W) Σ_{r,m} CE(model(x_{s,m,r}), y_{s,m,r})
    g       = clip(∇loss(s), grad_clip)
    θ      ← AdamW(θ, g, lr(s))

The validation loss is token-weighted over batches (the last one may be smaller):

    val_loss = Σ_{b,t} −log p(y_{b,t} | x_{b,≤t}) / (number of target tokens),   ppl = exp(val_loss)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from decaylab.device import model_device
from decaylab.train.config import TrainConfig
from decaylab.train.distributed import Runtime, all_reduce_sum, gradient_sync
from decaylab.train.optim import learning_rate, set_learning_rate


def mean_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of ``model`` on ``inputs`` [B, T] against ``targets`` [B, T]
    (−100 = no target; float32, without full-vocabulary logits: :func:`decaylab.model.loss.causal_lm_head`)."""
    return model(input_ids=inputs, shift_labels=targets, skip_logits=True).loss


def perplexity(loss: float) -> float:
    """exp(loss), capped before float overflow."""
    return math.exp(min(loss, 700.0))


def single_process(model: nn.Module) -> Runtime:
    """The runtime of one process on ``model``'s device."""
    return Runtime(0, 1, 0, model_device(model), owns_process_group=False)


def forward_backward(model: nn.Module, data: Any, step: int, cfg: TrainConfig, rt: Runtime,
                     autocast: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Accumulate the gradient of the global-batch loss of ``step`` and clip it.

    ``data.batch(step, batch_size, seq_len, seed=, rank=, world_size=)`` gives a micro-batch
    ``(inputs, targets)``. Returns (loss averaged over the global batch, gradient norm before
    clipping) as 0-d tensors on the device, so nothing here waits for the GPU."""
    shards = cfg.grad_accum * rt.world_size
    total = torch.zeros((), device=rt.device)
    for micro in range(cfg.grad_accum):
        inputs, targets = data.batch(step, cfg.micro_batch_size, cfg.seq_len, seed=cfg.seed,
                                     rank=micro * rt.world_size + rt.rank, world_size=shards)
        inputs, targets = _to_device(inputs, rt.device), _to_device(targets, rt.device)
        with gradient_sync(model, enabled=micro == cfg.grad_accum - 1):
            torch.compiler.cudagraph_mark_step_begin()  # a new step for CUDA graphs (reduce-overhead)
            with autocast:
                loss = mean_loss(model, inputs, targets) / cfg.grad_accum
            loss.backward()
        total += loss.detach()
    loss = all_reduce_sum(total) / rt.world_size
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf)
    if hasattr(grad_norm, "full_tensor"):  # a DTensor under FSDP2
        grad_norm = grad_norm.full_tensor()
    return loss, grad_norm


def _to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``batch`` on ``device``; to a GPU through pinned memory, so the copy does not wait for the GPU."""
    if device.type != "cuda":
        return batch.to(device)
    return batch.pin_memory().to(device, non_blocking=True)


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, data: Any, step: int, cfg: TrainConfig,
                   rt: Runtime, autocast: Any) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Optimizer step ``step``: set the learning rate of ``cfg``'s schedule, accumulate and clip the
    gradient (:func:`forward_backward`) and update the parameters, unless the loss or the gradient
    norm is not finite (the parameters and optimizer state are then left as they were; the caller
    decides). A fused AdamW skips such an update on the device (its ``found_inf`` input, as under
    ``torch.amp.GradScaler``), so a GPU step never waits for the GPU; other optimizers read the check back.

    Returns (loss, gradient norm before clipping, learning rate); the first two as 0-d device tensors."""
    lr = learning_rate(step, cfg)
    set_learning_rate(optimizer, lr)
    loss, grad_norm = forward_backward(model, data, step, cfg, rt, autocast)
    finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
    if optimizer.defaults.get("fused"):
        optimizer.found_inf = (~finite).float()
        optimizer.step()
        del optimizer.found_inf
    elif finite:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss, grad_norm, lr


@torch.no_grad()
def validation_loss(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    rt: Runtime | None = None, autocast: Any = contextlib.nullcontext()) -> tuple[float, int]:
    """(token-weighted mean loss, target tokens) of ``model`` over ``batches`` of ``(inputs, targets)``.

    With ``rt`` (several processes), processes take the batches in turn; every process runs the
    same number of forward passes (FSDP2 and DDP communicate inside forward), a process with no
    batch left in the last round repeating one with weight zero. Without it, one process on the
    model's device. The model's training mode is restored afterwards."""
    rt = rt or single_process(model)
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=rt.device)  # (Σ token losses, tokens)
    batches = iter(batches)
    while group := [b for _, b in zip(range(rt.world_size), batches)]:
        mine = rt.rank < len(group)
        inputs, targets = (group[rt.rank] if mine else group[0])
        inputs, targets = inputs.to(rt.device), targets.to(rt.device)
        torch.compiler.cudagraph_mark_step_begin()
        with autocast:
            loss = mean_loss(model, inputs, targets)
        if mine:
            sums[0] += loss.double() * targets.numel()
            sums[1] += targets.numel()
    all_reduce_sum(sums)
    model.train(was_training)
    tokens = int(sums[1].item())
    if tokens == 0:
        raise ValueError("validation loss: no batches to evaluate")
    return (sums[0] / sums[1]).item(), tokens


def evaluate(model: nn.Module, data: Any, seq_len: int, batch_size: int, max_batches: int | None = None,
             rt: Runtime | None = None, autocast: Any = contextlib.nullcontext()) -> dict[str, float]:
    """``{"val_loss", "val_ppl", "val_tokens"}`` of :func:`validation_loss` over ``data.iter_eval``
    windows (the first ``max_batches`` batches of the split; ``val_tokens`` says how many targets)."""
    val_loss, tokens = validation_loss(model, data.iter_eval(seq_len, batch_size, max_batches), rt, autocast)
    return {"val_loss": val_loss, "val_ppl": perplexity(val_loss), "val_tokens": tokens}
