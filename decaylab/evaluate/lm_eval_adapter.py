"""lm-evaluation-harness adapter: ``lm_eval`` runs its tasks on a decaylab model directory.

Importing this module registers the model name ``"decaylab"`` with lm-eval (an optional
dependency: ``pip install lm-eval``)::

    import lm_eval, decaylab.evaluate.lm_eval_adapter
    lm_eval.simple_evaluate(model="decaylab", model_args={"pretrained": "runs/x"}, tasks=[...])

Scoring, for a context c and continuation y = y₁ … y_n (token ids; an empty context is replaced by
the end-of-text token):

    loglikelihood(c, y) = Σ_i log softmax(logits(c y_{<i}))[y_i],   greedy = all y_i are the argmax

computed in one causal forward pass of ``c y₁ … y_{n−1}`` (truncated on the left to
``max_length``). Batches are right-padded: a causal model's logits at real tokens do not depend on
the padding after them. ``loglikelihood_rolling`` scores a whole document in lm-eval's rolling
windows of ``max_length`` tokens (conditioned on end-of-text), and ``generate_until`` decodes
greedily until a stop string, end-of-text or ``max_gen_toks`` tokens.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
except ImportError as err:  # pragma: no cover - exercised only without the optional dependency
    raise ImportError("the lm-eval adapter needs lm-evaluation-harness: pip install lm-eval") from err

from decaylab.evaluate.loading import load_model, load_model_tokenizer
from decaylab.evaluate.perplexity import autocast


class StopOnStrings(StoppingCriteria):
    """Stop once the text decoded from the tokens after ``prompt_len`` contains any of ``stops``."""

    def __init__(self, tokenizer, stops: list[str], prompt_len: int):
        self.tokenizer, self.stops, self.prompt_len = tokenizer, stops, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:])
        return torch.tensor([any(s in t for s in self.stops) for t in texts], device=input_ids.device)


@register_model("decaylab")
class DecaylabLM(LM):
    """A decaylab (or softmax-baseline) model directory as an lm-eval ``LM``.

    Args: ``pretrained`` a model, checkpoint or run directory; ``tokenizer`` a tokenizer.json, a
    prepared dataset directory or a HF tokenizer name (default: found next to the model, see
    :func:`load_model_tokenizer`); ``batch_size`` sequences per forward pass (lm-eval's "auto"
    falls back to 8); ``max_length`` the longest input fed at once; ``max_gen_toks`` default
    generation budget.
    """

    def __init__(self, pretrained: str, tokenizer: str | None = None, device: str | None = None,
                 batch_size: int | str = 8, max_length: int = 2048, max_gen_toks: int = 256, progress: bool = True):
        super().__init__()
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_model(pretrained, self._device)
        self.tokenizer = load_model_tokenizer(pretrained, tokenizer)
        self.eot_id = self.tokenizer.eos_token_id
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 8
        self.max_length, self.max_gen_toks = int(max_length), int(max_gen_toks)
        self.progress = progress
        self.pretrained = str(Path(pretrained))

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path or self.pretrained

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of (context, continuation), cut from the tokenization of their concatenation so
        that merges across the boundary are as in running text; trailing context spaces move to the
        continuation. An empty context becomes [end-of-text]."""
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        if not context:
            return [self.eot_id], self.encode(continuation)
        whole, ctx = self.encode(context + continuation), self.encode(context)
        return whole[:len(ctx)], whole[len(ctx):]

    @torch.no_grad()
    def score(self, pairs: list[tuple[list[int], list[int]]], desc: str = "loglikelihood") -> list[tuple[float, bool]]:
        """(Σ log p(continuation), greedy) for each (context ids, continuation ids), batched by length."""
        order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        results: list[tuple[float, bool] | None] = [None] * len(pairs)
        for a in tqdm(range(0, len(order), self.batch_size), desc=desc, disable=not self.progress, leave=False):
            rows = order[a:a + self.batch_size]
            seqs = [(pairs[i][0] + pairs[i][1])[:-1][-self.max_length:] for i in rows]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(rows), width), self.eot_id, dtype=torch.long)
            for r, s in enumerate(seqs):
                ids[r, :len(s)] = torch.tensor(s)
            with autocast(self._device):
                logits = self.model(input_ids=ids.to(self._device)).logits
            logprobs = F.log_softmax(logits.float(), dim=-1).cpu()
            for r, (i, s) in enumerate(zip(rows, seqs)):
                cont = torch.tensor(pairs[i][1])
                lp = logprobs[r, len(s) - len(cont):len(s)]
                total = lp.gather(-1, cont[:, None]).sum().item()
                results[i] = (total, bool((lp.argmax(dim=-1) == cont).all()))
        return results

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        results = self.score([self.encode_pair(*req.args) for req in requests])
        for req, res in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", req.args, res)
        return results

    def loglikelihood_rolling(self, requests) -> list[float]:
        out = []
        for req in tqdm(requests, desc="loglikelihood_rolling", disable=not self.progress, leave=False):
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                self.encode(req.args[0]), self.eot_id, self.max_length, 1)]
            total = sum(lp for lp, _ in self.score(windows, desc="windows"))
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
            out.append(total)
        return out

    @torch.no_grad()
    def generate_until(self, requests) -> list[str]:
        out = []
        for req in tqdm(requests, desc="generate_until", disable=not self.progress, leave=False):
            context, kwargs = req.args
            kwargs = dict(kwargs or {})
            until = kwargs.pop("until", None) or []
            stops = [until] if isinstance(until, str) else list(until)
            budget = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
            ids = (self.encode(context) or [self.eot_id])[-max(self.max_length - budget, 1):]
            prompt = torch.tensor([ids], device=self._device)
            with autocast(self._device):
                tokens = self.model.generate(
                    prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=budget, do_sample=False,
                    eos_token_id=self.eot_id, pad_token_id=self.eot_id,
                    stopping_criteria=StoppingCriteriaList([StopOnStrings(self.tokenizer, stops, len(ids))]),
                )
            text = self.tokenizer.decode(tokens[0, len(ids):], skip_special_tokens=True)
            for s in stops:
                text = text.split(s)[0]
            self.cache_hook.add_partial("generate_until", req.args, text)
            out.append(text)
        return out
