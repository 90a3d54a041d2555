"""Evaluation against independent oracles: perplexity, extrapolation, MQAR, lm-eval adapter, ``decaylab eval``."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from decaylab.evaluate import (
    MQARTask,
    RecallProbe,
    evaluate_mqar,
    evaluate_perplexity,
    extrapolation_table,
    generate_mqar,
    plot_extrapolation,
    train_and_eval_mqar,
)
from decaylab.evaluate.recall import IGNORE, MQARStream, recall_accuracy
from decaylab.model import build_model, make_config
from tests.conftest import write_choice_task

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WORDS = ["the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "they", "you", "were", "her", "she", "there", "one", "all", "we", "their", "can", "has", "more", "would"]


class WindowStandIn:
    """The ``TokenDataset.iter_eval`` contract over an in-memory token stream."""

    def __init__(self, tokens: torch.Tensor):
        self.tokens = tokens

    def iter_eval(self, seq_len, batch_size, max_batches=None):
        n = (len(self.tokens) - 1) // seq_len
        for b, first in enumerate(range(0, n, batch_size)):
            if max_batches is not None and b >= max_batches:
                return
            rows = torch.stack([self.tokens[s * seq_len: s * seq_len + seq_len + 1] for s in range(first, min(first + batch_size, n))])
            yield rows[:, :-1], rows[:, 1:]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is faster than two on a shared 2-core machine."""
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def micro():
    torch.manual_seed(0)
    return build_model(make_config("micro", decay="gla")).eval()


@pytest.fixture(scope="module")
def stream():
    return WindowStandIn(torch.randint(0, 512, (7 * 32 + 1,), generator=torch.Generator().manual_seed(1)))


def direct_nll(model, window: torch.Tensor) -> torch.Tensor:
    """−log softmax(logits)[next token] of one window [T + 1], as [T] float64."""
    with torch.no_grad():
        logp = F.log_softmax(model(window[None, :-1]).logits[0].double(), dim=-1)
    return -logp.gather(-1, window[1:, None])[:, 0]


def test_perplexity_is_exp_of_token_weighted_cross_entropy(micro, stream):
    # 7 windows of 32 in batches of 3 (3 + 3 + 1): the token weighting matters
    result = evaluate_perplexity(micro, stream, seq_len=32, batch_size=3, progress=False)
    nll = torch.cat([direct_nll(micro, stream.tokens[i * 32: i * 32 + 33]) for i in range(7)])
    assert result["tokens"] == nll.numel() == 7 * 32
    assert result["loss"] == pytest.approx(nll.mean().item(), rel=1e-5)
    assert result["ppl"] == pytest.approx(math.exp(nll.mean().item()), rel=1e-5)
    limited = evaluate_perplexity(micro, stream, seq_len=32, batch_size=3, max_batches=1, progress=False)
    assert limited["tokens"] == 3 * 32


def test_extrapolation_buckets_partition_positions_and_average_to_overall(micro, stream, tmp_path):
    table = extrapolation_table(micro, stream, train_len=8, factor=4, batch_size=2, progress=False)
    buckets = table["buckets"]
    assert [(b["start"], b["end"]) for b in buckets] == [(0, 8), (8, 16), (16, 24), (24, 32)]
    assert sum(b["tokens"] for b in buckets) == table["overall"]["tokens"] == 7 * 32
    weighted = sum(b["loss"] * b["tokens"] for b in buckets) / table["overall"]["tokens"]
    assert weighted == pytest.approx(table["overall"]["loss"], rel=1e-9)
    # the overall loss is the perplexity at 4·L, and each bucket the mean nll of its positions
    assert table["overall"]["loss"] == pytest.approx(evaluate_perplexity(micro, stream, 32, 3, progress=False)["loss"], rel=1e-5)
    nll = torch.stack([direct_nll(micro, stream.tokens[i * 32: i * 32 + 33]) for i in range(7)])  # [7, 32]
    for b in buckets:
        assert b["loss"] == pytest.approx(nll[:, b["start"]:b["end"]].mean().item(), rel=1e-5)
        assert b["ppl"] == pytest.approx(math.exp(b["loss"]))
    finer = extrapolation_table(micro, stream, train_len=8, factor=4, bucket_size=5, progress=False)
    assert [b["end"] for b in finer["buckets"]] == [5, 10, 15, 20, 25, 30, 32]

    fig = plot_extrapolation({"a": table, "b": finer}, tmp_path / "x.png")
    labelled = [line for line in fig.axes[0].lines if not line.get_label().startswith("_")]
    assert [line.get_label() for line in labelled] == ["a", "b"]
    assert len(labelled[1].get_xdata()) == 7
    assert (tmp_path / "x.png").read_bytes()[:8] == PNG_MAGIC


# ---------------------------------------------------------------------------------------------- MQAR

def test_mqar_answers_are_the_values_paired_earlier():
    task = MQARTask(seq_len=48, num_pairs=6, vocab_size=40)
    inputs, targets = generate_mqar(task, 50, seed=3)
    assert inputs.shape == targets.shape == (50, 48)
    for x, y in zip(inputs.tolist(), targets.tolist()):
        pairs = dict(zip(x[0:12:2], x[1:12:2]))
        assert len(pairs) == 6 and all(1 <= k <= task.num_keys < v < task.vocab_size for k, v in pairs.items())
        queries = [t for t in range(48) if y[t] != IGNORE]
        assert len(queries) == 6 and min(queries) >= 12
        assert sorted(x[t] for t in queries) == sorted(pairs)  # every key is asked once
        for t in queries:
            assert y[t] == pairs[x[t]]
        assert all(token <= task.num_keys for token in x[12:])  # no values after the pairs: nothing to eliminate
    again, _ = generate_mqar(task, 50, seed=3)
    other, _ = generate_mqar(task, 50, seed=4)
    assert torch.equal(inputs, again) and not torch.equal(inputs, other)
    with pytest.raises(ValueError, match="num_pairs"):
        generate_mqar(MQARTask(64, 40, 64), 1)


def test_mqar_draws_keys_slots_and_query_order_uniformly():
    """Each key id, each query slot and each rank of the first pair's query among the queries is
    equally likely: counts over 4,000 sequences within 5 standard deviations of uniform."""
    task = MQARTask(seq_len=40, num_pairs=4, vocab_size=30)
    inputs, targets = generate_mqar(task, 4000, seed=11)
    n, slots = task.num_pairs, (40 - 2 * task.num_pairs) // 2

    def assert_uniform(counts: torch.Tensor, draws: int) -> None:
        p = 1 / len(counts)
        assert counts.sum() == draws
        assert (counts - draws * p).abs().max() <= 5 * (draws * p * (1 - p)) ** 0.5, counts

    keys = inputs[:, 0:2 * n:2]
    assert_uniform(torch.bincount(keys.flatten() - 1, minlength=task.num_keys), 4000 * n)
    query = targets[:, 2 * n:] != IGNORE
    assert_uniform(query.reshape(4000, slots, 2)[..., 0].sum(0), 4000 * n)
    asked_first = (inputs[:, 2 * n:] == keys[:, :1]) & query  # where the first pair's key is asked
    rank = (query.cumsum(1) * asked_first).sum(1) - 1
    assert_uniform(torch.bincount(rank, minlength=n), 4000)


class LookupOracle(nn.Module):
    """Predicts, at each position, the token that followed the previous occurrence of the current one."""

    def __init__(self, vocab_size):
        super().__init__()
        self.vocab_size = vocab_size
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids):
        logits = torch.zeros(*input_ids.shape, self.vocab_size)
        for b, row in enumerate(input_ids.tolist()):
            memory = {}
            for t, token in enumerate(row):
                if token in memory:
                    logits[b, t, memory[token]] = 1.0
                if t + 1 < len(row):
                    memory.setdefault(token, row[t + 1])
        return type("Out", (), {"logits": logits})


def test_mqar_lookup_oracle_is_perfect_and_constant_predictor_is_at_chance():
    task = MQARTask(seq_len=32, num_pairs=4, vocab_size=24)
    assert evaluate_mqar(LookupOracle(24), task, num_examples=64)["accuracy"] == 1.0
    inputs, targets = generate_mqar(task, 2000, seed=0)
    constant = torch.zeros(*inputs.shape, 24)
    constant[..., task.num_keys + 1] = 1.0
    correct, queries = recall_accuracy(constant, targets)
    assert queries == 2000 * 4
    assert correct / queries == pytest.approx(task.chance, abs=0.015)


def test_mqar_stream_batches_answer_each_query_with_the_value_its_key_was_paired_with():
    task = MQARTask(seq_len=40, num_pairs=5, vocab_size=30)
    stream = MQARStream(task)
    inputs, targets = stream.batch(7, 12, 40, seed=2)
    assert torch.equal(inputs, generate_mqar(task, 12, seed=2 * 1_000_003 + 7)[0])
    for x, y in zip(inputs.tolist(), targets.tolist()):
        key_to_value = dict(zip(x[0:10:2], x[1:10:2]))  # the pairs the sequence starts with
        answers = {x[t]: y[t] for t in range(40) if y[t] != IGNORE}
        assert answers == key_to_value
    # rank r of w takes rows r·b … of the global batch, as TokenDataset.batch does
    halves = [stream.batch(7, 6, 40, seed=2, rank=r, world_size=2) for r in (0, 1)]
    assert torch.equal(torch.cat([h[0] for h in halves]), inputs)
    assert torch.equal(torch.cat([h[1] for h in halves]), targets)
    with pytest.raises(ValueError, match="seq_len"):
        stream.batch(0, 2, 32)


def test_mqar_random_predictions_over_the_values_score_chance():
    """A predictor drawing a uniformly random value id: accuracy 1 / num_values (here 1/12) within
    0.015 (about 5 standard deviations at 8000 queries)."""
    task = MQARTask(seq_len=32, num_pairs=4, vocab_size=24)
    inputs, targets = generate_mqar(task, 2000, seed=5)
    logits = torch.full((*inputs.shape, 24), -1e9)
    logits[..., task.num_keys + 1:] = torch.rand(*inputs.shape, task.num_values, generator=torch.Generator().manual_seed(0))
    correct, queries = recall_accuracy(logits, targets)
    assert queries == 2000 * 4
    assert correct / queries == pytest.approx(1 / task.num_values, abs=0.015)


def test_recall_probe_sets_the_task_vocabulary_the_width_and_the_depth():
    config = make_config("micro", decay="gla")
    probe = RecallProbe(vocab_size=32, hidden_size=32, num_hidden_layers=1)
    small = probe.model_config(config)
    assert (small.vocab_size, small.hidden_size, small.num_heads, small.head_dim) == (32, 32, 2, 16)
    assert small.num_hidden_layers == 1 and len(build_model(small).model.layers) == 1
    assert probe.model_config(make_config("micro", arch="softmax")).num_attention_heads == 2
    assert RecallProbe().model_config(config).hidden_size == config.hidden_size
    cfg = probe.train_config(seed=3)
    assert (cfg.seed, cfg.seq_len, cfg.steps, cfg.micro_batch_size, cfg.lr) == (3, 64, 3000, 32, 3e-4)
    # size: the run's design on another preset (the sweep's probe model need not be the run's size)
    on_tiny = RecallProbe(size="tiny").model_config(make_config("small", decay="gla", decay_granularity="scalar"))
    assert (on_tiny.hidden_size, on_tiny.num_hidden_layers, on_tiny.vocab_size) == (128, 2, 64)
    assert (on_tiny.decay, on_tiny.decay_granularity) == ("gla", "scalar")
    assert RecallProbe(size="tiny").model_config(make_config("small", arch="softmax")).hidden_size == 128


def test_tiny_model_trained_on_easy_mqar_beats_chance():
    probe = RecallProbe(seq_len=16, num_pairs=2, vocab_size=16, steps=100, batch_size=16, lr=1e-2)
    config = make_config("micro", decay="sd-0.9", decay_granularity="scalar")
    result = train_and_eval_mqar(config, probe, progress=False)
    assert result["chance"] == 1 / 8
    assert result["accuracy"] > 3 * result["chance"], result


def test_recall_probe_compiles_only_where_asked_and_on_cuda(monkeypatch):
    """compile_mode maps to the training config's compile=auto (CUDA only) with that mode; the probe
    hands its model to the run's compile step, which leaves it eager on the CPU."""
    import decaylab.evaluate.recall as recall

    eager, compiled = RecallProbe().train_config(0), RecallProbe(compile_mode="reduce-overhead").train_config(0)
    assert (eager.compile, compiled.compile, compiled.compile_mode) == ("false", "auto", "reduce-overhead")
    seen = []
    real = recall.compile_model
    monkeypatch.setattr(recall, "compile_model", lambda model, *args: seen.append(args) or real(model, *args))
    compile_calls = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, **kw: compile_calls.append(kw))
    probe = RecallProbe(seq_len=16, num_pairs=2, vocab_size=16, steps=2, batch_size=4, compile_mode="reduce-overhead")
    train_and_eval_mqar(make_config("micro", decay="gla"), probe, progress=False)
    assert seen == [("auto", "reduce-overhead", torch.device("cpu"))] and compile_calls == []
    assert real(nn.Linear(2, 2), "auto", "reduce-overhead", torch.device("cuda")) and compile_calls == [
        {"mode": "reduce-overhead", "dynamic": False}]


def test_recall_probe_counts_the_steps_it_skipped_for_a_non_finite_loss(monkeypatch):
    import decaylab.model

    real_build, calls = decaylab.model.build_model, {"train_forward": 0}

    def poisoned(config):
        model = real_build(config)

        def poison(module, args, output):
            if module.training:
                calls["train_forward"] += 1
                if calls["train_forward"] in (3, 7):
                    output.loss = output.loss * float("nan")
            return output

        model.register_forward_hook(poison)
        return model

    monkeypatch.setattr(decaylab.model, "build_model", poisoned)
    probe = RecallProbe(seq_len=16, num_pairs=2, vocab_size=16, steps=10, batch_size=4)
    result = train_and_eval_mqar(make_config("micro", decay="gla"), probe, progress=False)
    assert result["skipped_steps"] == 2 and math.isfinite(result["final_loss"])


# ------------------------------------------------------------------------------------ lm-eval adapter

@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    from decaylab.data import prepare_dataset

    rng = random.Random(0)
    src = tmp_path_factory.mktemp("text")
    for i in range(24):
        (src / f"doc{i}.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(250)) + ".\n")
    return prepare_dataset(src, tmp_path_factory.mktemp("data") / "ds", vocab_size=300, val_fraction=0.25, progress=False)


@pytest.fixture(scope="module")
def model_dir(dataset_dir, tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(make_config("micro", decay="gla", vocab_size=300))
    path = tmp_path_factory.mktemp("model")
    model.save_pretrained(path)
    (path / "tokenizer.json").write_bytes((dataset_dir / "tokenizer.json").read_bytes())
    return path


def direct_loglikelihood(model, tok, context: str, continuation: str) -> tuple[float, bool]:
    """Σ log softmax of the logits at the continuation tokens, one unpadded forward pass."""
    whole = tok.encode(context + continuation, add_special_tokens=False)
    n_ctx = len(tok.encode(context, add_special_tokens=False)) if context else 0
    ids = ([tok.eos_token_id] if not context else []) + whole
    start = 1 if not context else n_ctx
    with torch.no_grad():
        logp = F.log_softmax(model(torch.tensor([ids[:-1]])).logits[0].double(), dim=-1)
    targets = torch.tensor(ids[start:])
    rows = logp[start - 1:]
    return rows.gather(-1, targets[:, None]).sum().item(), bool((rows.argmax(-1) == targets).all())


def test_lm_eval_adapter_scores_match_direct_log_softmax(model_dir):
    lm_eval_adapter = pytest.importorskip("decaylab.evaluate.lm_eval_adapter")
    from lm_eval.api.instance import Instance

    lm = lm_eval_adapter.DecaylabLM(pretrained=str(model_dir), batch_size=2, progress=False)
    model, tok = lm.model, lm.tokenizer
    pairs = [("the cat was there", " and she"), ("", "one of the"), ("he is not", " at"),
             ("for it as was with be by on", " not he this are or his"), ("they", " were")]
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    for (got, greedy), pair in zip(lm.loglikelihood(requests), pairs):
        want, want_greedy = direct_loglikelihood(model, tok, *pair)
        assert got == pytest.approx(want, rel=1e-5, abs=1e-5) and greedy == want_greedy

    text = "she was there and they were not at all one of the"
    rolling = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
    assert rolling[0] == pytest.approx(direct_loglikelihood(model, tok, "", text)[0], rel=1e-5)

    # greedy decoding oracle: argmax of a full recomputation at every step, cut at the stop string
    ids = tok.encode("the one", add_special_tokens=False)
    n = len(ids)
    for _ in range(6):
        with torch.no_grad():
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    generated = tok.decode(ids[n:])
    stop = tok.decode(ids[n + 3:n + 4]) or "\n\n"
    out = lm.generate_until([Instance("generate_until", {}, ("the one", {"until": [stop], "max_gen_toks": 6}), 0),
                             Instance("generate_until", {}, ("the one", {"until": ["\x00"], "max_gen_toks": 6}), 1)])
    assert out == [generated.split(stop)[0], generated]


# ------------------------------------------------------------------------------------ decaylab eval

def test_eval_command_writes_perplexity_extrapolation_and_recall(model_dir, dataset_dir, tmp_path):
    from decaylab.cli import main
    from decaylab.data import TokenDataset
    from decaylab.evaluate import load_model

    out = tmp_path / "eval.json"
    rc = main(["eval", str(model_dir), "--data", str(dataset_dir), "--seq-len", "16", "--batch-size", "4",
               "--max-batches", "3", "--extrapolate", "2", "--recall", "--recall-steps", "3", "--recall-seq-len", "16",
               "--recall-pairs", "2", "--recall-vocab", "16", "--out", str(out), "--no-progress"])
    assert rc == 0
    results = json.loads(out.read_text())
    val = TokenDataset.open(dataset_dir, "val")
    direct = evaluate_perplexity(load_model(model_dir), val, 16, 4, 3, False)
    assert results["perplexity"]["loss"] == pytest.approx(direct["loss"], rel=1e-6)
    assert results["data"]["unigram_ppl"] == pytest.approx(val.unigram_perplexity())
    assert [b["end"] for b in results["extrapolation"]["buckets"]] == [16, 32]
    assert results["recall"]["trained"]["steps"] == 3 and results["recall"]["trained"]["chance"] == 1 / 8
    assert results["recall"]["zero_shot"]["queries"] == 256 * 2


def test_lm_eval_runs_a_local_jsonl_task_through_the_eval_command(model_dir, dataset_dir, tmp_path):
    pytest.importorskip("lm_eval")
    from decaylab.cli import main
    from decaylab.evaluate import load_model, load_model_tokenizer

    model, tok = load_model(model_dir), load_model_tokenizer(model_dir)
    questions = [("the cat was", [" there", " of", " she"]), ("one of the", [" they", " at"]),
                 ("he is", [" not", " and", " with", " were"]), ("all we", [" can", " have"])]
    docs = []
    for i, (question, choices) in enumerate(questions):  # the model's own choice on even docs, another on odd
        best = int(np.argmax([direct_loglikelihood(model, tok, question, c)[0] for c in choices]))
        docs.append({"question": question, "choices": choices, "label": best if i % 2 == 0 else (best + 1) % len(choices)})
    write_choice_task(tmp_path, docs)
    out = tmp_path / "eval.json"
    rc = main(["eval", str(model_dir), "--lm-eval-tasks", "toy_choice", "--lm-eval-include", str(tmp_path),
               "--lm-eval-local-only", "--batch-size", "3", "--out", str(out), "--no-progress"])
    assert rc == 0
    assert json.loads(out.read_text())["lm_eval"]["toy_choice"]["acc,none"] == pytest.approx(0.5)
