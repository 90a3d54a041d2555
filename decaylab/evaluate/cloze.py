"""Last-word cloze (LAMBADA-style) on the validation documents of a prepared dataset, scored through lm-eval.

The examples (:func:`cloze_examples`). The validation split is the stream ``EOT doc₁ EOT doc₂ …``
(see :mod:`decaylab.data.manifest`); its first ``scan_tokens`` tokens are cut at the end-of-text id
and each document decoded to text. A *candidate* is the last word of a sentence: a run of
non-space characters preceded by one space and followed by ``.``, ``!`` or ``?`` that ends the
text or is followed by whitespace or a closing quote/bracket. A candidate is skipped when

* the word is not made only of ASCII letters or has fewer than ``min_target_chars`` of them, or
* fewer than ``min_context_tokens`` (default ``max(context_tokens // 4, 1)``) tokens of its document come before
  it, or of the cut context are left.

Candidates are visited in the order of a permutation seeded by ``seed`` and the first ``n`` kept
(all of them when there are fewer). The *target* is the space and the word (``" word"``: one or
more tokens); the *context* is the document text right before that space, cut on the left at a
space so that it holds at most ``context_tokens`` tokens (it then starts with that space). So
``document[offset - len(context):offset] == context`` and
``document[offset:offset + len(target)] == target``.

The task (:func:`write_cloze_task`) is an lm-eval local task ``decaylab_cloze``: a JSONL file of
``{"context", "target"}`` and a YAML with ``output_type: loglikelihood``, scored (:func:`score_cloze`)
by ``lm_eval.simple_evaluate`` on :class:`decaylab.evaluate.lm_eval_adapter.DecaylabLM`:

    acc  mean over examples of [every target token is the argmax of the model given what precedes it]
    ppl  exp(−mean over examples of log p(target | context)), a perplexity per target word
"""

from __future__ import annotations

import bisect
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from decaylab.atomic import write_text_atomic
from decaylab.data import TokenDataset

TASK = "decaylab_cloze"
JSONL_FILE = f"{TASK}.jsonl"
YAML_FILE = f"{TASK}.yaml"
SCAN_TOKENS = 1 << 22  # validation tokens read for candidates (the split's start)
SENTENCE_FINAL_WORD = re.compile(r"(?<= )(\S+?)(?=[.!?](?:$|[\s\"')\]]))")
ASCII_WORD = re.compile(r"[A-Za-z]+")


def context_budget(seq_len: int) -> int:
    """The cloze context length for a model trained on ``seq_len`` tokens: half of it (at least 1),
    so that context and target fit well inside the training length."""
    return max(seq_len // 2, 1)


@dataclass(frozen=True)
class ClozeExample:
    """One cloze item: ``context`` + ``target`` is the text of validation document ``document``
    ending at character ``offset + len(target)``; ``target`` is ``" " + word``."""

    context: str
    target: str
    document: int
    offset: int


def validation_documents(dataset: TokenDataset, scan_tokens: int = SCAN_TOKENS) -> list[list[int]]:
    """The token ids of each document in the first ``scan_tokens`` tokens of ``dataset`` (a document
    cut by that limit is dropped unless it is the only one)."""
    tokens = np.asarray(dataset.tokens[:scan_tokens], dtype=np.int64)
    bounds = np.flatnonzero(tokens == dataset.eot_id)
    ends = [*bounds[1:], len(tokens)]
    if len(dataset.tokens) > scan_tokens and len(bounds) > 1:
        ends[-1] = bounds[-1]  # the last document runs past the limit: leave it out
    return [tokens[s + 1 : e].tolist() for s, e in zip(bounds, ends) if e > s + 1]


def cloze_examples(dataset: TokenDataset, n: int, *, context_tokens: int = 128, min_context_tokens: int | None = None,
                   min_target_chars: int = 3, seed: int = 0, scan_tokens: int = SCAN_TOKENS) -> list[ClozeExample]:
    """Up to ``n`` cloze examples from the validation documents of ``dataset`` (rule: module docstring)."""
    min_context_tokens = max(context_tokens // 4, 1) if min_context_tokens is None else min_context_tokens
    if n < 1 or context_tokens < 1 or min_context_tokens > context_tokens:
        raise ValueError(f"need n ≥ 1 and 1 ≤ context_tokens, min_context_tokens ≤ context_tokens; got {n=}, "
                         f"{context_tokens=}, {min_context_tokens=}")
    tok = dataset.tokenizer
    texts = tok.batch_decode(validation_documents(dataset, scan_tokens))
    candidates = [(d, m.start() - 1, m.group(1)) for d, text in enumerate(texts)
                  for m in SENTENCE_FINAL_WORD.finditer(text)
                  if ASCII_WORD.fullmatch(m.group(1)) and len(m.group(1)) >= min_target_chars]
    token_starts: dict[int, list[int]] = {}  # document -> character offset of each of its tokens
    examples = []
    for i in np.random.default_rng(seed).permutation(len(candidates)):
        document, offset, word = candidates[i]
        if document not in token_starts:
            encoding = tok.backend_tokenizer.encode(texts[document], add_special_tokens=False)
            token_starts[document] = [start for start, _ in encoding.offsets]
        start = _context_start(token_starts[document], texts[document], offset, context_tokens, min_context_tokens)
        if start is not None:
            examples.append(ClozeExample(texts[document][start:offset], " " + word, document, offset))
            if len(examples) == n:
                break
    return examples


def _context_start(token_starts: list[int], text: str, offset: int, context_tokens: int,
                   min_context_tokens: int) -> int | None:
    """Where the context of the target at ``text[offset]`` (a space) starts: 0, or the first space
    after the token ``context_tokens`` tokens back; None when fewer than ``min_context_tokens`` remain."""
    before = bisect.bisect_left(token_starts, offset)  # tokens of the document before the target
    start = 0
    if before > context_tokens:
        start = text.find(" ", token_starts[before - context_tokens], offset)
        if start < 0:
            return None
    return start if before - bisect.bisect_left(token_starts, start) >= min_context_tokens else None


def write_cloze_task(examples: list[ClozeExample], directory: str | Path) -> Path:
    """Write the lm-eval local task ``decaylab_cloze`` over ``examples`` into ``directory`` (created
    if needed; each file replaced atomically) and return the directory, for ``TaskManager(include_path=...)``."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    write_text_atomic(directory / JSONL_FILE, "".join(
        json.dumps({"context": e.context, "target": e.target}) + "\n" for e in examples))
    write_text_atomic(directory / YAML_FILE, "\n".join([
        f"task: {TASK}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {json.dumps(str(directory / JSONL_FILE))}",
        "test_split: test",
        "output_type: loglikelihood",
        "doc_to_text: context",
        "doc_to_target: target",
        "metric_list:",
        "  - metric: acc",
        "    aggregation: mean",
        "    higher_is_better: true",
        "  - metric: perplexity",
        "    aggregation: perplexity",
        "    higher_is_better: false",
        "metadata:",
        "  version: 1.0",
    ]) + "\n")
    return directory


def score_cloze(task_dir: str | Path, model, tokenizer: str | Path, *, device: str | None = None,
                batch_size: int = 8) -> dict:
    """``{"acc", "ppl", "n"}`` of ``model`` (a loaded model or a path :class:`DecaylabLM` opens) on the
    task written in ``task_dir``, through ``lm_eval.simple_evaluate``; ``tokenizer`` as for DecaylabLM."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from decaylab.evaluate.lm_eval_adapter import DecaylabLM

    lm = DecaylabLM(pretrained=model, tokenizer=str(tokenizer), device=device, batch_size=batch_size, progress=False)
    output = lm_eval.simple_evaluate(model=lm, tasks=[TASK], log_samples=False, bootstrap_iters=0,
                                     task_manager=TaskManager(include_path=str(task_dir), include_defaults=False))
    result = output["results"][TASK]
    return {"acc": result["acc,none"], "ppl": result["perplexity,none"],
            "n": output["n-samples"][TASK]["effective"]}


def evaluate_cloze(model, dataset_dir: str | Path, n: int, *, context_tokens: int = 128, seed: int = 0,
                   device: str | None = None, batch_size: int = 8) -> dict:
    """Build ``n`` examples from the validation split of ``dataset_dir``, score ``model`` on them in a
    temporary task directory, and return the scores with the settings (``context_tokens``, ``seed``)."""
    examples = cloze_examples(TokenDataset.open(dataset_dir, "val"), n, context_tokens=context_tokens, seed=seed)
    if not examples:
        raise ValueError(f"the validation split of {dataset_dir} has no sentence-final word to build a cloze "
                         "example from")
    with tempfile.TemporaryDirectory(prefix="decaylab-cloze-") as task_dir:
        scores = score_cloze(write_cloze_task(examples, task_dir), model, dataset_dir, device=device,
                             batch_size=batch_size)
    return {**scores, "context_tokens": context_tokens, "seed": seed}

