"""A sweep's recall record (``decaylab recall``): one fresh probe per (design of the asked families,
number of pairs, seed), each given exactly that task and design; a re-run trains only what is missing;
other settings are refused in one line; the time limit starts only what ends in time; the report
tabulates the record's means. CPU, micro probes of a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decaylab.cli import main as cli_main
from decaylab.decay import DecaySpec
from decaylab.evaluate import recall
from decaylab.sweep import recall as record_module
from decaylab.sweep.presets import SOFTMAX, Family, Scale, design_key
from decaylab.sweep.report import write_report
from decaylab.sweep.rundir import init_sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAMILIES = {
    "a": Family("a", "parameterization", "?", (DecaySpec("gla"), DecaySpec("sd-0.9"), SOFTMAX)),
    "b": Family("b", "sharing", "?", (DecaySpec("gla"), DecaySpec("gla", share_decay_key=True), SOFTMAX)),
    "c": Family("c", "granularity", "?", (DecaySpec("gla", "scalar"), DecaySpec("gla"), SOFTMAX)),
}
PROBE = ["--seq-len", "16", "--vocab", "16", "--steps", "3", "--batch", "4", "--size", "micro", "--workers", "1"]


@pytest.fixture
def sweep_dir(tmp_path) -> Path:
    """A sweep directory with no trained run (the record needs only its families)."""
    train = {"seq_len": 32, "micro_batch_size": 4, "grad_accum": 1, "steps": 2, "lr": 1e-3, "warmup_steps": 1,
             "schedule": "cosine", "eval_every": 0, "eval_batches": 1, "final_eval_batches": 1, "eval_batch_size": 4,
             "log_every": 1, "ckpt_every": 2}
    scale = Scale("test", "micro", {"source": None, "dir": "unused", "vocab_size": 320, "seed": 0}, train)
    init_sweep(tmp_path / "sweep", "test", FAMILIES, scale, (0,), {**scale.data, "dir": str(tmp_path / "data")})
    return tmp_path / "sweep"


@pytest.fixture
def given(monkeypatch) -> list[tuple[str, recall.RecallProbe, int]]:
    """What each probe trained was given: (design of its model config, probe, seed); the training is real."""
    seen, real = [], recall.train_and_eval_mqar

    def spy(config, probe, seed=0, **kw):
        design = "softmax" if config.model_type == "llama" else f"{config.decay}-{config.decay_granularity}"
        seen.append((design, probe, seed))
        return real(config, probe, seed=seed, **kw)

    monkeypatch.setattr(recall, "train_and_eval_mqar", spy)
    return seen


def test_recall_trains_one_probe_per_design_pairs_and_seed_of_the_asked_families(sweep_dir, given, capsys):
    assert cli_main(["recall", str(sweep_dir), "--families", "a,c", "--pairs", "1,2", "--seeds", "0,1", *PROBE]) == 0
    designs = ["softmax", "gla-vector", "sd-0.9-vector", "gla-scalar"]  # the reference, a, then what c adds (not b)
    assert list(dict.fromkeys(d for d, _, _ in given)) == designs  # in this order (the reference checks the task)
    assert sorted((d, p.num_pairs, s) for d, p, s in given) == sorted(
        (d, n, s) for d in designs for n in (1, 2) for s in (0, 1))
    assert {(p.seq_len, p.vocab_size, p.steps, p.batch_size, p.size) for _, p, _ in given} == {(16, 16, 3, 4, "micro")}
    record = json.loads((sweep_dir / "recall.json").read_text())
    assert len(record["points"]) == 16 and record["pairs"] == [1, 2] and record["families"] == ["a", "c"]
    assert all(p["chance"] == recall.MQARTask(16, p["num_pairs"], 16).chance == 1 / 8 for p in record["points"])
    assert record["invocations"][-1]["trained"] == 16

    # The report tabulates the mean over seeds for the families the record probed, and only those.
    curves = record_module.recall_curves(record)
    report = (sweep_dir / "report" / "report.md").read_text()
    assert (sweep_dir / "report" / "recall_pairs_c.png").read_bytes().startswith(PNG_MAGIC)
    assert not (sweep_dir / "report" / "recall_pairs_b.png").exists()
    rows = [line for line in report.splitlines() if line.startswith("| gla (scalar) | ") and line.count("|") == 4]
    assert len(rows) == 1  # family c's recall table (the family table has more columns)
    key = design_key(DecaySpec("gla", "scalar"))
    by_seed = [p["accuracy"] for p in record["points"] if p["design"]["granularity"] == "scalar" and p["num_pairs"] == 1]
    assert curves[key][1] == pytest.approx(sum(by_seed) / 2)
    assert rows[0] == f"| gla (scalar) | {curves[key][1]:.3f} | {curves[key][2]:.3f} |"
    assert "mean over seeds 0, 1" in report
    # 3 steps learn nothing: the report says the softmax reference did not reach 0.95, until it does.
    best = max(curves["softmax"].values())  # of the means over seeds
    assert report.count(f"**Not calibrated:** the softmax reference reaches at most {best:.3f}") == 2  # a and c
    for p in record["points"]:
        p["accuracy"] = 0.96 if p["design"]["decay"] is None else p["accuracy"]
    (sweep_dir / "recall.json").write_text(json.dumps(record))
    assert "Not calibrated" not in write_report(sweep_dir).read_text()


def test_a_rerun_trains_only_the_missing_points_and_other_settings_are_refused(sweep_dir, given, capsys):
    args = ["recall", str(sweep_dir), "--families", "c", *PROBE]
    assert cli_main([*args, "--pairs", "1"]) == 0 and len(given) == 3
    first = json.loads((sweep_dir / "recall.json").read_text())["points"]
    given.clear()
    assert cli_main([*args, "--pairs", "1,2"]) == 0
    assert sorted(p.num_pairs for _, p, _ in given) == [2, 2, 2]  # the 1-pair points were kept, not retrained
    record = json.loads((sweep_dir / "recall.json").read_text())
    assert record["points"][:3] == first and len(record["invocations"]) == 2
    given.clear()
    capsys.readouterr()
    assert cli_main([*args, "--pairs", "1", "--steps", "4"]) == 2 and not given
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "other probe settings (steps)" in err
    assert cli_main(["recall", str(sweep_dir), "--families", "z", "--pairs", "1", *PROBE]) == 2
    assert "unknown family 'z'" in capsys.readouterr().err


def test_run_jobs_starts_only_the_jobs_that_end_before_the_deadline(monkeypatch):
    """A job starts only if it would end in time should it last as long as the longest so far."""
    clock, durations = [0.0], iter([10.0, 30.0, 5.0, 5.0])
    monkeypatch.setattr(record_module.time, "monotonic", lambda: clock[0])

    def fake_train(job, device=None):
        clock[0] += next(durations)
        return {"accuracy": 1.0}

    monkeypatch.setattr(record_module, "train_job", fake_train)
    jobs = [record_module.Job(None, recall.RecallProbe(num_pairs=n), 0) for n in (1, 2, 3, 4)]
    ran = []
    left = record_module.run_jobs(jobs, 1, lambda job, result: ran.append(job.probe.num_pairs), deadline=55.0)
    # 0 → 10 (longest 10); 10 + 10 ≤ 55 → 40 (longest 30); 40 + 30 > 55: the last two wait.
    assert ran == [1, 2] and [j.probe.num_pairs for j in left] == [3, 4]


def test_probes_in_worker_processes_fill_the_record(sweep_dir):
    """The parallel path (spawned workers of one thread each) gives each point its own result."""
    args = ["recall", str(sweep_dir), "--families", "c", "--pairs", "1,2", *PROBE[:-1], "2"]
    assert cli_main(args) == 0
    points = json.loads((sweep_dir / "recall.json").read_text())["points"]
    assert sorted((design_key(record_module.design_from_record(p["design"])), p["num_pairs"]) for p in points) == sorted(
        (k, n) for k in ("gla-scalar-sep-none", "gla-vector-sep-none", "softmax") for n in (1, 2))
    assert all(0.0 <= p["accuracy"] <= 1.0 and p["skipped_steps"] == 0 for p in points)


@pytest.mark.parametrize("content, message", [("{", "is not valid JSON"),
                                              ('{"probe": {}}', "lacks families, pairs, points, seeds")])
def test_a_damaged_record_is_named_in_one_line_by_recall_and_report(sweep_dir, capsys, content, message):
    (sweep_dir / "recall.json").write_text(content)
    for command in (["recall", str(sweep_dir), "--pairs", "1", *PROBE], ["report", str(sweep_dir)]):
        assert cli_main(command) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err and "recall.json" in err
    assert (sweep_dir / "recall.json").read_text() == content  # left as it was


def test_ctrl_c_keeps_the_points_finished_and_says_how_to_continue(sweep_dir, monkeypatch, capsys):
    real = record_module.train_job
    calls = []

    def interrupted_second(job, device=None):
        calls.append(job)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(job, device)

    monkeypatch.setattr(record_module, "train_job", interrupted_second)
    assert cli_main(["recall", str(sweep_dir), "--families", "c", "--pairs", "1", *PROBE]) == 130
    assert "run the same command to continue" in capsys.readouterr().err
    points = json.loads((sweep_dir / "recall.json").read_text())["points"]
    assert [p["design"]["decay"] for p in points] == [None]  # the softmax reference, finished before Ctrl-C


@pytest.mark.parametrize("option, value, message", [("--pairs", "8,x", "comma-separated integers"),
                                                     ("--pairs", "0,8", "integers >= 1"),
                                                     ("--seeds", "-1", "integers >= 0")])
def test_bad_numbers_are_refused_in_one_line(sweep_dir, capsys, option, value, message):
    with pytest.raises(SystemExit) as stop:
        cli_main(["recall", str(sweep_dir), option, value])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and err.count("\n") == 0 and message in err and option in err
