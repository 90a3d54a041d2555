"""The command line: dispatch, `space` and `generate`."""

import torch

from decaylab.cli import main
from decaylab.data import train_bpe_tokenizer
from decaylab.decay import design_space
from decaylab.model import build_model, make_config


def test_space_lists_every_valid_combination(capsys, tmp_path):
    assert main(["space", "--size", "micro", "--csv", str(tmp_path / "space.csv")]) == 0
    out = capsys.readouterr().out
    assert f"{len(design_space())} valid combinations" in out
    rows = (tmp_path / "space.csv").read_text().splitlines()
    assert len(rows) == len(design_space()) + 1
    tnl = [r for r in rows if r.startswith("tnl,scalar,False,none")][0]
    assert abs(float(tnl.split(",")[-1]) - 0.996) < 0.01  # median of exp(TNL's fixed log decays)


def micro_model_and_tokenizer(folder, seed: int):
    """A micro model and a 300-token BPE; the tokenizer is saved in ``folder`` as tokenizer.json."""
    texts = ["the cat sat on the mat and the dog sat on the log"] * 20
    tokenizer = train_bpe_tokenizer(texts, vocab_size=300)
    tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    torch.manual_seed(seed)
    return build_model(make_config("micro", vocab_size=len(tokenizer))).eval(), tokenizer


def test_generate_continues_greedily_from_a_saved_model(capsys, tmp_path):
    model, tokenizer = micro_model_and_tokenizer(tmp_path, seed=0)
    model.save_pretrained(tmp_path)
    assert main(["generate", str(tmp_path), "--prompt", "the cat", "--max-new-tokens", "5"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    ids = tokenizer("the cat", return_tensors="pt").input_ids
    with torch.no_grad():
        for _ in range(5):
            ids = torch.cat([ids, model(ids).logits[:, -1:].argmax(-1)], dim=1)
    assert printed == tokenizer.decode(ids[0], skip_special_tokens=True)


def test_generate_decodes_a_left_padded_batch_stops_at_eos_and_streams(capsys, tmp_path):
    model, tokenizer = micro_model_and_tokenizer(tmp_path, seed=1)
    eos = tokenizer.eos_token_id
    first = model(tokenizer("the dog", return_tensors="pt").input_ids).logits[0, -1].argmax()
    with torch.no_grad():  # "the dog" is followed by `first` and then by end-of-text
        model.lm_head.weight[eos] = model.lm_head.weight[first] + 1.0
    model.save_pretrained(tmp_path)
    prompts = ["the cat sat on the", "the dog"]
    argv = ["generate", str(tmp_path), "--max-new-tokens", "6", "--repetition-penalty", "1.0"]
    assert main(argv + [a for p in prompts for a in ("--prompt", p)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-2:]
    lengths = []
    for prompt, line in zip(prompts, printed):  # oracle: greedy recomputation, stopped after end-of-text
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        start = ids.shape[1]
        with torch.no_grad():
            for _ in range(6):
                ids = torch.cat([ids, model(ids).logits[:, -1:].argmax(-1)], dim=1)
                if ids[0, -1] == eos:
                    break
        assert line == tokenizer.decode(ids[0], skip_special_tokens=True)
        lengths.append(ids.shape[1] - start)
    assert lengths == [6, 2]  # the second prompt stopped at end-of-text
    assert main(argv + ["--prompt", "the dog", "--stream"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == printed[1]


def test_python_dash_m_decaylab_is_the_decaylab_command(tmp_path):
    """``python -m decaylab`` runs the same CLI as the console script: its exit status and one-line
    error for bad input (here an unknown preset)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "decaylab", "sweep", "--preset", "h200-optimal", "--list",
                           "--out", str(tmp_path / "s")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "tnl-scalar-sep-tpe-s2" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "decaylab", "sweep", "--preset", "nope"], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "nope" in bad.stderr and "Traceback" not in bad.stderr
