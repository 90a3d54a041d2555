"""Training: schedules, optimizer groups, config parsing, checkpoints (atomic, exact resume after
SIGKILL, finished runs not redone) and NaN detection. CPU, tiny model, a few steps."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from decaylab.train import ConfigError, TrainConfig, TrainingDiverged, evaluate, load_config, train
from decaylab.train import build, checkpoint
from decaylab.train.config import apply_overrides, build_config
from decaylab.train.metrics import MetricsLog, read_metrics
from decaylab.train.optim import learning_rate, make_optimizer, warmup_cosine, warmup_stable_decay

REPO = Path(__file__).resolve().parents[1]
WORDS = ("the a decay state key value query model layer token train linear attention memory head gate "
         "norm scale step loss rate slow fast long short old new small large first last").split()


def write_corpus(path: Path, n_docs: int = 120, seed: int = 0) -> Path:
    """A JSONL corpus of simple sentences (enough structure for a tiny model to learn)."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n_docs):
            sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))).capitalize() + "."
                         for _ in range(rng.randint(10, 30))]
            f.write(json.dumps({"text": " ".join(sentences)}) + "\n")
    return path


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    from decaylab.data import prepare_dataset

    root = tmp_path_factory.mktemp("data")
    return prepare_dataset(write_corpus(root / "corpus.jsonl"), root / "ds", vocab_size=320, progress=False)


def tiny_config(run_dir: Path, dataset_dir: Path, **fields) -> TrainConfig:
    values = dict(
        run_dir=str(run_dir), model={"size": "micro"}, data={"source": None, "dir": str(dataset_dir)},
        seq_len=32, micro_batch_size=4, steps=8, lr=3e-3, warmup_steps=2, eval_every=4, eval_batches=2,
        final_eval_batches=4, eval_batch_size=4, log_every=1, ckpt_every=2, keep_checkpoints=5,
        progress=False, tensorboard=False,
    )
    values.update(fields)
    return build_config(values)


def trajectory(run_dir: Path) -> list[tuple]:
    keys = ("step", "loss", "lr", "grad_norm", "tokens", "val_loss", "val_ppl")
    return [tuple(r.get(k) for k in keys) for r in read_metrics(run_dir)]


# --------------------------------------------------------------------------- schedules, optimizer


def test_warmup_cosine_closed_form():
    peak, minimum, warmup, total = 1e-3, 1e-4, 10, 110
    kw = dict(peak=peak, minimum=minimum, warmup=warmup, total=total)
    assert warmup_cosine(0, **kw) == pytest.approx(peak / warmup)
    assert warmup_cosine(4, **kw) == pytest.approx(peak * 5 / warmup)
    assert warmup_cosine(9, **kw) == pytest.approx(peak)
    assert warmup_cosine(10, **kw) == pytest.approx(peak)
    assert warmup_cosine(60, **kw) == pytest.approx((peak + minimum) / 2)
    assert warmup_cosine(35, **kw) == pytest.approx(minimum + (peak - minimum) * 0.5 * (1 + math.cos(math.pi / 4)))
    assert warmup_cosine(110, **kw) == pytest.approx(minimum)


def test_warmup_stable_decay_closed_form():
    kw = dict(peak=2.0, minimum=0.2, warmup=4, total=100, decay_fraction=0.2)
    assert warmup_stable_decay(0, **kw) == pytest.approx(0.5)
    assert warmup_stable_decay(3, **kw) == pytest.approx(2.0)
    assert warmup_stable_decay(50, **kw) == pytest.approx(2.0)
    assert warmup_stable_decay(79, **kw) == pytest.approx(2.0)
    assert warmup_stable_decay(80, **kw) == pytest.approx(2.0)
    assert warmup_stable_decay(90, **kw) == pytest.approx(1.1)
    assert warmup_stable_decay(99, **kw) == pytest.approx(2.0 - 1.8 * 19 / 20)
    cfg = TrainConfig(lr=2.0, min_lr_ratio=0.1, warmup_steps=4, steps=100, schedule="wsd", wsd_decay_fraction=0.2)
    assert [learning_rate(s, cfg) for s in (0, 50, 90)] == pytest.approx([0.5, 2.0, 1.1])


def test_weight_decay_only_on_matrices():
    model = torch.nn.Sequential(torch.nn.Embedding(5, 4), torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    opt = make_optimizer(model, TrainConfig(lr=0.5, weight_decay=0.1))
    assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in model.parameters() if p.ndim >= 2}
    assert opt.param_groups[1]["weight_decay"] == 0.0
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # a zero gradient: AdamW's update is the decay alone
    opt.step()
    for name, p in model.named_parameters():
        expected = before[name] * (1 - 0.5 * 0.1) if p.ndim >= 2 else before[name]
        torch.testing.assert_close(p.detach(), expected, msg=name)


# --------------------------------------------------------------------------- config


def test_config_overrides_and_files(tmp_path):
    (tmp_path / "c.yaml").write_text("steps: 50\nlr: 3e-4\nmodel:\n  size: small\n  overrides: {decay: gla}\n")
    cfg = load_config(tmp_path / "c.yaml", ["model.overrides.decay_granularity=scalar", "progress=false",
                                            "final_eval_batches=null", "data.source=null"])
    assert (cfg.steps, cfg.lr, cfg.progress, cfg.final_eval_batches) == (50, 3e-4, False, None)
    assert cfg.model == {"size": "small", "arch": "decay_linear",
                         "overrides": {"decay": "gla", "decay_granularity": "scalar"}}
    assert cfg.data["source"] is None and cfg.data["dir"] == TrainConfig().data["dir"]
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    assert load_config(tmp_path / "c.json") == cfg


@pytest.mark.parametrize("override, key", [
    ("stepz=3", "stepz"), ("steps=3.5", "steps"), ("lr=fast", "lr"), ("progress=maybe", "progress"),
    ("schedule=linear", "schedule"), ("model.sise=tiny", "model.sise"), ("data.vocab_size=big", "data.vocab_size"),
    ("parallel=zero", "parallel"), ("steps", "steps"),
])
def test_config_errors_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_config_file_unknown_key(tmp_path):
    (tmp_path / "bad.yaml").write_text("lr: 1e-3\nwarmup: 10\n")
    with pytest.raises(ConfigError, match="'warmup'"):
        load_config(tmp_path / "bad.yaml")
    assert apply_overrides({}, ["model.overrides.share_decay_key=true"]) == {"model": {"overrides": {"share_decay_key": True}}}
    assert load_config(None, ['model={"size": "small"}']).model["size"] == "small"


def test_help_lists_every_field_with_its_default():
    import argparse
    import dataclasses

    from decaylab.commands.train import add_arguments

    parser = argparse.ArgumentParser(prog="decaylab train")
    add_arguments(parser)
    text = parser.format_help()
    for f in dataclasses.fields(TrainConfig):
        assert f"  {f.name} = " in text, f.name
    assert "lr = 0.003" in text and '"size": "tiny"' in text


def test_example_configs_load():
    files = sorted((REPO / "configs" / "train").glob("*.yaml"))
    assert files
    for f in files:
        load_config(f)


# --------------------------------------------------------------------------- checkpoints


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, dataset_dir, monkeypatch):
    run_dir = tmp_path / "run"
    real_save = checkpoint.save_file

    def failing_save(tensors, filename, metadata=None):
        if "step_0000004" in filename:
            real_save(tensors, filename, metadata=metadata)  # the file is there, then the save dies
            raise OSError("disk full (simulated)")
        real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", failing_save)
    with pytest.raises(OSError, match="simulated"):
        train(tiny_config(run_dir, dataset_dir))
    root = run_dir / "checkpoints"
    assert (root / "latest").read_text().strip() == "step_0000002"
    assert not (root / "step_0000004").exists()
    weights, state = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(run_dir))
    assert state["step"] == 2 and all(torch.isfinite(w).all() for w in weights.values())

    monkeypatch.setattr(checkpoint, "save_file", real_save)
    final = train(tiny_config(run_dir, dataset_dir))  # resumes from step 2
    assert final["steps"] == 8 and not list(root.glob(".tmp-*"))
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, 9))


@pytest.mark.parametrize("log_every", [1, 3])  # 3: step 5's loss is read back only at step 6, a checkpoint step
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, dataset_dir, monkeypatch, log_every):
    run_dir = tmp_path / "run"
    real_make_model = build.make_model
    calls = {"train_forward": 0}

    def poisoned_model(spec, vocab_size):
        model = real_make_model(spec, vocab_size)

        def poison(module, args, output):
            if module.training:
                calls["train_forward"] += 1
                if calls["train_forward"] == 5:  # the forward pass of step 5
                    output.loss = output.loss * float("nan")
            return output

        model.register_forward_hook(poison)
        return model

    monkeypatch.setattr(build, "make_model", poisoned_model)
    with pytest.raises(TrainingDiverged, match=r"step 5\b.*step_0000004.*intact"):
        train(tiny_config(run_dir, dataset_dir, log_every=log_every))
    last = checkpoint.latest_checkpoint(run_dir)
    assert last.name == "step_0000004"
    weights, state = checkpoint.load_checkpoint(last)
    assert state["step"] == 4 and all(torch.isfinite(w).all() for w in weights.values())
    assert not (run_dir / "final.json").exists()


def test_fused_adamw_skips_a_non_finite_step_on_the_device():
    """optimizer_step with a fused AdamW (the GPU's optimizer; fused runs on CPU too) leaves the
    parameters, moments and step count as they were when the loss is NaN, like the host check does."""
    from decaylab.model import build_model, make_config
    from decaylab.train.step import optimizer_step, single_process

    class Batches:
        def __init__(self):
            self.poison = False

        def batch(self, step, batch_size, seq_len, **_):
            x = torch.randint(0, 512, (batch_size, seq_len + 1), generator=torch.Generator().manual_seed(step))
            return x[:, :-1], x[:, 1:].masked_fill(torch.tensor(self.poison), -100)  # no targets: NaN mean loss

    torch.manual_seed(0)
    model = build_model(make_config("micro"))
    cfg = TrainConfig(seq_len=16, micro_batch_size=2, steps=4, lr=1e-2, warmup_steps=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, fused=True)
    data, rt = Batches(), single_process(model)

    def snapshot():
        state = [{k: v.clone() for k, v in optimizer.state[p].items()} for p in model.parameters()]
        return [p.detach().clone() for p in model.parameters()], state

    optimizer_step(model, optimizer, data, 0, cfg, rt, torch.autocast("cpu", enabled=False))
    before = snapshot()
    data.poison = True
    loss, grad_norm, _ = optimizer_step(model, optimizer, data, 1, cfg, rt, torch.autocast("cpu", enabled=False))
    assert not torch.isfinite(loss)
    after = snapshot()
    assert all(torch.equal(a, b) for a, b in zip(before[0], after[0]))
    assert all(torch.equal(a[k], b[k]) for a, b in zip(before[1], after[1]) for k in a)
    assert not hasattr(optimizer, "found_inf")
    data.poison = False
    optimizer_step(model, optimizer, data, 2, cfg, rt, torch.autocast("cpu", enabled=False))
    assert not all(torch.equal(a, p) for a, p in zip(before[0], model.parameters()))


def test_checkpoint_loads_without_code_and_as_pretrained(tmp_path, dataset_dir):
    run_dir = tmp_path / "run"
    final = train(tiny_config(run_dir, dataset_dir, steps=2, keep_checkpoints=1))
    assert final["val_ppl"] == pytest.approx(math.exp(final["val_loss"]))
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["latest", "step_0000002"]
    path = checkpoint.latest_checkpoint(run_dir)
    _, state = checkpoint.load_checkpoint(path)  # torch.load(weights_only=True) inside
    assert set(state) >= {"step", "optimizer", "rng", "schedule", "data", "clock"}
    from transformers import AutoModelForCausalLM

    import decaylab.model  # noqa: F401  (registers the model with Auto*)

    from decaylab.data import TokenDataset

    model = AutoModelForCausalLM.from_pretrained(path)
    val = TokenDataset.open(dataset_dir, "val")
    assert model(input_ids=torch.zeros(1, 4, dtype=torch.long)).logits.shape == (1, 4, val.vocab_size)
    # The saved weights are the final ones: the final validation comes out the same.
    assert evaluate(model, val, seq_len=32, batch_size=4, max_batches=4)["val_loss"] == pytest.approx(final["val_loss"], rel=1e-6)


def test_evaluations_log_how_many_validation_tokens_they_saw(tmp_path, dataset_dir):
    """Each evaluation in metrics.jsonl records its target tokens: eval_batches batches of windows
    during training, final_eval_batches at the end (so a report can tell comparable ones apart)."""
    from decaylab.data import TokenDataset

    run_dir = tmp_path / "run"
    train(tiny_config(run_dir, dataset_dir, steps=8, eval_every=4, eval_batches=1, final_eval_batches=2))
    windows = len(TokenDataset.open(dataset_dir, "val")) // 32
    assert windows >= 8, "the test dataset is too small to tell 1 batch of 4 windows from 2"
    seen = {r["step"]: r["val_tokens"] for r in read_metrics(run_dir) if "val_loss" in r}
    assert seen == {4: 1 * 4 * 32, 8: 2 * 4 * 32}


def test_first_step_is_logged_with_its_time_and_later_windows_leave_it_out(tmp_path, dataset_dir):
    """With log_every = 4 the log holds steps 1 (with ``first_step_s``: the compile shows there), 4 and 8,
    and the window of step 4 counts only the tokens of steps 2 to 4."""
    train(tiny_config(tmp_path, dataset_dir, log_every=4, eval_every=0, ckpt_every=8))
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 4, 8]
    assert rows[0]["first_step_s"] > 0 and not any("first_step_s" in r for r in rows[1:])
    tokens_per_step = 4 * 32
    assert rows[0]["tokens_per_s"] == pytest.approx(tokens_per_step / rows[0]["first_step_s"])
    assert rows[1]["tokens"] - rows[0]["tokens"] == 3 * tokens_per_step


def test_metrics_log_drops_records_after_the_resume_step_and_a_cut_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"ste')
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    log = MetricsLog(tmp_path, start_step=2, enabled=True, tensorboard=False)
    log.write({"step": 3, "loss": 1.5})
    log.close()
    assert read_metrics(tmp_path) == [{"step": 1}, {"step": 2}, {"step": 3, "loss": 1.5}]


# --------------------------------------------------------------------------- exact resume


def test_sigkill_and_resume_is_exact(tmp_path, dataset_dir):
    steps = 12
    fields = dict(steps=steps, ckpt_every=4, eval_every=4)
    reference = tmp_path / "reference"
    expected = train(tiny_config(reference, dataset_dir, **fields))

    run_dir = tmp_path / "killed"
    cfg_file = tmp_path / "train.json"
    cfg_file.write_text(json.dumps(tiny_config(run_dir, dataset_dir, **fields).to_dict()))
    command = [sys.executable, "-m", "decaylab.train", "--config", str(cfg_file)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    def logged_steps() -> int:  # complete lines only: the file is being written
        path = run_dir / "metrics.jsonl"
        return path.read_text().count("\n") if path.exists() else 0

    # Kill once a checkpoint exists and a step after it has been logged, so that the restart
    # must also drop the log records the checkpoint does not cover.
    latest = run_dir / "checkpoints" / "latest"
    deadline = time.time() + 120
    while not (latest.exists() and logged_steps() > 4) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-2000:]
    assert not (run_dir / "final.json").exists(), "the run finished before it could be killed"
    assert 4 < max(r["step"] for r in read_metrics(run_dir)) < steps

    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert trajectory(run_dir) == trajectory(reference)
    final = json.loads((run_dir / "final.json").read_text())
    for key in ("val_loss", "val_ppl", "train_loss", "tokens", "params", "steps"):
        assert final[key] == expected[key], key

    # A finished run is detected and not redone.
    before = (run_dir / "metrics.jsonl").stat().st_mtime_ns
    assert train(tiny_config(run_dir, dataset_dir, **fields)) == final
    assert (run_dir / "metrics.jsonl").stat().st_mtime_ns == before


def test_gradient_accumulation_matches_one_large_batch(tmp_path, dataset_dir):
    fields = dict(steps=4, eval_every=2, schedule="wsd", wsd_decay_fraction=0.5)
    train(tiny_config(tmp_path / "large", dataset_dir, micro_batch_size=4, **fields))
    train(tiny_config(tmp_path / "accum", dataset_dir, micro_batch_size=1, grad_accum=4, **fields))
    large, accum = trajectory(tmp_path / "large"), trajectory(tmp_path / "accum")
    assert [r[0] for r in accum] == [r[0] for r in large] == [1, 2, 3, 4]
    for a, b in zip(accum, large):
        assert [x for x in a if x is not None] == pytest.approx([x for x in b if x is not None], rel=1e-5)


def test_resume_refuses_a_changed_config(tmp_path, dataset_dir):
    run_dir = tmp_path / "run"
    train(tiny_config(run_dir, dataset_dir, steps=2))
    (run_dir / "final.json").unlink()
    with pytest.raises(ConfigError, match=r"lr: 0\.003 there, 0\.001 now"):
        train(tiny_config(run_dir, dataset_dir, steps=2, lr=1e-3))
    with pytest.raises(ConfigError, match="global batch of 4"):
        train(tiny_config(run_dir, dataset_dir, steps=2, micro_batch_size=2))
    train(tiny_config(run_dir, dataset_dir, steps=2, micro_batch_size=2, grad_accum=2))  # same global batch


def test_cuda_graphs_with_gradient_accumulation_are_refused():
    """reduce-overhead replays overwrite the gradients of earlier micro-steps (measured on an H200):
    the config names the conflict and both ways out; one micro-step, compile off, or a run on the CPU
    (no CUDA graphs there) is accepted."""
    with pytest.raises(ConfigError, match=r"grad_accum=4.*grad_accum=1.*compile_mode=default"):
        TrainConfig(compile_mode="reduce-overhead", grad_accum=4, device="cuda")
    assert TrainConfig(compile_mode="reduce-overhead", grad_accum=1, device="cuda").grad_accum == 1
    assert TrainConfig(compile_mode="reduce-overhead", grad_accum=4, compile="false", device="cuda").grad_accum == 4
    assert TrainConfig(compile_mode="reduce-overhead", grad_accum=4, device="cpu").grad_accum == 4
    if not torch.cuda.is_available():  # compile=auto, device=auto on a machine without CUDA: no graphs
        assert TrainConfig(compile_mode="reduce-overhead", grad_accum=4).grad_accum == 4
