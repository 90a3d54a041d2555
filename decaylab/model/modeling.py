"""The causal language model: embeddings → decay linear-attention blocks → RMSNorm → LM head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.utils import ModelOutput

from decaylab.decay import Decay, LayerLowerBounds
from decaylab.model.cache import RecurrentCache
from decaylab.model.config import DecayLinearConfig
from decaylab.model.loss import causal_lm_head
from decaylab.model.layers import DecayLinearBlock
from decaylab.positional import ToeplitzPositional


@dataclass
class DecayLinearOutput(ModelOutput):
    """Logits [B, T, vocab] (float32), optional loss, and the recurrent cache."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: RecurrentCache | None = None
    hidden_states: torch.Tensor | None = None


def token_positions(mask: torch.Tensor | None, T: int, start: torch.Tensor, cu_seqlens: torch.Tensor | None):
    """Position of every token [B, T]: real tokens counted from ``start`` [B]; packed sequences restart at 0."""
    if cu_seqlens is not None:
        idx = torch.arange(T, device=cu_seqlens.device)
        starts = cu_seqlens[torch.searchsorted(cu_seqlens, idx, right=True) - 1]
        return (idx - starts)[None]
    if mask is None:
        return start[:, None] + torch.arange(T, device=start.device)
    return start[:, None] + (mask.long().cumsum(dim=1) - 1).clamp_min(0)


@torch.no_grad()
def init_module(module: nn.Module, std: float) -> None:
    """Normal(0, std) for projections and embeddings, ones for RMSNorm; each decay owns its init."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
    elif isinstance(module, nn.RMSNorm):
        nn.init.ones_(module.weight)
    elif isinstance(module, (Decay, LayerLowerBounds, ToeplitzPositional)):
        module.reset_parameters()


class DecayLinearPreTrainedModel(PreTrainedModel):
    config_class = DecayLinearConfig
    base_model_prefix = "model"
    _no_split_modules = ["DecayLinearBlock"]
    _is_stateful = True
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        init_module(module, self.config.initializer_range)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the model brings its own constant-size RecurrentCache


class DecayLinearModel(DecayLinearPreTrainedModel):
    def __init__(self, config: DecayLinearConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecayLinearBlock(config, i) for i in range(config.num_hidden_layers))
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        needs_bound = config.decay_spec.decay_class.needs_lower_bound
        channels = config.num_heads * config.decay_channels_per_head
        self.lower_bounds = LayerLowerBounds(config.num_hidden_layers, channels) if needs_bound else None
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids, attention_mask=None, cache: RecurrentCache | None = None, cu_seqlens=None):
        """Hidden states [B, T, d]. ``attention_mask`` [B, ≥T] (1 = token, 0 = left padding): only its
        last T columns are used. ``cache`` is updated in place."""
        B, T = input_ids.shape
        if T == 0:
            raise ValueError(f"input_ids has no tokens (shape {tuple(input_ids.shape)}); pass at least one per sequence")
        mask = None
        if attention_mask is not None:
            mask = attention_mask[:, -T:].bool()
            if bool(mask.all()):
                mask = None
        if cu_seqlens is not None and (cache is not None or B != 1):
            raise ValueError("cu_seqlens packs sequences along T with batch size 1 and cannot be used with a cache")
        start = input_ids.new_zeros(B) if cache is None or cache.positions is None else cache.positions
        positions = token_positions(mask, T, start, cu_seqlens)
        gammas = None if self.lower_bounds is None else self.lower_bounds()
        x = self.embed_tokens(input_ids)
        for i, layer in enumerate(self.layers):
            x = layer(x, positions, mask, None if cache is None else cache.layers[i], gammas, cu_seqlens)
        if cache is not None:
            cache.positions = start + (T if mask is None else mask.long().sum(dim=1))
            cache.seen_tokens += T
        return self.norm(x)


class DecayLinearForCausalLM(DecayLinearPreTrainedModel, GenerationMixin):
    """Causal LM; ``generate()`` decodes with a constant-size :class:`RecurrentCache`."""

    def __init__(self, config: DecayLinearConfig):
        super().__init__(config)
        self.model = DecayLinearModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        cache: RecurrentCache | None = None,
        use_cache: bool | None = None,
        cu_seqlens: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        shift_labels: torch.LongTensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        skip_logits: bool | None = None,
        **unused,
    ) -> DecayLinearOutput:
        """``labels`` as in transformers (shifted inside; -100 ignored), or ``shift_labels`` already
        aligned with the positions; the loss never forms full float32 logits, and in training mode
        with a loss no logits are returned (``skip_logits``; see :func:`decaylab.model.loss.causal_lm_head`).
        With ``use_cache`` a new cache is created when none is passed, and returned (older
        transformers releases pass it back as ``past_key_values``)."""
        cache = cache if cache is not None else unused.get("past_key_values")
        if use_cache and cache is None:
            cache = RecurrentCache(self.config.num_hidden_layers)
        hidden = self.model(input_ids, attention_mask, cache, cu_seqlens)
        loss, logits = causal_lm_head(hidden, self.lm_head, labels, shift_labels, num_items_in_batch,
                                      logits_to_keep, skip_logits)
        return DecayLinearOutput(loss=loss, logits=logits, cache=cache)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, cache=None, use_cache=True, **unused):
        """Feed only the new token once the cache holds the prompt."""
        cache = cache if cache is not None else unused.get("past_key_values")
        if cache is not None and cache.seen_tokens > 0:
            input_ids = input_ids[:, -1:]
        return {"input_ids": input_ids, "attention_mask": attention_mask, "cache": cache, "use_cache": use_cache}

    def _reorder_cache(self, cache: RecurrentCache, beam_idx: torch.LongTensor) -> RecurrentCache:
        cache.reorder_cache(beam_idx)
        return cache
