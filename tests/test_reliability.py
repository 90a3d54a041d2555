"""Issue 14: no silent wrong results, no data loss. One test per defect found by probing the
CLI and the library as a careless or hostile user would: every one failed before the fix."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from decaylab.cli import main as cli_main
from decaylab.lock import LOCK_FILE, Locked, exclusive_lock
from decaylab.model import DecayLinearConfig, build_model, make_config
from decaylab.ops import decode_step
from decaylab.train import ConfigError, load_config, train
from decaylab.train import build, checkpoint, loop
from decaylab.train.metrics import read_metrics
from tests.test_train import REPO, dataset_dir, tiny_config, trajectory  # noqa: F401  (dataset_dir is a fixture)

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


# --------------------------------------------------------------------------- one writer per run directory


def test_lock_is_exclusive_across_processes_and_reentrant_within_one(tmp_path):
    holder = subprocess.Popen(  # takes the lock as decaylab.lock does: flock, then its pid in the file
        [sys.executable, "-S", "-c", "import fcntl, os, time\n"
         f"fd = os.open({str(tmp_path / LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'%d\\n' % os.getpid())\n"
         "print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Locked, match=rf"in use by another process \(pid {holder.pid}\b"):
            with exclusive_lock(tmp_path / LOCK_FILE):
                pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive_lock(tmp_path / LOCK_FILE):  # the kernel dropped the killed holder's lock
        with exclusive_lock(tmp_path / LOCK_FILE):  # re-entrant in one process (the sweep's worker)
            assert int((tmp_path / LOCK_FILE).read_text()) == os.getpid()


def test_second_train_on_a_run_dir_is_refused_and_the_first_completes(tmp_path, dataset_dir):
    run_dir = tmp_path / "run"
    cfg = tiny_config(run_dir, dataset_dir, steps=20, ckpt_every=10, eval_every=10)
    cfg_file = tmp_path / "train.json"
    cfg_file.write_text(json.dumps(cfg.to_dict()))
    first = subprocess.Popen([sys.executable, "-m", "decaylab.train", "--config", str(cfg_file)],
                             cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while not metrics.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert first.poll() is None, "the first run ended before the second could start"
    with pytest.raises(Locked, match=rf"{run_dir}.*pid {first.pid}\b"):
        train(cfg)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, 21))
    assert json.loads((run_dir / "final.json").read_text())["steps"] == 20


def test_finished_run_is_returned_only_for_its_own_config(tmp_path, dataset_dir):
    run_dir = tmp_path / "run"
    final = train(tiny_config(run_dir, dataset_dir, steps=2))
    assert train(tiny_config(run_dir, dataset_dir, steps=2, progress=True)) == final  # a reporting field
    with pytest.raises(ConfigError, match=r"finished run.*lr: 0\.003 there, 0\.001 now"):
        train(tiny_config(run_dir, dataset_dir, steps=2, lr=1e-3))
    with pytest.raises(ConfigError, match=r"finished run.*steps: 2 there, 3 now"):
        train(tiny_config(run_dir, dataset_dir, steps=3))
    with pytest.raises(ConfigError, match=r"finished run.*global batch of 4"):
        train(tiny_config(run_dir, dataset_dir, steps=2, micro_batch_size=2))
    (run_dir / "final.json").write_text("{\"steps\": 2, ")
    with pytest.raises(ConfigError, match=r"final\.json.*cannot be read.*delete"):
        train(tiny_config(run_dir, dataset_dir, steps=2))


# --------------------------------------------------------------------------- checks before the first step


def _count_steps(monkeypatch) -> dict:
    """Count data loading and training steps of the runs that follow."""
    calls = {"data": 0, "steps": 0}
    real_open, real_step = build.open_datasets, loop.optimizer_step

    def open_datasets(*args, **kwargs):
        calls["data"] += 1
        return real_open(*args, **kwargs)

    def optimizer_step(*args, **kwargs):
        calls["steps"] += 1
        return real_step(*args, **kwargs)

    monkeypatch.setattr(build, "open_datasets", open_datasets)
    monkeypatch.setattr(loop, "optimizer_step", optimizer_step)
    return calls


def test_read_only_run_dir_is_refused_before_loading_data(tmp_path, dataset_dir, monkeypatch):
    if os.geteuid() == 0:  # permissions do not bind root: take a directory of a read-only file system
        run_dir = Path("/sys/kernel")
    else:
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        run_dir.chmod(0o555)
    calls = _count_steps(monkeypatch)
    with pytest.raises(PermissionError, match=rf"run_dir {run_dir} is not writable"):
        train(tiny_config(run_dir, dataset_dir))
    assert calls == {"data": 0, "steps": 0}


def test_short_validation_split_is_refused_before_step_1(tmp_path, dataset_dir, monkeypatch):
    from decaylab.data import TokenDataset

    val_tokens = len(TokenDataset.open(dataset_dir, "val"))
    calls = _count_steps(monkeypatch)
    with pytest.raises(ConfigError, match=rf"val split .* has {val_tokens} tokens, fewer than seq_len \+ 1"):
        train(tiny_config(tmp_path / "run", dataset_dir, seq_len=val_tokens, micro_batch_size=1))
    assert calls == {"data": 1, "steps": 0}


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("damaged", [checkpoint.MODEL_FILE, checkpoint.STATE_FILE])
def test_truncated_latest_checkpoint_falls_back_to_the_intact_older_one(tmp_path, dataset_dir, damaged, caplog):
    run_dir = tmp_path / "run"
    cfg = tiny_config(run_dir, dataset_dir, steps=6, ckpt_every=2, eval_every=2)
    final = train(cfg)
    expected = trajectory(run_dir)
    latest = checkpoint.latest_checkpoint(run_dir)
    assert latest.name == "step_0000006"
    path = latest / damaged
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    (run_dir / "final.json").unlink()
    with caplog.at_level(logging.WARNING, logger="decaylab.train.checkpoint"):
        assert train(cfg)["val_loss"] == final["val_loss"]
    assert "step_0000006 is corrupt" in caplog.text and "resuming from" in caplog.text
    assert caplog.records[-1].getMessage().endswith("step_0000004, the newest intact checkpoint")
    assert trajectory(run_dir) == expected  # steps 5 and 6 redone exactly from step 4


def _saved_micro_model(path: Path, **fields) -> Path:
    build_model(make_config("micro", **fields)).save_pretrained(path)
    return path


@pytest.mark.parametrize("edit", [{"decay": "mamba2"}, {"model_type": "llama", "num_attention_heads": 4,
                                                        "num_key_value_heads": 4}])
def test_loading_weights_that_do_not_fit_the_config_is_an_error(tmp_path, edit):
    from decaylab.evaluate.loading import load_model

    model_dir = _saved_micro_model(tmp_path / "model", decay="gla")
    load_model(model_dir)  # as saved: loads
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, **edit}))
    with pytest.raises(ValueError, match=r"weights do not match .*(missing|unexpected)"):
        load_model(model_dir)


# --------------------------------------------------------------------------- model overrides


def test_override_typo_is_refused_with_the_closest_field():
    with pytest.raises(ConfigError, match=r"model\.overrides\.decay_granulrity; did you mean "
                                          r"model\.overrides\.decay_granularity\?"):
        load_config(None, ["model.overrides.decay_granulrity=scalar"])


@pytest.mark.parametrize("text,value", [("true", True), ("True", True), ("1", True),
                                        ("false", False), ("False", False), ("0", False)])
def test_string_booleans_reach_the_model_as_booleans(text, value):
    cfg = load_config(None, ["model.size=micro", "model.overrides.decay=gla",
                             f"model.overrides.share_decay_key={text}"])
    assert cfg.model["overrides"]["share_decay_key"] is value
    model = build.make_model(cfg.model, vocab_size=512)
    assert model.config.share_decay_key is value
    assert (model.model.layers[0].attn.f_proj is None) is value  # a shared key has no decay projection


@pytest.mark.parametrize("override,message", [
    ("model.overrides.share_decay_key=maybe", r"share_decay_key: expected true/false"),
    ("model.overrides.hidden_size=100", r"hidden_size=100 must equal num_heads x head_dim = 3 x 32"),
    ("model.overrides.rope_theta=-1", r"rope_theta=-1\.0 must be a finite number > 0"),
    ("model.overrides.rms_norm_eps=-1", r"rms_norm_eps=-1\.0 must be a finite number > 0"),
    ("model.overrides.rms_norm_eps=nan", r"rms_norm_eps=nan must be a finite number > 0"),
    ("model.overrides.junk=1", r"unknown model field model\.overrides\.junk"),
])
def test_bad_model_overrides_are_refused_when_the_config_is_loaded(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_model_config_refuses_inconsistent_sizes_and_constants():
    with pytest.raises(ValueError, match=r"hidden_size=100 must equal num_heads x head_dim"):
        DecayLinearConfig(hidden_size=100, head_dim=32)
    with pytest.raises(ValueError, match=r"hidden_size=64 must equal num_heads x head_dim = 3 x 16"):
        DecayLinearConfig(hidden_size=64, head_dim=16, num_heads=3)
    with pytest.raises(ValueError, match=r"rope_theta=0 .*; rms_norm_eps=-1e-06"):
        DecayLinearConfig(rope_theta=0, rms_norm_eps=-1e-6)


# --------------------------------------------------------------------------- operator and model inputs


@pytest.mark.parametrize("bad", [0.5, float("nan")])
def test_decode_step_refuses_positive_or_nan_log_decay(bad):
    q, k, v = torch.randn(3, 2, 1, 2, 4).unbind(0)
    g = -torch.rand(1, 2, 4)
    g[0, 1, 2] = bad
    state = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match=r"decode_step: log_decay must be <= 0"):
        decode_step(q, k, v, g, state)
    assert torch.equal(state, torch.zeros(1, 2, 4, 4))  # untouched


def test_triton_backend_off_cuda_says_what_to_use(monkeypatch):
    from decaylab.ops import decay_linear_attention

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    q = torch.randn(1, 4, 1, 8)
    with pytest.raises(ValueError, match=r"backend='triton' (runs on CUDA devices only|needs Triton).*backend='chunk'"):
        decay_linear_attention(q, q, q, -torch.rand(1, 4, 1), backend="triton")


def test_zero_length_input_ids_are_refused():
    model = build_model(make_config("micro"))
    with pytest.raises(ValueError, match=r"input_ids has no tokens \(shape \(2, 0\)\)"):
        model(input_ids=torch.zeros(2, 0, dtype=torch.long))


# --------------------------------------------------------------------------- one-line CLI errors


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    """(exit status, the one line on stderr) of ``decaylab ARGV`` run in this process."""
    capsys.readouterr()
    try:
        rc = cli_main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return rc, err.splitlines()[0]


@pytest.mark.parametrize("argv,line", [
    (["sweep", "--workers", "-1"], "decaylab sweep: error: argument --workers: must be >= 1, got -1 "
                                   "(see decaylab sweep --help)"),
    (["sweep", "--time-limit", "-1"], "decaylab sweep: error: argument --time-limit: must be > 0, got -1 "
                                      "(see decaylab sweep --help)"),
    (["sweep", "--steps", "0"], "decaylab sweep: error: argument --steps: must be >= 1, got 0 "
                                "(see decaylab sweep --help)"),
    (["eval", "m", "--seq-len", "0"], "decaylab eval: error: argument --seq-len: must be >= 1, got 0 "
                                      "(see decaylab eval --help)"),
    (["generate", "m", "--temperature", "-1"], "decaylab generate: error: argument --temperature: must be >= 0, "
                                               "got -1 (see decaylab generate --help)"),
    (["train", "model.overrides.decay_granulrity=scalar"],
     "decaylab train: error: unknown model field model.overrides.decay_granulrity; "
     "did you mean model.overrides.decay_granularity?"),
    (["train", "--config", "/nonexistent/train.yaml"],
     "decaylab train: error: config file /nonexistent/train.yaml does not exist"),
])
def test_user_mistakes_end_in_one_line_and_exit_status_2(argv, line, capsys):
    assert _cli(argv, capsys) == (2, line)


def test_errors_inside_a_command_are_one_line(tmp_path, capsys):
    model_dir = _saved_micro_model(tmp_path / "model")
    rc, line = _cli(["eval", str(tmp_path / "missing"), "--data", str(tmp_path)], capsys)
    assert rc == 2 and line.startswith(f"decaylab eval: error: {tmp_path / 'missing'} is neither a model directory")
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "decay": "mamba2"}))
    rc, line = _cli(["eval", str(model_dir), "--recall"], capsys)
    assert rc == 2 and line.startswith(f"decaylab eval: error: {model_dir}: the weights do not match")


def test_empty_prompt_is_one_line(tmp_path, capsys):
    from decaylab.data import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(["the cat sat on the mat"] * 10, vocab_size=280)
    tokenizer.backend_tokenizer.save(str(tmp_path / "tokenizer.json"))
    _saved_micro_model(tmp_path, vocab_size=len(tokenizer))
    assert _cli(["generate", str(tmp_path), "--prompt", ""], capsys) == (
        2, "decaylab generate: error: --prompt '' has no tokens; give some text to continue")


def test_debug_raises_the_error_itself():
    with pytest.raises(ConfigError, match="unknown model field"):
        cli_main(["train", "model.overrides.junk=1", "--debug"])


def test_the_torchrun_entry_point_exits_2_with_one_line(tmp_path):
    command = [sys.executable, "-m", "decaylab.train", "model.overrides.junk=1", f"run_dir={tmp_path}"]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("decaylab train: error: unknown model field")
    assert len(result.stderr.strip().splitlines()) == 1
