"""The last-word cloze: examples against the validation documents, lm-eval's scores against a direct
computation, ``decaylab eval --cloze`` and the sweep's cloze piece."""

from __future__ import annotations

import json
import math
import random
import re

import pytest
import torch
import torch.nn.functional as F

from decaylab.data import TokenDataset, prepare_dataset
from decaylab.data.tokenizer import encode_batch
from decaylab.evaluate.cloze import (
    ClozeExample,
    cloze_examples,
    evaluate_cloze,
    score_cloze,
    validation_documents,
    write_cloze_task,
)
from decaylab.model import build_model, make_config

WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran", "far", "away", "and", "it", "was", "good", "house"]
SKIPPED = ["42", "an", "x7"]  # sentence-final in the data, never a target: a number, too short, not letters only


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 9))]
    if rng.random() < 0.3:
        words[-1] = rng.choice(SKIPPED)
    return " ".join(words) + rng.choice(".!?")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    rng = random.Random(0)
    src = tmp_path_factory.mktemp("text")
    texts = [" ".join(_sentence(rng) for _ in range(25)) for _ in range(12)]
    for i, text in enumerate(texts):
        (src / f"doc{i:02d}.txt").write_text(text)
    return src, texts


@pytest.fixture(scope="module")
def dataset_dir(sources, tmp_path_factory):
    return prepare_dataset(sources[0], tmp_path_factory.mktemp("data") / "ds", vocab_size=300, val_fraction=0.25,
                           progress=False)


@pytest.fixture(scope="module")
def val(dataset_dir):
    return TokenDataset.open(dataset_dir, "val")


@pytest.fixture(scope="module")
def texts(val):
    return val.tokenizer.batch_decode(validation_documents(val))


@pytest.fixture(scope="module")
def model_dir(dataset_dir, tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model")
    build_model(make_config("micro", decay="gla", vocab_size=300)).save_pretrained(path)
    return path


def test_validation_documents_are_the_source_documents(val, texts, sources):
    assert len(texts) == val.num_documents >= 2
    assert set(texts) <= set(sources[1])


def test_examples_are_sentence_final_whole_words_right_after_their_context(val, texts):
    examples = cloze_examples(val, 40, context_tokens=24, min_context_tokens=6)
    assert len(examples) == 40 and len(set(examples)) == 40
    for e in examples:
        doc = texts[e.document]
        assert doc[e.offset - len(e.context):e.offset] == e.context  # the context is the text right before
        assert doc[e.offset:e.offset + len(e.target)] == e.target and doc[e.offset + len(e.target)] in ".!?"
        word = e.target[1:]
        assert e.target[0] == " " and word.isascii() and word.isalpha() and len(word) >= 3 and word not in SKIPPED
        n_context = len(encode_batch(val.tokenizer, [e.context])[0])
        assert 6 <= n_context <= 24
        assert e.offset == len(e.context) or e.context.startswith(" ")  # cut on the left at a space
    assert any(e.offset == len(e.context) for e in examples)  # a context that is the document's prefix
    assert any(e.offset > len(e.context) for e in examples)   # and one that was cut


def test_all_kept_candidates_are_the_rule_applied_by_hand(val, texts):
    """With room for every context, the examples are exactly the sentence-final words of ≥ 3 ASCII
    letters preceded by at least 5 tokens of their document."""
    tok = val.tokenizer
    want = set()
    for d, doc in enumerate(texts):
        for i, piece in enumerate(doc.split(" ")):
            start = len(" ".join(doc.split(" ")[:i]))  # the space before piece
            word, end = piece[:-1], piece[-1:]
            if i and end in ".!?" and re.fullmatch(r"[A-Za-z]{3,}", word) \
                    and len(encode_batch(tok, [doc[:start]])[0]) >= 5:
                want.add((d, start))
    assert any(p.rstrip(".!?") in SKIPPED for doc in texts for p in doc.split(" "))  # the data has skipped words
    got = cloze_examples(val, 10_000, context_tokens=4096, min_context_tokens=5)
    assert {(e.document, e.offset) for e in got} == want
    assert all(e.offset == len(e.context) for e in got)  # nothing cut: every context is a document prefix


def test_examples_are_a_seeded_choice(val):
    first = cloze_examples(val, 10, context_tokens=24, seed=3)
    assert cloze_examples(val, 10, context_tokens=24, seed=3) == first
    assert cloze_examples(val, 10, context_tokens=24, seed=4) != first
    assert cloze_examples(val, 5, context_tokens=24, seed=3) == first[:5]
    with pytest.raises(ValueError, match="n ≥ 1"):
        cloze_examples(val, 0)


def direct_scores(model, tok, examples: list[ClozeExample]) -> dict:
    """acc and ppl from one unpadded forward pass per example: Σ log softmax at the target tokens."""
    lls, greedy = [], []
    for e in examples:
        ids = encode_batch(tok, [e.context + e.target])[0]
        n_ctx = len(encode_batch(tok, [e.context])[0])
        with torch.no_grad():
            logp = F.log_softmax(model(torch.tensor([ids[:-1]])).logits[0].double(), dim=-1)[n_ctx - 1:]
        target = torch.tensor(ids[n_ctx:])
        lls.append(logp.gather(-1, target[:, None]).sum().item())
        greedy.append(bool((logp.argmax(-1) == target).all()))
    return {"acc": sum(greedy) / len(greedy), "ppl": math.exp(-sum(lls) / len(lls)), "n": len(examples)}


def _with_greedy_targets(model, tok, examples: list[ClozeExample]) -> list[ClozeExample]:
    """Every other example's target replaced by the model's own next token, where that is a
    space-led token that tokenizes back to itself (so the expected accuracy is not 0)."""
    out = []
    for i, e in enumerate(examples):
        ids = encode_batch(tok, [e.context])[0]
        with torch.no_grad():
            best = int(model(torch.tensor([ids])).logits[0, -1].argmax())
        text = tok.decode([best])
        if i % 2 == 0 and text.startswith(" ") and encode_batch(tok, [e.context + text])[0] == ids + [best]:
            e = ClozeExample(e.context, text, e.document, e.offset)
        out.append(e)
    return out


def test_lm_eval_task_scores_equal_a_direct_computation(model_dir, dataset_dir, val, tmp_path):
    pytest.importorskip("lm_eval")
    from decaylab.evaluate import load_model

    model, tok = load_model(model_dir), val.tokenizer
    examples = _with_greedy_targets(model, tok, cloze_examples(val, 8, context_tokens=24, seed=1))
    want = direct_scores(model, tok, examples)
    assert want["acc"] > 0
    task_dir = write_cloze_task(examples, tmp_path / "task")
    lines = (task_dir / "decaylab_cloze.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"context": e.context, "target": e.target} for e in examples]
    got = score_cloze(task_dir, model, dataset_dir, batch_size=3)
    assert got["n"] == want["n"] and got["acc"] == pytest.approx(want["acc"])
    assert got["ppl"] == pytest.approx(want["ppl"], rel=1e-5)
    by_path = score_cloze(task_dir, str(model_dir), dataset_dir, device="cpu", batch_size=8)  # the folder, loaded
    assert by_path["acc"] == got["acc"] and by_path["ppl"] == pytest.approx(got["ppl"], rel=1e-5)


def test_eval_command_records_the_cloze(model_dir, dataset_dir, tmp_path):
    pytest.importorskip("lm_eval")
    from decaylab.cli import main
    from decaylab.evaluate import load_model

    out = tmp_path / "eval.json"
    rc = main(["eval", str(model_dir), "--data", str(dataset_dir), "--seq-len", "32", "--max-batches", "1",
               "--cloze", "6", "--out", str(out), "--no-progress"])
    assert rc == 0
    cloze = json.loads(out.read_text())["cloze"]
    direct = evaluate_cloze(load_model(model_dir), dataset_dir, 6, context_tokens=16, seed=0)
    assert cloze["n"] == 6 and cloze["context_tokens"] == 16
    assert cloze["acc"] == direct["acc"] and cloze["ppl"] == pytest.approx(direct["ppl"], rel=1e-6)


@pytest.mark.parametrize("argv,line", [
    (["--cloze", "0"], "decaylab eval: error: argument --cloze: must be >= 1, got 0 (see decaylab eval --help)"),
    (["--cloze", "many"], "decaylab eval: error: argument --cloze: expected an integer, got 'many' "
                          "(see decaylab eval --help)"),
    (["--cloze", "5", "--recall"], "decaylab eval: error: --cloze needs --data DATASET_DIR"),
])
def test_eval_command_refuses_a_bad_cloze_option_in_one_line(argv, line, capsys):
    from decaylab.cli import main

    try:
        rc = main(["eval", "model", *argv])
    except SystemExit as e:  # argparse
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().splitlines() == [line]


def test_sweep_piece_is_computed_for_an_evaluation_recorded_before_it(model_dir, dataset_dir, tmp_path):
    pytest.importorskip("lm_eval")
    from decaylab.sweep.evaluation import evaluate_run
    from decaylab.sweep.rundir import EVAL_FILE, run_metrics

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("config.json", "model.safetensors"):
        (run_dir / name).write_bytes((model_dir / name).read_bytes())
    old = {"extrapolation": {"buckets": []}, "recall": {"skipped": "off"}, "recall_curve": {"skipped": "off"},
           "decay": {"layers": []}, "initial_decay": {"layers": []}, "complete": True}
    (run_dir / EVAL_FILE).write_text(json.dumps(old))
    settings = {"seq_len": 32}
    spec = {"run_id": "r", "seed": 0, "design": {"decay": "gla"}, "train": {"data": {"dir": str(dataset_dir)}},
            "evaluation": settings}
    record = evaluate_run(run_dir, spec)  # a run.json written before the piece: no cloze_examples
    assert record == {**old, "cloze": {"skipped": "cloze_examples = 0 at this scale"}}
    (run_dir / EVAL_FILE).write_text(json.dumps(old))
    record = evaluate_run(run_dir, {**spec, "evaluation": {**settings, "cloze_examples": 5}})
    assert {k: v for k, v in record.items() if k != "cloze"} == old and record["cloze"]["n"] == 5
    metrics = run_metrics(run_dir)
    assert metrics["cloze_acc"] == record["cloze"]["acc"] and metrics["cloze_ppl"] == record["cloze"]["ppl"]
