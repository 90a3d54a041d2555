"""The operator as a model layer calls it: one token against a carried state, or a whole span.

    T = 1 with a state   decode_step: one recurrence step, the state updated in place
    otherwise            decay_linear_attention from the state (zeros when None)

Both sides compute S_t = exp(g_t) ⊙ S_{t−1} + k_t v_tᵀ, o_t = S_tᵀ q_t; the model's decays are ≤ 0 by
construction, so their values are not checked again.
"""

from __future__ import annotations

import torch

from decaylab.ops.api import decay_linear_attention, decode_step


def attend_with_state(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    state: torch.Tensor | None,
    keep_state: bool,
    cu_seqlens: torch.Tensor | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """o [B, T, H, V] and the state after the last token (None unless ``keep_state`` or decoding).

    q, k [B, T, H, K]; v [B, T, H, V]; log_decay [B, T, H] or [B, T, H, K]; state float32
    [B, H, K, V] or None; cu_seqlens as in :func:`~decaylab.ops.decay_linear_attention`.
    """
    if q.shape[1] == 1 and state is not None:
        o = decode_step(q[:, 0], k[:, 0], v[:, 0], log_decay[:, 0], state, backend=backend, check_values=False)
        return o[:, None], state
    return decay_linear_attention(
        q.contiguous(), k.contiguous(), v.contiguous(), log_decay.contiguous(), initial_state=state,
        output_final_state=keep_state, cu_seqlens=cu_seqlens, backend=backend, check_values=False,
    )
