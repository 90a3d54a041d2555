"""The softmax-attention reference: transformers' LLaMA with decaylab's loss head.

Same model as ``LlamaForCausalLM`` (RoPE, SwiGLU, RMSNorm, PyTorch SDPA) and the same loss
contract as :class:`decaylab.model.DecayLinearForCausalLM` (``shift_labels``, ``skip_logits``, a loss
that never forms full float32 logits), so both train through one code path.
"""

from __future__ import annotations

import torch
from transformers import LlamaForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

from decaylab.model.cache import CACHE_FIELD
from decaylab.model.loss import causal_lm_head


class SoftmaxForCausalLM(LlamaForCausalLM):
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int = 0,
        shift_labels: torch.LongTensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        skip_logits: bool | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """As ``LlamaForCausalLM.forward``; the loss and logits from :func:`decaylab.model.loss.causal_lm_head`."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        loss, logits = causal_lm_head(out.last_hidden_state, self.lm_head, labels, shift_labels, num_items_in_batch,
                                      logits_to_keep, skip_logits)
        return CausalLMOutputWithPast(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                      attentions=out.attentions, **{CACHE_FIELD: getattr(out, CACHE_FIELD)})
