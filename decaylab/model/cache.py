"""The constant-size recurrent cache used while decoding, as a transformers ``Cache``.

``generate()`` keeps the cache between steps under the output field that the installed transformers
release reads (:data:`CACHE_FIELD`: ``cache`` from 5.2x on, ``past_key_values`` before), asks it for
``get_seq_length()`` to feed only the new tokens, and reorders or selects its batch rows for beam
search and batched decoding.
"""

from __future__ import annotations

from typing import Callable

import torch
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast

#: The name under which transformers' model outputs (and so ``generate()``) carry the cache.
CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


class RecurrentCache(Cache):
    """Per layer, a dict of float32 states: the attention state ``"state"`` [B, H, K, V] and, where the
    design has them, the running decay state ``"decay"`` (LightNet, LSSP) and the TPE state ``"tpe"``;
    plus ``positions`` [B], each sequence's count of real tokens so far (positions for RoPE / LRPE).
    Its size does not grow with the sequence; it cannot be rolled back (:meth:`crop`)."""

    is_compileable = False
    is_croppable = False

    def __init__(self, num_layers: int):
        super().__init__(layers=[{} for _ in range(num_layers)])
        self.positions: torch.Tensor | None = None
        self.seen_tokens = 0  # columns consumed, padding included (what generate() compares with its inputs)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def get_max_length(self, layer_idx: int | None = None) -> int:
        return self.seen_tokens

    @property
    def is_linear(self) -> list[bool]:
        return [True] * len(self.layers)

    @property
    def is_sliding(self) -> list[bool]:
        return [False] * len(self.layers)

    @property
    def is_initialized(self) -> bool:
        return self.seen_tokens > 0

    @property
    def batch_size(self) -> int:
        return -1 if self.positions is None else self.positions.shape[0]

    def _map_rows(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Apply ``fn`` to every per-sequence tensor (batch dimension first)."""
        for layer in self.layers:
            for key, value in layer.items():
                layer[key] = fn(value)
        if self.positions is not None:
            self.positions = fn(self.positions)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Rows become ``beam_idx`` [B'] of the old rows (beam search)."""
        self._map_rows(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._map_rows(lambda t: t[indices.to(t.device)])

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._map_rows(lambda t: t.repeat_interleave(repeats, dim=0))

    def reset(self) -> None:
        for layer in self.layers:
            layer.clear()
        self.positions, self.seen_tokens = None, 0

    def crop(self, tokens_to_remove: int) -> None:
        """Only a no-op crop is possible: a recurrent state cannot forget tokens."""
        if tokens_to_remove != 0:
            raise ValueError("RecurrentCache cannot drop tokens (the state is a running sum); "
                             "decode again from the shorter prefix instead")

    def activate_past_recording(self) -> None:
        """Nothing to record: the cache is never rolled back (``is_croppable`` is False)."""
