"""The causal language model: embeddings → decay linear-attention blocks → RMSNorm → LM head."""

from __future__ import annotations

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from decaylab.decay import Decay, LayerLowerBounds
from decaylab.model.cache import CACHE_FIELD, RecurrentCache
from decaylab.model.config import DecayLinearConfig
from decaylab.model.folder import write_remote_code
from decaylab.model.loss import causal_lm_head
from decaylab.model.layers import DecayLinearBlock
from decaylab.positional import ToeplitzPositional


def token_positions(mask: torch.Tensor | None, T: int, start: torch.Tensor, cu_seqlens: torch.Tensor | None):
    """Position of every token [B, T]: real tokens counted from ``start`` [B]; packed sequences restart at 0."""
    if cu_seqlens is not None:
        idx = torch.arange(T, device=cu_seqlens.device)
        starts = cu_seqlens[torch.searchsorted(cu_seqlens, idx, right=True) - 1]
        return (idx - starts)[None]
    if mask is None:
        return start[:, None] + torch.arange(T, device=start.device)
    return start[:, None] + (mask.long().cumsum(dim=1) - 1).clamp_min(0)


def layer_lower_bounds(config: DecayLinearConfig) -> LayerLowerBounds | None:
    """The model's per-layer lower bounds γ [L, channels] when its decay declares ``needs_lower_bound``
    (HGRN2), else None; built here only, for the model and for any tool that runs its layers alone."""
    if not config.decay_spec.decay_class.needs_lower_bound:
        return None
    return LayerLowerBounds(config.num_hidden_layers, config.num_heads * config.decay_channels_per_head)


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
    supports_gradient_checkpointing = True

    def _init_weights(self, module: nn.Module) -> None:
        init_module(module, self.config.initializer_range)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the model brings its own constant-size RecurrentCache

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoModel") -> None:
        """No-op: saved folders carry decaylab's own ``auto_map``; transformers must not copy our source."""

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """transformers' ``save_pretrained``, plus the remote-code file the config's ``auto_map`` names."""
        super().save_pretrained(save_directory, *args, **kwargs)
        write_remote_code(save_directory)


class DecayLinearModel(DecayLinearPreTrainedModel):
    def __init__(self, config: DecayLinearConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecayLinearBlock(config, i) for i in range(config.num_hidden_layers))
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.lower_bounds = layer_lower_bounds(config)
        self.gradient_checkpointing = False  # set by gradient_checkpointing_enable()
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, cache: RecurrentCache | None = None, cu_seqlens=None,
                inputs_embeds=None, output_hidden_states: bool | None = None) -> BaseModelOutputWithPast:
        """Final hidden states [B, T, d] (``last_hidden_state``) from ``input_ids`` [B, T] or ``inputs_embeds``
        [B, T, d]; with ``output_hidden_states`` also the embeddings and every block's output (L + 1 tensors,
        the last one after the final RMSNorm, as in transformers). ``attention_mask`` [B, ≥T] (1 = token,
        0 = left padding): only its last T columns are used. ``cache`` is updated in place."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        B, T = x.shape[:2]
        if T == 0:
            raise ValueError(f"{'input_ids' if inputs_embeds is None else 'inputs_embeds'} has no tokens (shape "
                             f"{tuple(x.shape[:2])}); pass at least one per sequence")
        mask = None
        if attention_mask is not None:
            mask = attention_mask[:, -T:].bool()
            if bool(mask.all()):
                mask = None
        if cu_seqlens is not None and (cache is not None or B != 1):
            raise ValueError("cu_seqlens packs sequences along T with batch size 1 and cannot be used with a cache")
        start = x.new_zeros(B, dtype=torch.long) if cache is None or cache.positions is None else cache.positions
        positions = token_positions(mask, T, start, cu_seqlens)
        gammas = None if self.lower_bounds is None else self.lower_bounds()
        checkpointed = self.gradient_checkpointing and self.training and cache is None
        hidden = [x] if output_hidden_states else None
        for i, layer in enumerate(self.layers):
            if checkpointed:
                x = self._gradient_checkpointing_func(layer.__call__, x, positions, mask, None, gammas, cu_seqlens)
            else:
                x = layer(x, positions, mask, None if cache is None else cache.layers[i], gammas, cu_seqlens)
            if hidden is not None and i < len(self.layers) - 1:
                hidden.append(x)
        if cache is not None:
            cache.positions = start + (T if mask is None else mask.long().sum(dim=1))
            cache.seen_tokens += T
        x = self.norm(x)
        if hidden is not None:
            hidden.append(x)
        return BaseModelOutputWithPast(last_hidden_state=x, hidden_states=None if hidden is None else tuple(hidden),
                                       **{CACHE_FIELD: cache})


class DecayLinearForCausalLM(DecayLinearPreTrainedModel, GenerationMixin):
    """Causal LM; ``generate()`` decodes with a constant-size :class:`RecurrentCache`, feeding the prompt
    once and then one token per step."""

    accepts_loss_kwargs = True  # the HF Trainer passes num_items_in_batch (gradient accumulation)

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
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        cache: RecurrentCache | None = None,
        past_key_values: RecurrentCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cu_seqlens: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        shift_labels: torch.LongTensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        skip_logits: bool | None = None,
        **unused,
    ) -> CausalLMOutputWithPast | tuple:
        """``labels`` as in transformers (shifted inside; -100 ignored), or ``shift_labels`` already
        aligned with the positions; the loss never forms full float32 logits, and in training mode
        with a loss no logits are returned (``skip_logits``; see :func:`decaylab.model.loss.causal_lm_head`).
        The cache comes as ``cache`` or ``past_key_values`` (the name transformers used before 5.2x);
        with ``use_cache`` a new one is created when none is passed, and returned under
        :data:`~decaylab.model.cache.CACHE_FIELD`. Other keyword arguments of generate() (``position_ids``:
        positions are counted from the attention mask and the cache) are ignored."""
        cache = cache if cache is not None else past_key_values
        if use_cache and cache is None:
            cache = RecurrentCache(self.config.num_hidden_layers)
        out = self.model(input_ids, attention_mask, cache, cu_seqlens, inputs_embeds, output_hidden_states)
        loss, logits = causal_lm_head(out.last_hidden_state, self.lm_head, labels, shift_labels, num_items_in_batch,
                                      logits_to_keep, skip_logits)
        output = CausalLMOutputWithPast(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                        **{CACHE_FIELD: cache})
        return output if return_dict is not False else output.to_tuple()
