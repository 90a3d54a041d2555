"""Sweeps: presets cover the paper's families; a restarted sweep skips finished runs (untouched)
and resumes started ones from their checkpoint; a failed run does not stop the others; the
report holds every family's table and valid PNGs (the claim rules: tests/test_verdicts.py).
CPU, micro model, a few steps."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from decaylab.decay import DecaySpec
from decaylab.sweep import presets
from decaylab.sweep.presets import SOFTMAX, Family, Scale, design_label, design_problems
from decaylab.sweep.rundir import DesignResult, expand, init_sweep, load_sweep, run_spec, run_state
from decaylab.sweep.runner import prepare_data

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WORDS = ["the", "a", "slow", "fast", "decay", "key", "value", "state", "head", "layer", "old", "new", "small", "large", "first", "last"]

# --------------------------------------------------------------------------- presets


def test_full_families_cover_the_paper():
    fams = presets.full_families()
    assert list(fams) == ["a", "b", "c", "d"]
    for fam in fams.values():
        assert fam.designs[-1] == SOFTMAX
        assert all(not design_problems(d) for d in fam.designs), fam.key
    a = {d.decay for d in fams["a"].designs if d is not SOFTMAX}
    assert {"mamba2", "mamba2-no-a", "mamba2-no-delta", "mamba2-no-a-no-delta", "tnl", "tnl-l"} <= a
    assert {f"sd-{p}" for p in (0.8, 0.9, 0.95, 0.99)} <= a
    b = [d for d in fams["b"].designs if d is not SOFTMAX]
    assert {d.decay for d in b if d.share_decay_key} == {d.decay for d in b if not d.share_decay_key}
    c = fams["c"].designs
    assert DecaySpec("tnl", "scalar") in c and DecaySpec("tnl-l", "scalar") in c
    assert DecaySpec("gla", "scalar") in c and DecaySpec("gla", "vector") in c
    d = [x for x in fams["d"].designs if x is not SOFTMAX]
    assert {x.decay_granularity for x in d} == {"scalar"}
    assert {x.positional for x in d} == {"none", "rope", "lrpe-cos", "tpe"}


def test_quick_preset_is_a_deduplicated_subset_with_stable_ids():
    quick, full = presets.quick_families(), presets.full_families()
    for key, fam in quick.items():
        assert set(fam.designs) <= set(full[key].designs)
    runs = expand(quick, (0,))
    ids = [r.run_id for r in runs]
    assert len(ids) == len(set(ids)) == 26
    assert [r.run_id for r in expand(presets.quick_families(), (0,))] == ids
    gla = next(r for r in runs if r.run_id == "gla-vector-sep-none-s0")
    assert gla.families == ("a", "b", "c")
    assert len(expand(quick, (0, 1))) == 52


def test_resolve_refuses_unknown_choices():
    with pytest.raises(ValueError, match="unknown preset"):
        presets.resolve("nope")
    with pytest.raises(ValueError, match="unknown family 'e'"):
        presets.resolve("quick", ["a", "e"])
    fams, scale, seeds = presets.resolve("gpu", ["d"], "tiny", (3,))
    assert list(fams) == ["d"] and scale.name == "tiny" and seeds == (3,)


def test_sweep_command_lists_runs_and_refuses_another_scale(tmp_path, capsys):
    from decaylab.cli import main as cli_main
    from decaylab.sweep.rundir import SweepError

    assert cli_main(["sweep", "--preset", "quick", "--families", "b,d", "--list", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 15 and all(" new " in line for line in lines)
    fams, scale, seeds = presets.resolve("quick", ["d"])
    data = {"source": None, "dir": str(tmp_path / "data"), "vocab_size": 2048, "seed": 0}
    init_sweep(tmp_path / "s", "quick", fams, scale, seeds, data)
    init_sweep(tmp_path / "s", "quick", presets.resolve("quick", ["a"])[0], scale, (1,), data)  # extends
    record, families, runs = load_sweep(tmp_path / "s")
    assert list(families) == ["a", "d"] and record["seeds"] == [0, 1] and len(runs) == 2 * 20
    with pytest.raises(SweepError, match="another scale"):
        init_sweep(tmp_path / "s", "quick", fams, presets.SCALES["tiny"], seeds, data)


def test_close_calls_add_two_seeds_to_each_design_of_a_close_comparison(tmp_path, capsys):
    """Family (b) with three finished seeds per design (sample SD 0.01 each, so s_p = 0.01, df 12,
    95% half-width of a Δ 0.0178): GLA shared is 0.013 worse than GLA separate (its interval crosses
    zero by less than half its half-width: a close call), the other pairs 0.1 apart. ``--close-calls``
    adds seeds 3 and 4 to both GLA designs and no other; the record keeps them for later invocations,
    which list them without the option."""
    from decaylab.cli import main as cli_main
    from decaylab.sweep.verdicts import pooled_variance

    families, scale, seeds = presets.resolve("h200", ["b"], None, (0, 1, 2))
    root = tmp_path / "sweep"
    init_sweep(root, "h200", families, scale, seeds, {"source": None, "dir": str(tmp_path), "vocab_size": 8, "seed": 0})
    base = {"mamba2-vector-sep-none": 3.0, "mamba2-vector-shared-none": 3.1, "gla-vector-sep-none": 3.2,
            "gla-vector-shared-none": 3.213, "sd-0.99-vector-sep-none": 3.4, "sd-0.99-vector-shared-none": 3.5}
    for key, loss in base.items():
        for seed, offset in zip(seeds, (-0.01, 0.0, 0.01)):
            run = root / "runs" / f"{key}-s{seed}"
            run.mkdir(parents=True)
            (run / "final.json").write_text(json.dumps({"val_loss": loss + offset}))
            (run / "eval.json").write_text(json.dumps({"complete": True}))
    pool = pooled_variance([[v - 0.01, v, v + 0.01] for v in base.values()])
    assert pool.df == 12 and pool.half_width(3) * (2 ** 0.5) / 2 < 0.013 < pool.half_width(3) * 2 ** 0.5

    args = ["sweep", "--preset", "h200", "--families", "b", "--seeds", "0,1,2", "--out", str(root), "--list"]
    assert cli_main(args + ["--close-calls"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "close calls: gla-vector-sep-none seeds [3, 4], gla-vector-shared-none seeds [3, 4]"
    listed = {line.split()[0]: line.split()[1] for line in out[1:]}
    assert {r for r, state in listed.items() if state == "new"} == {
        f"gla-vector-{s}-none-s{n}" for s in ("sep", "shared") for n in (3, 4)} | {f"softmax-s{n}" for n in seeds}
    assert "extra_seeds" not in json.loads((root / "sweep.json").read_text())  # --list writes nothing

    # Recorded (as an invocation that ran would record them), they are listed without the option, after
    # the design's own seeds; with it, a design that has them already gets no more.
    init_sweep(root, "h200", families, scale, seeds, {"source": None, "dir": str(tmp_path), "vocab_size": 8, "seed": 0},
               {"gla-vector-sep-none": [3, 4]})
    assert cli_main(args) == 0
    ids = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert ids[6:11] == [f"gla-vector-sep-none-s{n}" for n in range(5)] and "gla-vector-shared-none-s3" not in ids
    assert cli_main(args + ["--close-calls"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "close calls: gla-vector-shared-none seeds [3, 4]"


def test_extra_seeds_are_merged_across_invocations_and_follow_their_designs_own(tmp_path):
    fams, scale, _ = presets.resolve("quick", ["d"])
    data = {"source": None, "dir": str(tmp_path / "data"), "vocab_size": 2048, "seed": 0}
    init_sweep(tmp_path, "quick", fams, scale, (0,), data, {"tnl-scalar-sep-rope": [2, 1]})
    init_sweep(tmp_path, "quick", fams, scale, (0,), data, {"tnl-scalar-sep-rope": [3], "softmax": [0, 5]})
    record, _, runs = load_sweep(tmp_path)
    assert record["extra_seeds"] == {"softmax": [0, 5], "tnl-scalar-sep-rope": [1, 2, 3]}
    ids = [r.run_id for r in runs]
    at = ids.index("tnl-scalar-sep-rope-s0")
    assert ids[at:at + 4] == [f"tnl-scalar-sep-rope-s{n}" for n in range(4)]
    assert ids.count("softmax-s0") == 1 and ids[-2:] == ["softmax-s0", "softmax-s5"]
    assert len(ids) == len(set(ids)) == 9 + 3 + 1  # 9 designs (softmax too) at seed 0, 3 + 1 extra


def test_sweep_over_a_corrupt_record_says_so_in_one_line(tmp_path, capsys):
    from decaylab.cli import main as cli_main

    (tmp_path / "sweep.json").write_text("{not json")
    assert cli_main(["sweep", "--preset", "quick", "--out", str(tmp_path), "--list"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"decaylab sweep: error: {tmp_path / 'sweep.json'} cannot be read")
    assert (tmp_path / "sweep.json").read_text() == "{not json"  # left as it was


def test_sweep_pins_its_dataset_files_and_refuses_a_dataset_with_other_contents(tmp_path, dataset_dir):
    """The sweep record keeps the sha256 of the prepared dataset's files (checked against hashlib);
    a later invocation with a dataset whose files differ (say, rebuilt on a fresh machine with another
    result) is refused, naming the file; a record from before the checksums adopts them. Runs'
    run.json hold the data's settings only, so they do not change."""
    import hashlib

    from decaylab.sweep.rundir import SweepError

    fams, scale, _ = presets.resolve("quick", ["d"])
    data = prepare_data({"source": None, "dir": str(dataset_dir), "vocab_size": 320, "seed": 0}, progress=False)
    assert data["checksums"] == {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                                 for p in sorted(dataset_dir.iterdir()) if p.name != "manifest.json"}
    root = tmp_path / "sweep"
    legacy = {k: v for k, v in data.items() if k != "checksums"}
    init_sweep(root, "quick", fams, scale, (0,), legacy)
    init_sweep(root, "quick", fams, scale, (0,), data)  # adopts them
    assert json.loads((root / "sweep.json").read_text())["data"]["checksums"] == data["checksums"]
    init_sweep(root, "quick", fams, scale, (1,), data)  # the same files: fine
    rebuilt = {**data, "checksums": {**data["checksums"], "train.bin": "0" * 64}}
    with pytest.raises(SweepError, match=r"sha256 of train\.bin .* differs"):
        init_sweep(root, "quick", fams, scale, (2,), rebuilt)
    assert json.loads((root / "sweep.json").read_text())["seeds"] == [0, 1]  # the refused one left no trace
    (run,) = [r for r in expand(fams, (0,)) if r.design is None]
    assert run_spec(run, scale, data)["train"]["data"] == {k: v for k, v in data.items()
                                                          if k not in ("checksums", "unigram_ppl")}


def test_gpu_sitting_script_packs_only_the_runs_that_completed(tmp_path):
    """scripts/gpu_sitting.sh on a sweep with one complete, one trained-but-unevaluated and one new run
    (the sweep itself runs nothing: ``--only`` matches no run): the packed record holds sweep.json and
    the complete run without its checkpoints, not the others (without checkpoints they could not
    resume); the log has the sitting's start and end; the script's python3 is this environment's.
    A carried archive .carry/*.tar.gz is unpacked first, without overwriting a file already there."""
    import io
    import os
    import subprocess
    import sys
    import tarfile

    repo = Path(__file__).resolve().parents[1]
    (tmp_path / ".carry").mkdir()
    with tarfile.open(tmp_path / ".carry" / "dataset.tar.gz", "w:gz") as tar:
        for name, text in {"carried/train.bin": b"tokens", "carried/notes.txt": b"from the archive"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    (tmp_path / "carried").mkdir()
    (tmp_path / "carried" / "notes.txt").write_text("the user's")
    root = tmp_path / "sweep"
    for run, files in {"softmax-s0": {"final.json": {"val_loss": 3.0}, "eval.json": {"complete": True}},
                       "tnl-scalar-sep-none-s0": {"final.json": {"val_loss": 3.0}, "eval.json": {"complete": False}},
                       "tnl-scalar-sep-rope-s0": {"run.json": {}}}.items():
        (root / "runs" / run / "checkpoints").mkdir(parents=True)
        (root / "runs" / run / "checkpoints" / "weights").write_text("big")
        for name, value in files.items():
            (root / "runs" / run / name).write_text(json.dumps(value))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # a link would leave the venv
    (bin_dir / "python3").chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OUT": str(out)}
    result = subprocess.run(["bash", str(repo / "scripts" / "gpu_sitting.sh"), "quick", "sweep", "1", "600",
                             "--families", "d", "--only", "nothing-matches", "--data-dir", str(tmp_path / "data")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # no .whl here
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "carried" / "train.bin").read_bytes() == b"tokens"
    assert (tmp_path / "carried" / "notes.txt").read_text() == "the user's"
    with tarfile.open(out / "sweep.tgz") as tar:
        names = {Path(n).relative_to("sweep").as_posix() for n in tar.getnames()}
    assert "sweep.json" in names and "runs/softmax-s0/final.json" in names
    assert not [n for n in names if "checkpoints" in n or n.startswith("runs/tnl-")]
    log = (out / "sitting.log").read_text()
    assert log.startswith("sitting start ") and "sitting end " in log and "(sweep exit status 0)" in log


def test_size_is_a_deprecated_alias_of_scale(tmp_path, capsys):
    from decaylab.cli import main as cli_main

    args = ["sweep", "--preset", "quick", "--families", "d", "--list", "--out", str(tmp_path)]
    assert cli_main(args + ["--scale", "tiny"]) == 0
    assert capsys.readouterr().err == ""
    assert cli_main(args + ["--size", "tiny"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["decaylab sweep: warning: --size is deprecated; use --scale tiny"]
    assert cli_main(args + ["--size", "tiny", "--scale", "quick"]) == 2
    assert "give --scale only" in capsys.readouterr().err


REPORTED_SWEEP = Path(__file__).parent.parent / "reports" / "h200-2026-11-28"


def test_a_sweep_directory_written_before_designs_were_decay_specs_still_loads_and_resumes(tmp_path):
    """reports/h200-2026-11-28/sweep.json was written when designs were stored by their own class:
    it loads, names the same runs as its runs.csv, accepts the same preset again, and a run.json
    keeps the stored design format (else every finished run would count as another run)."""
    import csv
    import shutil

    from decaylab.sweep.report import write_report
    from decaylab.sweep.rundir import run_spec

    shutil.copy(REPORTED_SWEEP / "sweep.json", tmp_path / "sweep.json")
    record, families, runs = load_sweep(tmp_path)
    with open(REPORTED_SWEEP / "runs.csv") as f:
        assert [r.run_id for r in runs] == [row["run_id"] for row in csv.DictReader(f)]
    assert all(fam.designs[-1] is SOFTMAX for fam in families.values())
    assert DecaySpec("gla-pow") in families["a"].designs and DecaySpec("tnl-l", "scalar") in families["a"].designs
    preset_families, scale, seeds = presets.resolve("h200")
    assert families == preset_families and tuple(record["seeds"]) == seeds
    init_sweep(tmp_path, "h200", preset_families, scale, seeds, record["data"])  # the same sweep: accepted
    gla = next(r for r in runs if r.run_id == "gla-vector-shared-none-s0")
    spec = run_spec(gla, scale, record["data"])
    assert spec["design"] == {"decay": "gla", "granularity": "vector", "shared": True, "positional": "none"}
    assert spec["train"]["model"] == {"size": "small", "arch": "decay_linear", "overrides": {
        "decay": "gla", "decay_granularity": "vector", "share_decay_key": True, "positional": "none"}}
    softmax = run_spec(next(r for r in runs if r.design is SOFTMAX), scale, record["data"])
    assert softmax["design"] == {"decay": None, "granularity": "vector", "shared": False, "positional": "none"}
    assert softmax["train"]["model"] == {"size": "small", "arch": "softmax", "overrides": {}}
    report = write_report(tmp_path).read_text()
    assert all(f"## ({k}) {fam.name}" in report for k, fam in families.items())
    # the h200 preset again: each verdict next to the 2026-11-28 report's (no run here: not decided)
    assert "then → now" in report and "reports/h200-2026-11-28/report.md" in report
    rows = [line for line in report.splitlines() if line.startswith(("| 1 | (a)", "| 3 | (c)"))]
    assert rows[0].endswith("| agree → not decided |") and rows[1].endswith("| inconclusive → not decided |")


# --------------------------------------------------------------------------- runner and report


def _write_corpus(path: Path, n_docs: int = 80) -> Path:
    rng = random.Random(0)
    with open(path, "w") as f:
        for _ in range(n_docs):
            text = " ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))) + "."
                            for _ in range(rng.randint(8, 20)))
            f.write(json.dumps({"text": text}) + "\n")
    return path


def test_report_of_a_seeded_sweep_draws_intervals_and_loss_against_decay(tmp_path):
    """Three seeds of every design of the quick family (a), written as finished runs: the report
    pools their variance (df = Σ(n − 1)), draws the interval, curve, decay and claim-1 figures,
    and gives each design's 95% half-width in results.csv; a verdict is provisional while a design
    of its family has fewer than 3 finished seeds."""
    import csv

    from decaylab.sweep.report import write_report

    families, scale, _ = presets.resolve("quick", ["a"])
    init_sweep(tmp_path, "quick", families, scale, (0, 1, 2),
               {"source": None, "dir": str(tmp_path / "data"), "vocab_size": 2048, "seed": 0})
    _, _, runs = load_sweep(tmp_path)
    rng = random.Random(0)
    for i, run in enumerate(runs):
        loss = 4.0 + 0.01 * (i // 3) + rng.gauss(0, 0.01)
        path = tmp_path / "runs" / run.run_id
        path.mkdir(parents=True)
        (path / "final.json").write_text(json.dumps({"val_loss": loss, "val_ppl": 2.718 ** loss, "steps": 40}))
        (path / "metrics.jsonl").write_text("".join(
            json.dumps({"step": s, "tokens": 1000 * s, "loss": loss + 1 / s}) + "\n" for s in range(1, 41)))
        decay = {} if run.design is None else {"layers": [{"decay_median": 0.5 + 0.02 * (i // 3)}] * 2}
        (path / "eval.json").write_text(json.dumps({"complete": True, "decay": decay}))
    report = write_report(tmp_path).read_text()
    assert f"df = {2 * len(families['a'].designs)}" in report and "no seed variance" not in report
    for name in ("claim1_decay.png", "val_loss_a.png", "loss_a.png", "decay_a.png"):
        assert f"]({name})" in report and (tmp_path / "report" / name).read_bytes().startswith(PNG_MAGIC)
    with open(tmp_path / "report" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(families["a"].designs) and all(float(r["val_loss_ci95"]) > 0 for r in rows)
    assert "then → now" not in report  # not the h200 study
    assert "provisional" not in report
    (tmp_path / "runs" / runs[0].run_id / "final.json").unlink()  # a design left with 2 finished seeds
    n = sum(d is not None for d in families["a"].designs)
    assert f"(provisional: {n - 1} of {n} designs have 3 seeds)" in write_report(tmp_path).read_text()


def test_cross_scale_designs_keep_every_claims_comparisons_of_the_optimal_ones():
    """The second scale point trains a subset of the first's designs (same run ids, so results line up)
    that still holds each claim's comparisons: SD-p from 0.5 to 0.999 and the decays of (a), every
    shared/separate pair, every scalar/vector pair, RoPE against none for each decay of (d)."""
    optimal, cross = presets.optimal_families(), presets.cross_scale_families()
    assert presets.PRESETS["h200-optimal-wide"].design_set == "cross-scale"
    runs = {r.run_id for r in expand(cross, (0,))}
    assert runs < {r.run_id for r in expand(optimal, (0,))} and len(runs) == 19
    a = {d.decay for d in cross["a"].designs if d is not None}
    assert {"sd-0.5", "sd-0.999", "mamba2", "mamba2-no-delta", "gla", "hgrn2", "lightnet", "tnl"} <= a
    assert cross["b"] == optimal["b"]
    vector = {d.decay for d in cross["c"].designs if d is not None and d.decay_granularity == "vector"}
    assert vector and all(DecaySpec(n, "scalar") in cross["c"].designs for n in vector)
    assert {(d.decay, d.positional) for d in cross["d"].designs if d is not None} == {
        (n, p) for n in ("sd-0.99", "tnl") for p in ("none", "rope")}
    assert all(f.designs[-1] is None for f in cross.values())  # the softmax reference in each


def test_compute_optimal_presets_compare_their_verdicts_with_the_2026_11_28_report():
    from decaylab.sweep.report import previous_verdicts

    repo = Path(__file__).resolve().parents[1]
    for preset in ("h200", "h200-optimal", "h200-optimal-wide"):
        path, verdicts = previous_verdicts(preset)
        assert path == "reports/h200-2026-11-28/report.md" and (repo / path).is_file()
        assert verdicts == {1: "agree", 2: "agree", 3: "inconclusive", 4: "inconclusive"}
    assert previous_verdicts("quick") is None


def test_report_warns_when_no_design_learned_the_recall_probe():
    from decaylab.sweep.report import _recall_note

    scale = {"mqar_steps": 400, "mqar_task": {"seq_len": 64, "num_pairs": 8, "vocab_size": 65}}  # 32 values
    chance = 1 / 32

    def note(*accuracies):
        return _recall_note(scale, {f"d{i}": DesignResult(DecaySpec("gla", "vector" if i else "scalar"), {"recall": [a]})
                                    for i, a in enumerate(accuracies)})

    assert "chance 0.0312" in note(0.5)
    assert "No design reached twice the chance accuracy" in note(chance, 1.9 * chance)
    assert "gla (vector), 0.0594" in note(chance, 1.9 * chance)
    assert "No design" not in note(chance, 2.1 * chance)
    assert _recall_note({**scale, "mqar_steps": 0}, {}) == "MQAR: off at this scale."


def test_h200_study_covers_every_family_and_the_extra_parameterizations():
    families, scale, seeds = presets.resolve("h200")
    quick = presets.quick_families()
    assert len(seeds) >= 2 and scale.size == "small" and scale.data["source"] == "large"
    assert ({d.decay for d in families["a"].designs if d is not SOFTMAX}
            == {d.decay for d in quick["a"].designs if d is not SOFTMAX} | {"gla-pow", "lssp", "tnl-l"})
    assert all(families[k] == quick[k] for k in "bcd")
    assert families["a"].designs[-1] == SOFTMAX and all(not design_problems(d) for d in families["a"].designs)


TEST_FAMILIES = {
    "a": Family("a", "parameterization", "?", (DecaySpec("gla"), SOFTMAX)),
    "b": Family("b", "sharing", "?", (DecaySpec("gla"), DecaySpec("gla", share_decay_key=True), SOFTMAX)),
    "c": Family("c", "granularity", "?", (DecaySpec("gla", "scalar"), DecaySpec("gla"), SOFTMAX)),
    "d": Family("d", "positional", "?", (DecaySpec("gla", "scalar"), DecaySpec("gla", "scalar", positional="rope"), SOFTMAX)),
}
BROKEN = "gla-scalar-sep-rope-s0"


def _test_scale(data_dir: str) -> Scale:
    train = {"seq_len": 32, "micro_batch_size": 4, "grad_accum": 1, "steps": 6, "lr": 3e-3, "warmup_steps": 1,
             "schedule": "cosine", "eval_every": 0, "eval_batches": 2, "final_eval_batches": 2, "eval_batch_size": 4,
             "log_every": 1, "ckpt_every": 2}
    return Scale("test", "micro", {"source": None, "dir": data_dir, "vocab_size": 320, "seed": 0}, train,
                 extrapolation_batches=1, mqar_steps=2, mqar_task={"seq_len": 16, "num_pairs": 2, "vocab_size": 16},
                 mqar_batch_size=4, analysis_batches=1)


def _sweep(root: Path, scale: Scale, only: set[str] | None = None) -> dict[str, str]:
    """One invocation of the runner on the test sweep (``only``: a subset of its runs); run id → outcome."""
    from decaylab.sweep.runner import run_sweep

    data = prepare_data(scale.data, progress=False)
    init_sweep(root, "test", TEST_FAMILIES, scale, (0,), data)
    runs = [r for r in expand(TEST_FAMILIES, (0,)) if only is None or r.run_id in only]
    return {o.run_id: o.status for o in run_sweep(root, runs, scale, data, workers=2, log=lambda line: None)}


def _finished(root: Path) -> dict[str, tuple[int, str]]:
    """run id → (mtime_ns, content) of every final.json."""
    return {p.parent.name: (p.stat().st_mtime_ns, p.read_text()) for p in root.glob("runs/*/final.json")}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    from decaylab.data import prepare_dataset

    root = tmp_path_factory.mktemp("sweep-data")
    return prepare_dataset(_write_corpus(root / "corpus.jsonl"), root / "ds", vocab_size=320, progress=False)


CTRL_C_SCRIPT = """
import json, sys
from pathlib import Path
from tests.test_sweep import TEST_FAMILIES, _test_scale
from decaylab.sweep.presets import with_train
from decaylab.sweep.rundir import expand, init_sweep
from decaylab.sweep.runner import prepare_data, run_sweep
root, scale = Path(sys.argv[1]), with_train(_test_scale(sys.argv[2]), steps=100_000, ckpt_every=1)
data = prepare_data(scale.data, progress=False)
init_sweep(root, "test", TEST_FAMILIES, scale, (0,), data)
outcomes = run_sweep(root, expand(TEST_FAMILIES, (0,)), scale, data, workers=2, log=lambda line: None)
print(json.dumps({o.run_id: o.status for o in outcomes}))
"""


def test_ctrl_c_ends_the_runs_in_flight_as_interrupted_not_failed(tmp_path, dataset_dir):
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "sweep"
    # Its own session, so that the Ctrl-C reaches the runner and its workers as a terminal's would.
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C_SCRIPT, str(root), str(dataset_dir)], stdout=subprocess.PIPE,
                            text=True, start_new_session=True, cwd=Path(__file__).parent.parent)
    deadline = time.monotonic() + 120
    while len(list(root.glob("runs/*/checkpoints/latest"))) < 2:  # both workers are training
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep never started training"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    outcomes = json.loads(out.splitlines()[-1])
    assert set(outcomes.values()) == {"interrupted"}
    assert not list(root.glob("runs/*/failed.json"))
    assert sum(run_state(d) == "started" for d in root.glob("runs/*")) >= 2


def test_time_limit_starts_only_the_runs_that_end_in_time(tmp_path, dataset_dir):
    import time

    from decaylab.sweep.runner import run_sweep

    root, scale = tmp_path / "sweep", _test_scale(str(dataset_dir))
    data = prepare_data(scale.data, progress=False)
    init_sweep(root, "test", TEST_FAMILIES, scale, (0,), data)
    runs = expand(TEST_FAMILIES, (0,))

    def statuses(deadline: float) -> list[str]:
        return [o.status for o in run_sweep(root, runs, scale, data, workers=1, log=lambda line: None,
                                            deadline=deadline)]

    assert statuses(time.monotonic() - 1) == ["deferred"] * len(runs)  # the limit has passed: nothing starts
    assert not list(root.glob("runs/*/checkpoints"))
    # The first run always starts; it takes seconds, so none of the others would end within 1 s.
    assert statuses(time.monotonic() + 1) == ["done"] + ["deferred"] * (len(runs) - 1)
    assert [run_state(root / "runs" / r.run_id) for r in runs] == ["complete"] + ["new"] * (len(runs) - 1)


def _timed_sweep(tmp_path, dataset_dir, monkeypatch, seconds, seeds=(0,), families=TEST_FAMILIES, scale=None):
    """One invocation of the runner with 60 s left, on a stand-in for the worker that starts nothing
    and reports ``seconds(run)`` for each run: (the sweep's runs, their outcomes, the runs started in order)."""
    import time

    from decaylab.sweep import runner

    root, scale = tmp_path / "sweep", scale or _test_scale(str(dataset_dir))
    data = prepare_data(scale.data, progress=False)
    init_sweep(root, "test", families, scale, seeds, data)
    runs = expand(families, seeds)
    started = []

    def execute(run, run_dir, worker, stopping):
        started.append(run.run_id)
        return runner.Outcome(run.run_id, "done", seconds(run))

    monkeypatch.setattr(runner, "_execute", execute)
    outcomes = runner.run_sweep(root, runs, scale, data, workers=1, log=lambda line: None,
                                deadline=time.monotonic() + 60)
    return runs, [o.status for o in outcomes], started


def test_time_limit_judges_by_the_longest_run_so_far(tmp_path, dataset_dir, monkeypatch):
    """Runs of 1, 1 and 100 s (reported by a stand-in for the worker): with 60 s left, the fourth
    run would start by the median (1 s) but not by the longest (100 s), so it and the fifth wait."""
    durations = iter([1.0, 1.0, 100.0, 1.0, 1.0])
    runs, statuses, started = _timed_sweep(tmp_path, dataset_dir, monkeypatch, lambda run: next(durations))
    assert statuses == ["done"] * 3 + ["deferred"] * 2
    assert started == [r.run_id for r in runs[:3]]


def test_time_limit_judges_a_later_seed_by_the_later_seeds_so_far(tmp_path, dataset_dir, monkeypatch):
    """Two seeds per design, first seeds of 1 and 100 s and later seeds of 1 s: with 60 s left, the
    second design's second seed starts (a later seed of a design that has finished one takes as
    long as the later seeds so far), the third design's first seed, and every run of a design with
    no finished run, wait (they may take as long as the longest first seed)."""
    durations = iter([1.0, 1.0, 100.0, 1.0])
    runs, statuses, _ = _timed_sweep(tmp_path, dataset_dir, monkeypatch, lambda run: next(durations), seeds=(0, 1))
    assert [r.seed for r in runs[:4]] == [0, 1, 0, 1]
    assert statuses == ["done"] * 4 + ["deferred"] * (len(runs) - 4)


def test_time_limit_judges_a_run_without_probes_by_the_runs_without_probes(tmp_path, dataset_dir, monkeypatch):
    """Recall probed for family (d) only: GLA (not in d, no probes) takes 1 s, the softmax reference
    (probed) 100 s; with 60 s left GLA-shared (no probes) starts, judged by the 1 s, while the (d)
    designs, probed, wait behind the 100 s."""
    scale = dataclasses.replace(_test_scale(str(dataset_dir)), mqar_curve=(1,), mqar_families=("d",))
    durations = iter([1.0, 100.0, 1.0])
    runs, statuses, _ = _timed_sweep(tmp_path, dataset_dir, monkeypatch, lambda run: next(durations), scale=scale)
    assert [r.run_id for r in runs] == ["gla-vector-sep-none-s0", "softmax-s0", "gla-vector-shared-none-s0",
                                        "gla-scalar-sep-none-s0", BROKEN]
    assert statuses == ["done", "done", "done", "deferred", "deferred"]


def test_a_designs_runs_without_probes_go_first_so_a_sittings_end_still_fits_them(tmp_path, dataset_dir, monkeypatch):
    """With a recall curve only seed 0 trains probes, so each design runs seed 1 before seed 0. Seed 1
    takes 1 s, seed 0 100 s (reported by a stand-in for the worker); with 60 s left GLA s1 starts (the
    first run always does), GLA s0 too (no probed run timed yet: the longest so far, 1 s, counts),
    softmax s1 fits by the 1 s of first runs without probes and softmax s0 waits behind the 100 s. In
    the sweep's order (seed 0 first) softmax s1, judged by the 100 s, would have waited as well. The
    outcomes come back in the sweep's order."""
    scale = dataclasses.replace(_test_scale(str(dataset_dir)), mqar_curve=(1,))
    runs, statuses, started = _timed_sweep(tmp_path, dataset_dir, monkeypatch,
                                           lambda run: 100.0 if run.seed == 0 else 1.0, seeds=(0, 1),
                                           families={"a": TEST_FAMILIES["a"]}, scale=scale)
    assert [r.run_id for r in runs] == ["gla-vector-sep-none-s0", "gla-vector-sep-none-s1", "softmax-s0", "softmax-s1"]
    assert started == ["gla-vector-sep-none-s1", "gla-vector-sep-none-s0", "softmax-s1"]
    assert statuses == ["done", "done", "deferred", "done"]


def test_sweep_restarted_skips_finished_runs_resumes_started_ones_and_reports(tmp_path, dataset_dir):
    from decaylab.train.metrics import read_metrics

    root, scale = tmp_path / "sweep", _test_scale(str(dataset_dir))
    runs = [r.run_id for r in expand(TEST_FAMILIES, (0,))]
    assert len(runs) == 5  # designs shared by several families train once
    first = {"gla-vector-sep-none-s0", "softmax-s0", BROKEN}
    # A run that cannot start (its checkpoint pointer names a missing checkpoint) must not stop the others.
    broken = root / "runs" / BROKEN / "checkpoints"
    broken.mkdir(parents=True)
    (broken / "latest").write_text("step_0000099\n")

    # 1. A first invocation (as if interrupted) finishes part of the sweep; the broken run fails alone.
    assert _sweep(root, scale, first) == {"gla-vector-sep-none-s0": "done", "softmax-s0": "done", BROKEN: "failed"}
    failure = json.loads((root / "runs" / BROKEN / "failed.json").read_text())
    assert failure["exit_status"] != 0 and any("missing or incomplete" in line for line in failure["log_tail"])
    assert run_state(root / "runs" / BROKEN) == "failed"
    # The softmax run is now "interrupted" after its last checkpoint: it must resume, not restart.
    started = root / "runs" / "softmax-s0"
    curve = read_metrics(started)
    (started / "final.json").unlink()
    (started / "eval.json").unlink()
    assert run_state(started) == "started"
    finished = _finished(root)
    assert set(finished) == {"gla-vector-sep-none-s0"}

    # 2. Repair and restart: finished runs are skipped and untouched, the rest complete.
    (broken / "latest").unlink()
    outcomes = _sweep(root, scale)
    assert outcomes == {r: ("skipped" if r in finished else "done") for r in runs}
    assert {r: v for r, v in _finished(root).items() if r in finished} == finished
    assert read_metrics(started) == curve
    assert "resuming at step 6" in (started / "worker.log").read_text()
    assert not (root / "runs" / BROKEN / "failed.json").exists()
    assert all(run_state(root / "runs" / r) == "complete" for r in runs)
    assert _sweep(root, scale) == {r: "skipped" for r in runs}

    # 3. The report: every family's table, and figures that exist and are valid PNGs.
    from decaylab.cli import main as cli_main

    assert cli_main(["report", str(root)]) == 0
    report = (root / "report" / "report.md").read_text()
    _, families, _ = load_sweep(root)
    for fam in families.values():
        assert f"## ({fam.key}) {fam.name}" in report
        for d in fam.designs:
            assert f"| {design_label(d)} | 1/1 |" in report
    for number, family in zip("1234", "abcd"):
        row = next(line for line in report.splitlines() if line.startswith(f"| {number} | ({family}) |"))
        assert row.rstrip(" |").split("**")[-2] in ("agree", "disagree", "not decided")
    assert "no seed variance: not decided" in report  # one seed: df = 0
    images = [line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    assert {f"loss_{k}.png" for k in "abcd"} <= set(images)
    assert {f"decay_{k}.png" for k in "abcd"} <= set(images)
    assert {f"val_loss_{k}.png" for k in "abcd"} <= set(images)
    for name in images:
        data = (root / "report" / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        import matplotlib.image

        assert matplotlib.image.imread(root / "report" / name).ndim == 3
    rows = (root / "report" / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + sum(len(f.designs) for f in families.values())
    assert not list((root / "report").glob(".*.tmp"))


def test_initial_decay_is_measured_on_the_step0_model(tmp_path, dataset_dir):
    """The ``initial_decay`` piece measures the run's step-0 model: a TNL run (fixed decays, nothing to
    learn) has the same statistics at step 0 as after training; SD-0.9 starts at λ ≈ 0.9 (its offset is
    logit(0.9)) and moves once trained; the softmax reference has none."""
    from decaylab.sweep.rundir import collect
    from decaylab.sweep.runner import run_sweep
    from decaylab.sweep.verdicts import median_decay

    root, scale = tmp_path / "sweep", presets.with_train(_test_scale(str(dataset_dir)), lr=3e-2)
    families = {"a": Family("a", "parameterization", "?", (DecaySpec("tnl", "scalar"), DecaySpec("sd-0.9"), SOFTMAX))}
    data = prepare_data(scale.data, progress=False)
    init_sweep(root, "test", families, scale, (0,), data)
    outcomes = run_sweep(root, expand(families, (0,)), scale, data, workers=2, log=lambda line: None)
    assert {o.status for o in outcomes} == {"done"}
    _, _, results, _ = collect(root)
    tnl, sd, softmax = (results[presets.design_key(d)] for d in families["a"].designs)
    assert tnl.initial_decay[0]["layers"] == tnl.decay[0]["layers"]
    assert abs(median_decay(sd.initial_decay) - 0.9) < 0.02
    assert sd.initial_decay[0]["layers"] != sd.decay[0]["layers"]
    assert not softmax.initial_decay and "skipped" in json.loads(
        next(root.glob("runs/softmax-s0/eval.json")).read_text())["initial_decay"]


def test_runs_that_shared_a_gpu_stay_out_of_the_design_throughput(tmp_path, dataset_dir):
    """A run trained with other workers on its GPU (its invocation's ``runs_per_gpu`` > 1) keeps its
    loss in the design's results but not its rates, which measure the sharing; runs.csv keeps them
    with ``runs_per_gpu``, and the report says how many runs its rates leave out."""
    from decaylab.sweep.rundir import collect, record_invocation
    from decaylab.sweep.report import write_report
    from decaylab.sweep.runner import environment, run_sweep, runs_per_gpu, worker_slots

    assert runs_per_gpu([{"CUDA_VISIBLE_DEVICES": str(i % 2)} for i in range(5)]) == 3
    assert runs_per_gpu([{"CUDA_VISIBLE_DEVICES": "0"}]) == 1
    assert runs_per_gpu(worker_slots(3)) == 0  # this CPU: no worker has a GPU
    root, scale = tmp_path / "sweep", _test_scale(str(dataset_dir))
    tnl = DecaySpec("tnl", "scalar")
    families = {"a": Family("a", "parameterization", "?", (tnl, SOFTMAX))}
    data = prepare_data(scale.data, progress=False)
    init_sweep(root, "test", families, scale, (0, 1), data)
    runs = expand(families, (0, 1))
    assert {o.status for o in run_sweep(root, runs, scale, data, workers=2, log=lambda line: None)} == {"done"}
    shared_run = next(r.run_id for r in runs if r.design == tnl and r.seed == 1)
    record_invocation(root, {"command": "decaylab sweep", "started": "now", "wall_s": 1.0, "done": 1, "skipped": 0,
                             "failed": 0, "runs_done": [shared_run], "runs_per_gpu": 4, **environment()})
    _, _, results, rows = collect(root)
    tnl_result = results[presets.design_key(tnl)]
    assert len(tnl_result.losses()) == 2
    assert all(len(tnl_result.values[k]) == 1 for k in ("steady_tokens_per_s", "tokens_per_s", "train_time_s"))
    assert len(results[presets.design_key(SOFTMAX)].values["tokens_per_s"]) == 2
    row = next(r for r in rows if r["run_id"] == shared_run)
    assert row["runs_per_gpu"] == 4 and row["tokens_per_s"] > 0
    assert "1 runs trained with 4 workers sharing a GPU are left out" in write_report(root).read_text()


def test_worker_drops_compiled_graphs_only_when_the_design_changes(tmp_path):
    """The worker process resets torch.compile before a run of another design than the last (its
    recompile limit counts every configuration of the process: the study's sweep trained eager from
    its third design), and keeps the graphs between seeds of one design. A
    stand-in for the run's work writes how many resets it has seen into each run's log."""
    import subprocess
    import sys

    designs = {"gla-s0": "gla", "gla-s1": "gla", "sd-s0": "sd-0.99", "gla-s2": "gla"}
    for run_id, decay in designs.items():
        (tmp_path / run_id).mkdir()
        (tmp_path / run_id / "run.json").write_text(json.dumps({"design": {"decay": decay}}))
    worker = ("import torch._dynamo, decaylab.sweep.runner as r\n"
              "resets = []\n"
              "torch._dynamo.reset = lambda: resets.append(1)\n"
              "r.work = lambda run_dir: print('resets seen', len(resets))\n"
              "r.serve()\n")
    answers = subprocess.run([sys.executable, "-c", worker], input="".join(f"{tmp_path / r}\n" for r in designs),
                             capture_output=True, text=True, timeout=300, check=True).stdout
    assert answers.split() == ["0"] * len(designs)
    seen = {r: next(line for line in (tmp_path / r / "worker.log").read_text().splitlines()
                    if line.startswith("resets seen")) for r in designs}
    assert seen == {"gla-s0": "resets seen 1", "gla-s1": "resets seen 1", "sd-s0": "resets seen 2",
                    "gla-s2": "resets seen 3"}


def test_loss_figure_draws_only_validations_on_the_final_ones_tokens(tmp_path, monkeypatch):
    """An evaluation during training that saw fewer validation tokens than the final one (the split's
    first batches: another text) is not drawn next to it; one on the same tokens is, and so is the
    final one of a run recorded before ``val_tokens`` was logged."""
    from decaylab.sweep import report
    from decaylab.sweep.rundir import DesignResult

    def curve(final: float, tokens_at_30: int | None) -> list[dict]:
        validation = {20: (4.0, 900), 30: (3.5, tokens_at_30), 40: (final, 1000)}  # step -> (loss, val tokens)
        rows = [{"step": s, "tokens": 100 * s, "loss": 3.0} for s in range(1, 41)]
        for row in rows:
            if row["step"] in validation:
                loss, tokens = validation[row["step"]]
                row.update(val_loss=loss, **({"val_tokens": tokens} if tokens is not None else {}))
        return rows

    legacy = [{k: v for k, v in r.items() if k != "val_tokens"} for r in curve(3.3, None)]
    design = DecaySpec("gla")
    results = {presets.design_key(design): DesignResult(design, curves=[curve(3.1, 1000), curve(3.2, 500), legacy])}
    drawn = []
    monkeypatch.setattr(report, "_save", lambda fig, path: drawn.append(fig))
    assert report.plot_losses(Family("a", "parameterization", "?", (design,)), results, tmp_path / "loss.png")
    (ax,) = drawn[0].axes
    (markers,) = [line for line in ax.get_lines() if line.get_linestyle() == "None"]
    assert sorted(zip(markers.get_xdata(), markers.get_ydata())) == [(3000, 3.5), (4000, 3.1), (4000, 3.2), (4000, 3.3)]


def test_steady_throughput_is_the_median_window_without_the_first_steps_compile(tmp_path):
    """A run's tokens/s in the report is the median of its logged windows, the first step's record
    (its compile) left out; final.json's rate over all steps, compile included, stays next to it."""
    from decaylab.sweep.rundir import run_metrics, steady_throughput

    curve = [{"step": 1, "tokens_per_s": 10.0, "first_step_s": 30.0}, {"step": 10, "tokens_per_s": 900.0},
             {"step": 20, "tokens_per_s": 1000.0}, {"step": 30, "tokens_per_s": 3000.0},
             {"step": 30, "val_loss": 3.0}]
    assert steady_throughput(curve) == 1000.0
    assert steady_throughput(curve[:3]) == 950.0 and steady_throughput(curve[:1]) is None
    (tmp_path / "final.json").write_text(json.dumps({"val_loss": 3.0, "tokens_per_s": 400.0}))
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curve))
    assert run_metrics(tmp_path) == {"val_loss": 3.0, "tokens_per_s": 400.0, "steady_tokens_per_s": 1000.0}


def test_report_gives_each_invocations_training_tokens_and_throughput():
    """Per invocation: the training tokens of the runs it completed, per second of its wall time and
    per second of their training steps; an invocation recorded before ``runs_done`` shows a dash."""
    from decaylab.sweep.report import _provenance

    env = {"hardware": "1 × GPU", "host": "h", "python": "3.12", "torch": "2.11", "decaylab": "0.1"}
    calls = [{"command": "decaylab sweep", "started": "then", "wall_s": 50.0, "done": 1, "skipped": 0,
              "failed": 0, **env},
             {"command": "decaylab sweep", "started": "now", "wall_s": 10.0, "done": 2, "skipped": 1,
              "failed": 0, "runs_done": ["a-s0", "b-s0"], **env}]
    rows = [{"run_id": "a-s0", "tokens": 1_000_000, "train_time_s": 1.0},
            {"run_id": "b-s0", "tokens": 1_000_000, "train_time_s": 3.0},
            {"run_id": "old-s0", "tokens": 5_000_000, "train_time_s": 1.0}]
    table = [line for line in _provenance({"invocations": calls}, rows) if line.startswith("| then") or
             line.startswith("| now")]
    assert [line.split(" | ")[4] for line in table] == ["—", "2.0M / 0.20M / 0.50M"]


def test_invocations_record_the_source_commit_and_whether_it_was_changed(tmp_path):
    import subprocess

    from decaylab.sweep.runner import source_commit

    package = tmp_path / "repo" / "pkg"
    package.mkdir(parents=True)
    (package / "code.py").write_text("x = 1\n")
    assert source_commit(package) is None  # not a git checkout (an installed release)

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path / "repo"), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    head = git("rev-parse", "--short", "HEAD")
    assert source_commit(package) == head
    (package / "code.py").write_text("x = 2\n")
    assert source_commit(package) == head + "+changes"


def test_recall_probes_only_the_designs_of_the_scales_mqar_families(tmp_path, dataset_dir):
    """With ``mqar_families=("a",)`` a design shown in family (a) (and also in (b)) gets the probe and
    its curve; a design shown only in (b) gets neither, and says why; run.json records which."""
    from decaylab.sweep.runner import run_sweep

    root = tmp_path / "sweep"
    scale = dataclasses.replace(_test_scale(str(dataset_dir)), mqar_curve=(1,), mqar_families=("a",))
    families = {"a": Family("a", "parameterization", "?", (DecaySpec("gla"),)),
                "b": Family("b", "sharing", "?", (DecaySpec("gla"), DecaySpec("gla", share_decay_key=True)))}
    data = prepare_data(scale.data, progress=False)
    init_sweep(root, "test", families, scale, (0,), data)
    assert {o.status for o in run_sweep(root, expand(families, (0,)), scale, data, workers=2,
                                        log=lambda line: None)} == {"done"}
    probed, unprobed = (root / "runs" / f"gla-vector-{s}-none-s0" for s in ("sep", "shared"))
    assert json.loads((probed / "run.json").read_text())["evaluation"]["probes_recall"] is True
    assert json.loads((unprobed / "run.json").read_text())["evaluation"]["probes_recall"] is False
    probed_eval, unprobed_eval = (json.loads((d / "eval.json").read_text()) for d in (probed, unprobed))
    assert 0.0 <= probed_eval["recall"]["accuracy"] <= 1.0
    assert [p["num_pairs"] for p in probed_eval["recall_curve"]["points"]] == [1]
    for piece in ("recall", "recall_curve"):
        assert unprobed_eval[piece] == {"skipped": "recall is probed for families a only"}
    assert unprobed_eval["complete"] is True


def test_recall_curve_trains_one_probe_per_number_of_pairs_on_the_seed0_run(tmp_path, dataset_dir, monkeypatch):
    """With ``mqar_curve``, the seed-0 run of a design trains a fresh probe for each number of pairs
    (the task it is given has that many) besides the main probe, with the scale's probe settings; the
    other seeds run neither; the report draws and tabulates accuracy against the number of pairs."""
    from decaylab.evaluate import recall
    from decaylab.sweep.evaluation import evaluate_run
    from decaylab.sweep.report import write_report
    from decaylab.sweep.runner import run_sweep

    root = tmp_path / "sweep"
    scale = dataclasses.replace(_test_scale(str(dataset_dir)), mqar_curve=(1, 4),
                                mqar_probe={"lr": 1e-3, "num_hidden_layers": 1})
    assert scale.mqar_task["num_pairs"] == 2  # the main probe's
    families = {"a": Family("a", "parameterization", "?", (DecaySpec("gla"),))}
    data = prepare_data(scale.data, progress=False)
    init_sweep(root, "test", families, scale, (0, 1), data)
    assert {o.status for o in run_sweep(root, expand(families, (0, 1)), scale, data, workers=2,
                                        log=lambda line: None)} == {"done"}
    seed0, seed1 = (root / "runs" / f"gla-vector-sep-none-s{s}" for s in (0, 1))
    skipped = json.loads((seed1 / "eval.json").read_text())
    assert "skipped" in skipped["recall_curve"] and "skipped" in skipped["recall"]

    # Evaluate the seed-0 probes again in this process and see what each probe was given.
    record = json.loads((seed0 / "eval.json").read_text())
    chance = recall.MQARTask(**scale.mqar_task).chance
    assert [(p["num_pairs"], p["chance"]) for p in record["recall_curve"]["points"]] == [(1, chance), (4, chance)]
    given, real = [], recall.train_and_eval_mqar
    monkeypatch.setattr(recall, "train_and_eval_mqar",
                        lambda cfg, probe, **kw: given.append(probe) or real(cfg, probe, **kw))
    kept = {k: v for k, v in record.items() if k not in ("recall", "recall_curve")}
    (seed0 / "eval.json").write_text(json.dumps(kept))
    again = evaluate_run(seed0, json.loads((seed0 / "run.json").read_text()))
    assert [(p.num_pairs, p.seq_len, p.steps, p.lr, p.num_hidden_layers) for p in given] == [
        (n, 16, scale.mqar_steps, 1e-3, 1) for n in (2, 1, 4)]
    points = {p["num_pairs"]: p["accuracy"] for p in again["recall_curve"]["points"]} | {2: again["recall"]["accuracy"]}
    assert all(0.0 <= a <= 1.0 for a in points.values())

    report = write_report(root).read_text()
    assert "](recall_a.png)" in report and (root / "report" / "recall_a.png").read_bytes().startswith(PNG_MAGIC)
    assert "| design | 1 pair | 2 pairs | 4 pairs |" in report
    row = next(line for line in report.splitlines() if line.startswith("| gla (vector) | ") and line.count("|") == 5)
    assert [float(x) for x in row.strip("| ").split(" | ")[1:]] == [round(points[n], 3) for n in (1, 2, 4)]
    assert "on the seed-0 run of each design (with the recall curve)" in report


def test_a_run_carried_without_checkpoints_skips_the_pieces_it_can_no_longer_compute(tmp_path, dataset_dir):
    """A sweep directory moved without checkpoints (as between GPU sittings) holds a trained run whose
    evaluation lacks a piece: the next invocation records that piece as skipped, keeps the others, and
    the run counts as complete instead of failing on every invocation."""
    import shutil

    root, scale = tmp_path / "sweep", _test_scale(str(dataset_dir))
    assert _sweep(root, scale, {"gla-vector-sep-none-s0"}) == {"gla-vector-sep-none-s0": "done"}
    run = root / "runs" / "gla-vector-sep-none-s0"
    record = json.loads((run / "eval.json").read_text())
    shutil.rmtree(run / "checkpoints")
    (run / "eval.json").write_text(json.dumps({**{k: v for k, v in record.items() if k != "decay"}, "complete": False}))
    assert run_state(run) == "trained"
    assert _sweep(root, scale, {"gla-vector-sep-none-s0"}) == {"gla-vector-sep-none-s0": "done"}
    after = json.loads((run / "eval.json").read_text())
    assert "checkpoints are gone" in after["decay"]["skipped"] and after["recall"] == record["recall"]
    assert run_state(run) == "complete" and not (run / "failed.json").exists()


@pytest.mark.parametrize("name", sorted(presets.SCALES))
def test_every_scale_s_recall_probes_are_valid_tasks_with_a_model(name):
    """The main probe and every point of the recall curve of each scale make a valid MQAR task and a
    probe model (a bad setting would otherwise fail only after a GPU run has trained)."""
    from decaylab.evaluate.recall import generate_mqar
    from decaylab.model import make_config
    from decaylab.sweep.evaluation import _probe

    scale = presets.SCALES[name]
    settings = run_spec(expand({"a": Family("a", "?", "?", (DecaySpec("gla"),))}, (0,))[0], scale,
                        {"source": None, "dir": "d", "vocab_size": 8, "seed": 0})["evaluation"]
    for n in (None, *scale.mqar_curve):
        probe = _probe(settings, n)
        generate_mqar(probe.task, 1)
        assert probe.model_config(make_config(scale.size, decay="gla")).vocab_size == probe.vocab_size
