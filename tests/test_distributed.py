"""DDP and FSDP2 on 2 CPU processes (torchrun, gloo) follow the loss trajectory of one process
with the same global batch, and an FSDP2 checkpoint resumes in a single process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from decaylab.train import train
from decaylab.train.metrics import read_metrics
from tests.test_train import tiny_config, trajectory, write_corpus

REPO = Path(__file__).resolve().parents[1]
FIELDS = dict(steps=6, ckpt_every=3, eval_every=3, keep_checkpoints=5)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    from decaylab.data import prepare_dataset

    root = tmp_path_factory.mktemp("data")
    return prepare_dataset(write_corpus(root / "corpus.jsonl"), root / "ds", vocab_size=320, progress=False)


def torchrun(cfg_file: Path, nproc: int = 2) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "decaylab.train", "--config", str(cfg_file)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=cfg_file.parent, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def assert_same_trajectory(got: list[tuple], expected: list[tuple]) -> None:
    assert [r[0] for r in got] == [r[0] for r in expected]  # the same steps were logged
    for g, e in zip(got, expected):
        assert [x is None for x in g] == [x is None for x in e], f"step {e[0]}"
        assert [x for x in g if x is not None] == pytest.approx([x for x in e if x is not None], rel=1e-4), f"step {e[0]}"


def test_ddp_and_fsdp2_match_one_process(tmp_path, dataset_dir):
    reference = tmp_path / "one"
    train(tiny_config(reference, dataset_dir, micro_batch_size=4, **FIELDS))
    expected = trajectory(reference)

    # Global batch 4 everywhere: 1 x 4, 2 processes x 2, 2 processes x 1 x 2 accumulation steps.
    for parallel, micro, accum in (("ddp", 2, 1), ("fsdp2", 1, 2)):
        run_dir = tmp_path / parallel
        cfg = tiny_config(run_dir, dataset_dir, parallel=parallel, micro_batch_size=micro, grad_accum=accum, **FIELDS)
        cfg_file = tmp_path / f"{parallel}.json"
        cfg_file.write_text(json.dumps(cfg.to_dict()))
        torchrun(cfg_file)
        assert_same_trajectory(trajectory(run_dir), expected)
        assert json.loads((run_dir / "final.json").read_text())["world_size"] == 2

    # The FSDP2 checkpoint of step 3 (gathered to full state dicts) continues in one process.
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "fsdp2" / "checkpoints" / "step_0000003", resumed / "checkpoints" / "step_0000003")
    (resumed / "checkpoints" / "latest").write_text("step_0000003\n")
    train(tiny_config(resumed, dataset_dir, micro_batch_size=4, **FIELDS))
    assert [r["step"] for r in read_metrics(resumed)] == [4, 5, 6]
    assert_same_trajectory(trajectory(resumed), expected[3:])


def test_shutdown_frees_what_reference_cycles_hold_before_leaving_the_group(monkeypatch):
    """A wrapped model in a reference cycle (as DDP's is) still holds the process group when training
    returns; shutdown collects it before destroying the group, not at the interpreter's exit."""
    import gc
    import weakref

    import torch.distributed as dist

    from decaylab.train.distributed import Runtime, shutdown

    class Wrapper:  # stands in for DDP: holds the group, in a cycle with itself
        pass

    wrapper = Wrapper()
    wrapper.me = wrapper
    alive = weakref.ref(wrapper)
    del wrapper
    seen = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "destroy_process_group", lambda: seen.append(alive() is None))
    gc.disable()  # no collection but shutdown's own
    try:
        assert alive() is not None
        shutdown(Runtime(0, 2, 0, torch.device("cpu"), True))
    finally:
        gc.enable()
    assert seen == [True]
