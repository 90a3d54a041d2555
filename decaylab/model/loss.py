"""Next-token cross-entropy straight from hidden states, without full-vocabulary float32 logits.

For hidden states h [N, d], the LM head W [V, d] and targets y [N] (``ignore_index`` = no target):

    z_n   = W h_n                        logits, formed one block of rows at a time
    L     = Σ_{n: y_n valid} (logsumexp(z_n) − z_{n, y_n})
    ∂L/∂z_n = softmax(z_n) − onehot(y_n)  (zero for ignored rows)
    ∂L/∂h = (∂L/∂z) W,   ∂L/∂W = (∂L/∂z)ᵀ h

The forward computes the loss and both gradients block by block (logits in float32, as
``F.cross_entropy(logits.float(), …)`` does), so only one block of [rows, V] logits exists at a
time (float64 for float64 inputs); the backward scales the stored gradients by the incoming one. Under autocast the two
products run in the autocast dtype, as a plain ``lm_head`` under autocast would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Bytes of float32 logits one block may hold (about 256 MiB).
BLOCK_BYTES = 1 << 28


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(hidden.device.type):
        return torch.get_autocast_dtype(hidden.device.type)
    return torch.promote_types(hidden.dtype, weight.dtype)


class _LinearCrossEntropy(torch.autograd.Function):
    """The forward is written without in-place updates and takes which gradients to form as
    arguments: under ``torch.compile`` on CUDA, writes into a preallocated gradient buffer were
    lost (every gradient of a compiled step came out zero)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index, block_rows, needs_h, needs_w):
        dtype = _compute_dtype(hidden, weight)
        h, w = hidden.to(dtype), weight.to(dtype)
        acc = torch.promote_types(dtype, torch.float32)  # logits, loss and the weight gradient
        grad_h_blocks, grad_w = [], None
        total = torch.zeros((), dtype=acc, device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            for a in range(0, h.shape[0], block_rows):
                h_blk, y = h[a:a + block_rows], targets[a:a + block_rows]
                logits = (h_blk @ w.T).to(acc)
                valid = y != ignore_index
                y_safe = torch.where(valid, y, 0)
                lse = torch.logsumexp(logits, dim=-1)
                picked = logits.gather(1, y_safe[:, None])[:, 0]
                block_loss = torch.where(valid, lse - picked, 0.0).sum()
                total = total + block_loss
                if needs_h or needs_w:
                    grad_z = torch.exp(logits - lse[:, None]).scatter_add(
                        1, y_safe[:, None], -torch.ones_like(lse)[:, None])
                    grad_z = (grad_z * valid[:, None]).to(dtype)
                    if needs_h:
                        grad_h_blocks.append(grad_z @ w)
                    if needs_w:
                        block_grad_w = (grad_z.T @ h_blk).to(acc)
                        grad_w = block_grad_w if grad_w is None else grad_w + block_grad_w
        grad_h = torch.cat(grad_h_blocks).to(hidden.dtype) if needs_h else None
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_total):
        grad_h, grad_w = ctx.saved_tensors
        dh = None if grad_h is None else grad_h * grad_total.to(grad_h.dtype)
        dw = None if grad_w is None else (grad_w * grad_total).to(ctx.weight_dtype)
        return dh, dw, None, None, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         ignore_index: int = -100, block_rows: int | None = None) -> torch.Tensor:
    """Σ over valid rows of CE(W h_n, y_n): hidden [N, d], weight [V, d], targets [N] -> scalar
    (float32; float64 for float64 inputs).

    Equal (value and gradients) to ``F.cross_entropy((hidden @ weight.T).float(), targets,
    ignore_index=ignore_index, reduction="sum")``; ``block_rows`` rows of logits at a time
    (default: as many as fit in :data:`BLOCK_BYTES`)."""
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"linear_cross_entropy: hidden must be [N, d] and weight [V, d], got "
                         f"{tuple(hidden.shape)} and {tuple(weight.shape)}")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"linear_cross_entropy: targets must be [N] = [{hidden.shape[0]}], got {tuple(targets.shape)}")
    rows = block_rows or max(1, BLOCK_BYTES // (4 * weight.shape[0]))
    grad = torch.is_grad_enabled()
    return _LinearCrossEntropy.apply(hidden, weight, targets, ignore_index, rows,
                                     grad and hidden.requires_grad, grad and weight.requires_grad)


def shifted_targets(labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Targets of every position [B, T] from transformers-style ``labels`` [B, T]: position t predicts
    labels[t + 1]; the last position has none."""
    return F.pad(labels[:, 1:], (0, 1), value=ignore_index)


def causal_lm_head(hidden: torch.Tensor, lm_head: torch.nn.Linear, labels: torch.Tensor | None = None,
                   shift_labels: torch.Tensor | None = None, num_items_in_batch: int | torch.Tensor | None = None,
                   logits_to_keep: int = 0, skip_logits: bool | None = None,
                   ignore_index: int = -100) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(loss, logits) of a causal LM from its final hidden states [B, T, d], with transformers' loss
    semantics: ``labels`` [B, T] are shifted inside (``shift_labels`` are targets already aligned
    with the positions), ``ignore_index`` positions are skipped, and the summed loss is divided by
    ``num_items_in_batch`` when given (gradient accumulation) or else by the number of targets.

    The loss never forms full float32 logits (:func:`linear_cross_entropy`). Logits [B, T', V]
    (float32; the last ``logits_to_keep`` positions when it is > 0) are computed unless
    ``skip_logits``, which defaults to True in training mode when a loss is asked for."""
    targets = shift_labels if shift_labels is not None else (
        None if labels is None else shifted_targets(labels, ignore_index))
    loss = None
    if targets is not None:
        total = linear_cross_entropy(hidden.flatten(0, 1), lm_head.weight, targets.flatten(), ignore_index)
        count = num_items_in_batch if num_items_in_batch is not None else (targets != ignore_index).sum()
        loss = total / (count.to(total.device) if torch.is_tensor(count) else count)
    if skip_logits is None:
        skip_logits = targets is not None and lm_head.training
    logits = None
    if not skip_logits:
        kept = hidden[:, -logits_to_keep:] if logits_to_keep else hidden
        logits = lm_head(kept).float()
    return loss, logits
