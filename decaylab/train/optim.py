"""AdamW with weight decay on matrices only, and the learning-rate schedules.

A schedule is a pure function of the optimizer step, so the "scheduler state" of a checkpoint
is the step itself and a resumed run sees exactly the learning rates of an uninterrupted one.
Step ``s`` counts from 0 (the first optimizer step) to ``total - 1``.
"""

from __future__ import annotations

import math

import torch

from decaylab.train.config import TrainConfig


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW(β1, β2) with two groups: weight decay on parameters with >= 2 dimensions (matrices,
    embeddings), none on vectors and scalars (norm gains, biases, decay offsets); the fused
    implementation on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    fused = bool(params) and all(p.is_cuda for p in params)  # one kernel per step on a GPU
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused or None)


def warmup_cosine(step: int, *, peak: float, minimum: float, warmup: int, total: int) -> float:
    """Linear warmup to ``peak`` over ``warmup`` steps, then a half cosine to ``minimum`` at ``total``.

        s < W:  peak · (s + 1) / W
        s ≥ W:  minimum + (peak − minimum) · ½ (1 + cos(π (s − W) / (total − W)))
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return minimum + (peak - minimum) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def warmup_stable_decay(step: int, *, peak: float, minimum: float, warmup: int, total: int,
                        decay_fraction: float) -> float:
    """Warmup-stable-decay: linear warmup, constant ``peak``, then a linear decay to ``minimum``
    over the last ``D = round(decay_fraction · total)`` steps.

        s < W:           peak · (s + 1) / W
        W ≤ s < total−D: peak
        s ≥ total−D:     peak + (minimum − peak) · (s − (total − D)) / D
    """
    decay_steps = round(decay_fraction * total)
    decay_start = total - decay_steps
    if step < warmup:
        return peak * (step + 1) / warmup
    if step < decay_start or decay_steps == 0:
        return peak
    return peak + (minimum - peak) * min(1.0, (step - decay_start) / decay_steps)


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """The learning rate of optimizer step ``step`` under ``cfg.schedule``."""
    shape = dict(peak=cfg.lr, minimum=cfg.lr * cfg.min_lr_ratio, warmup=cfg.warmup_steps, total=cfg.steps)
    if cfg.schedule == "cosine":
        return warmup_cosine(step, **shape)
    return warmup_stable_decay(step, **shape, decay_fraction=cfg.wsd_decay_fraction)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set ``lr`` on every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
