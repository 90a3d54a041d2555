"""Packed variable-length sequences for backends that process one dense sequence at a time."""

from __future__ import annotations

from typing import Callable

import torch

DenseFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def per_sequence(dense: DenseFn, q, k, v, log_decay, scale, initial_state, output_final_state, cu_seqlens):
    """Run ``dense(q, k, v, g, scale, h0) -> (o, final_state)`` on each packed sequence of
    ``cu_seqlens`` (B = 1) and concatenate: o along T, final states along N."""
    bounds = cu_seqlens.tolist()
    outs, finals = [], []
    for n, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        h0 = None if initial_state is None else initial_state[n : n + 1]
        o, final = dense(q[:, start:end], k[:, start:end], v[:, start:end], log_decay[:, start:end], scale, h0)
        outs.append(o)
        finals.append(final)
    return torch.cat(outs, dim=1), (torch.cat(finals) if output_final_state else None)
