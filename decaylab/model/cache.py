"""The constant-size recurrent cache used while decoding."""

from __future__ import annotations

import torch


class RecurrentCache:
    """Per layer: the float32 attention state [B, H, K, V] and, where used, the running decay
    state (LightNet, LSSP) and the TPE state; plus each sequence's count of real tokens so far
    (positions for RoPE / LRPE). Its size does not grow with the sequence."""

    is_compileable = False

    def __init__(self, num_layers: int):
        self.layers: list[dict[str, torch.Tensor]] = [{} for _ in range(num_layers)]
        self.positions: torch.Tensor | None = None  # [B] real tokens consumed per sequence
        self.seen_tokens = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Select batch rows (beam search)."""
        for layer in self.layers:
            for key, value in layer.items():
                layer[key] = value.index_select(0, beam_idx.to(value.device))
        if self.positions is not None:
            self.positions = self.positions.index_select(0, beam_idx.to(self.positions.device))
