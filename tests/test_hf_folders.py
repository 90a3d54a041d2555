"""Model folders that plain transformers loads: a trained micro run's checkpoint and its export load in a
fresh process that never imports decaylab (trust_remote_code=True) with identical logits, the tokenizer
loads with AutoTokenizer, the pipeline generates, and a missing decaylab package is named. CI runs this
file on the lowest supported transformers release too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from decaylab.cli import main
from decaylab.evaluate.loading import load_model, load_model_tokenizer
from decaylab.model.folder import REMOTE_CODE_FILE
from decaylab.train import train
from decaylab.train.checkpoint import latest_checkpoint
from tests.test_train import tiny_config, write_corpus
from tests.conftest import write_choice_task

PROMPTS = ["The decay state of a slow key", "A"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A micro model trained for 4 steps on a 320-token BPE of a small synthetic corpus."""
    from decaylab.data import prepare_dataset

    root = tmp_path_factory.mktemp("hf")
    data = prepare_dataset(write_corpus(root / "corpus.jsonl", n_docs=40), root / "ds", vocab_size=320, progress=False)
    train(tiny_config(root / "run", data, steps=4, eval_every=0, ckpt_every=2, keep_checkpoints=1))
    return root / "run"


FRESH = r"""
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
folder, prompts = sys.argv[1], json.loads(sys.argv[2])
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
ids = tok(prompts[0], return_tensors="pt").input_ids
with torch.no_grad():
    logits = model(ids).logits
generator = pipeline("text-generation", model=folder, trust_remote_code=True)
texts = [o[0]["generated_text"] for o in generator(prompts, max_new_tokens=6, do_sample=False, batch_size=2)]
print(); json.dump({"ids": ids.tolist(), "logits": logits.tolist(), "texts": texts, "eos": [tok.eos_token_id,
           model.config.eos_token_id, model.generation_config.eos_token_id, tok.pad_token_id], "side": tok.padding_side}, sys.stdout)  # last line
"""


def run_fresh(folder: Path, script: str = FRESH) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, str(folder), json.dumps(PROMPTS)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)


def test_checkpoint_and_export_load_in_a_process_without_decaylab(run_dir, tmp_path):
    checkpoint = latest_checkpoint(run_dir)
    assert {"model.safetensors", "config.json", "generation_config.json", REMOTE_CODE_FILE, "tokenizer.json",
            "tokenizer_config.json"} <= {p.name for p in checkpoint.iterdir()}
    assert main(["export", str(run_dir), str(tmp_path / "model")]) == 0
    assert not (tmp_path / "model" / "state.pt").exists()

    tokenizer = load_model_tokenizer(run_dir)
    model = load_model(run_dir)
    eot = tokenizer.eos_token_id
    for folder in (checkpoint, tmp_path / "model"):
        res = run_fresh(folder)
        assert res.returncode == 0, res.stderr[-3000:]
        got = json.loads(res.stdout.splitlines()[-1])
        assert got["eos"] == [eot] * 4 and got["side"] == "left"
        ids = torch.tensor(got["ids"])
        assert ids.tolist() == [tokenizer.encode(PROMPTS[0])]
        with torch.no_grad():
            # same weights and code; a process with another thread count may sum in another order
            torch.testing.assert_close(torch.tensor(got["logits"]), model(ids).logits, rtol=1e-5, atol=1e-5)
        for prompt, text in zip(PROMPTS, got["texts"]):  # the batch was left padded; each continues greedily
            ids = torch.tensor([tokenizer.encode(prompt)])
            out = model.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=eot, pad_token_id=eot)
            assert text == tokenizer.decode(out[0], skip_special_tokens=True)


def test_a_missing_decaylab_package_is_named(run_dir):
    blocked = """
import sys
class NoDecaylab:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "decaylab":
            raise ModuleNotFoundError("No module named 'decaylab'")
sys.meta_path.insert(0, NoDecaylab())
from transformers import AutoModelForCausalLM
AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True)
"""
    res = run_fresh(latest_checkpoint(run_dir), blocked)
    assert res.returncode != 0
    assert "decaylab" in res.stderr.splitlines()[-1] and "pip install decaylab" in res.stderr


def test_export_refuses_an_existing_directory(run_dir, tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(SystemExit, match="already exists"):
        main(["export", str(run_dir), str(tmp_path / "taken")])


def test_lm_eval_hf_model_on_an_exported_folder_gives_the_adapters_numbers(run_dir, tmp_path):
    """``lm_eval --model hf`` (a separate process) on a local JSONL multiple-choice task: its per-choice
    log-likelihoods and accuracy are those of decaylab's adapter on the run directory."""
    from lm_eval.api.instance import Instance

    from decaylab.evaluate.lm_eval_adapter import DecaylabLM

    folder = tmp_path / "model"
    main(["export", str(run_dir), str(folder)])
    adapter = DecaylabLM(pretrained=str(run_dir), batch_size=2, device="cpu")
    questions = [("The decay", [" state", " key", " slow"]), ("A model", [" layer", " token"]),
                 ("The first", [" step", " loss", " rate", " head"]), ("Small", [" large", " gate"])]
    docs, expected = [], []
    for i, (question, choices) in enumerate(questions):  # the model's own choice on even docs, another on odd
        scores = adapter.loglikelihood([Instance("loglikelihood", {}, (question, c), j) for j, c in enumerate(choices)])
        best = max(range(len(choices)), key=lambda j: scores[j][0])
        docs.append({"question": question, "choices": choices, "label": best if i % 2 == 0 else (best + 1) % len(choices)})
        expected.append([s[0] for s in scores])
    write_choice_task(tmp_path, docs)
    lm_eval = Path(sys.executable).with_name("lm_eval")
    res = subprocess.run([str(lm_eval), "--model", "hf", "--model_args", f"pretrained={folder},trust_remote_code=True",
                          "--tasks", "toy_choice", "--include_path", str(tmp_path), "--device", "cpu",
                          "--batch_size", "2", "--output_path", str(tmp_path / "out"), "--log_samples"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    assert results["results"]["toy_choice"]["acc,none"] == pytest.approx(0.5)
    samples = [json.loads(line) for line in next((tmp_path / "out").rglob("samples_toy_choice_*.jsonl")).open()]
    for sample in samples:
        got = [float(r[0]) for r in sample["filtered_resps"]]
        assert got == pytest.approx(expected[sample["doc_id"]], rel=1e-5, abs=1e-5)
