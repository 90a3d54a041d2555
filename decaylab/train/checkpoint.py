"""Atomic, exactly-resumable checkpoints that never execute code when loaded.

Layout of ``run_dir/checkpoints/``::

    step_0000200/
        model.safetensors    full (unsharded) weights; with config.json, loadable by from_pretrained
        config.json, generation_config.json, modeling_decaylab.py, tokenizer.json, tokenizer_config.json
                             the rest of a complete model folder (decaylab.model.folder), with the tokenizer
                             of the run's dataset
        state.pt             optimizer, RNG states, step, data position, clocks (tensors and
                             primitive containers only: loaded with torch.load(weights_only=True))
        train_config.json    the resolved TrainConfig
    latest                   the name of the newest complete checkpoint

A checkpoint is written into a temporary directory, every file and the directory are fsynced,
and only then is it renamed into place and ``latest`` replaced (itself written to a temporary
file and renamed). An interrupted save therefore leaves the previous checkpoint and ``latest``
untouched. A checkpoint that is nevertheless corrupt (a disk fault, a copy cut short) is skipped
when resuming, with a warning, in favour of the newest one that loads. Weights and optimizer
state are gathered as full state dicts keyed by parameter name, so a checkpoint written by FSDP2
on N processes resumes on M processes or on one.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from decaylab.atomic import fsync_path, write_text_atomic
from decaylab.model.folder import write_model_files
from decaylab.train.rundir import checkpoints_root

LATEST = "latest"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
TRAIN_CONFIG_FILE = "train_config.json"

log = logging.getLogger(__name__)

_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)


def step_name(step: int) -> str:
    """The directory name of the checkpoint taken after ``step`` optimizer steps."""
    return f"step_{step:07d}"


# --------------------------------------------------------------------------- state capture


def gather_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The full weights on CPU, keyed by parameter name, on rank 0 (an empty dict elsewhere
    under FSDP2/DDP). Every process must call this."""
    return get_model_state_dict(model, options=_GATHER)


def gather_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The full optimizer state on CPU, keyed by parameter name, on rank 0. Every process must call this."""
    return get_optimizer_state_dict(model, optimizer, options=_GATHER)


def restore_model_and_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict,
                                optimizer_state: dict, from_rank0: bool) -> None:
    """Load full state dicts into a (possibly sharded or replicated) model and its optimizer.
    With ``from_rank0`` only rank 0's dicts are read and broadcast; the others may pass ``{}``."""
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=from_rank0)
    set_model_state_dict(model, model_state, options=options)
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)


def rng_state() -> dict[str, Any]:
    """This process's Python, NumPy, torch and CUDA generator states as tensors and primitives."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {**np_state, "state": {"key": np_state["state"]["key"].tolist(), "pos": np_state["state"]["pos"]}},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators captured by :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = dict(state["numpy"])
    np_state["state"] = {"key": np.asarray(np_state["state"]["key"], dtype=np.uint32), "pos": np_state["state"]["pos"]}
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# --------------------------------------------------------------------------- files


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors with no two sharing memory (safetensors refuses shared storage)."""
    seen: set[int] = set()
    out = {}
    for name, t in tensors.items():
        t = t.detach().contiguous()
        ptr = t.untyped_storage().data_ptr()
        out[name] = t.clone() if ptr in seen else t
        seen.add(ptr)
    return out


def save_checkpoint(run_dir: str | Path, step: int, model_state: dict[str, torch.Tensor], model_config: Any,
                    train_state: dict[str, Any], train_config: dict, keep: int) -> Path:
    """Write checkpoint ``step`` atomically, point ``latest`` at it and keep the newest ``keep``.

    ``model_config`` is a transformers config (saved as config.json); ``train_state`` must hold
    only tensors and primitive containers. Called on rank 0 only."""
    root = checkpoints_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = step_name(step)
    tmp = root / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_unshared(model_state), str(tmp / MODEL_FILE), metadata={"format": "pt"})
    write_model_files(tmp, model_config, _dataset_tokenizer(train_config))
    torch.save(train_state, tmp / STATE_FILE)
    (tmp / TRAIN_CONFIG_FILE).write_text(json.dumps(train_config, indent=2) + "\n")
    for f in tmp.iterdir():
        fsync_path(f)
    fsync_path(tmp)
    final = root / name
    if final.exists():  # left by a run killed after the rename but before `latest` moved on
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_path(root)
    write_text_atomic(root / LATEST, name + "\n")
    _prune(root, keep, protect=name)
    return final


def _dataset_tokenizer(train_config: dict):
    """The tokenizer of the dataset a run trains on (None when its directory is gone)."""
    from decaylab.data import load_tokenizer
    from decaylab.data.manifest import MANIFEST_FILE

    data_dir = Path(train_config.get("data", {}).get("dir", ""))
    return load_tokenizer(data_dir) if (data_dir / MANIFEST_FILE).is_file() else None


def _prune(root: Path, keep: int, protect: str) -> None:
    done = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_"))
    for old in done[:-keep]:
        if old.name != protect:
            shutil.rmtree(old)
    for stale in root.glob(".tmp-step_*"):
        shutil.rmtree(stale, ignore_errors=True)


def checkpoint_candidates(run_dir: str | Path) -> list[Path]:
    """The run's checkpoints, newest first: the one ``latest`` names, then the older ones (all of
    them when ``latest`` names none). Empty when the run has no ``latest`` yet."""
    root = checkpoints_root(run_dir)
    pointer = root / LATEST
    if not pointer.is_file():
        return []
    named = pointer.read_text().strip()
    steps = sorted((p for p in root.glob("step_*") if p.is_dir()), reverse=True)
    if any(p.name == named for p in steps):
        steps = [p for p in steps if p.name <= named]
    return steps


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint with all its files (normally the one ``latest`` names), or None when
    the run has none yet."""
    for path in checkpoint_candidates(run_dir):
        if all((path / name).is_file() for name in (MODEL_FILE, STATE_FILE, TRAIN_CONFIG_FILE)):
            return path
    if (checkpoints_root(run_dir) / LATEST).is_file():
        raise FileNotFoundError(_no_checkpoint_message(run_dir))
    return None


def load_newest_intact(run_dir: str | Path) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any]] | None:
    """(path, weights, training state) of the newest checkpoint of the run that loads completely,
    skipping newer corrupt ones with a warning; None when the run has no checkpoint yet."""
    candidates = checkpoint_candidates(run_dir)
    for path in candidates:
        try:
            model_state, train_state = load_checkpoint(path)
            read_train_config(path)
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, SafetensorError) as e:
            log.warning("checkpoint %s is corrupt or incomplete (%s: %s); trying the one before it",
                        path, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            continue
        if path != candidates[0]:
            log.warning("resuming from %s, the newest intact checkpoint", path)
        return path, model_state, train_state
    if candidates or (checkpoints_root(run_dir) / LATEST).is_file():
        raise FileNotFoundError(_no_checkpoint_message(run_dir))
    return None


def _no_checkpoint_message(run_dir: str | Path) -> str:
    root = checkpoints_root(run_dir)
    named = (root / LATEST).read_text().strip()
    return (f"{root / LATEST} names {named}, and it and every older checkpoint are missing or incomplete; "
            f"delete {root} to start the run over")


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(full model weights, training state) of a checkpoint directory, loaded without running code."""
    path = Path(path)
    model_state = load_file(str(path / MODEL_FILE))
    train_state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    return model_state, train_state


def read_train_config(path: str | Path) -> dict:
    """The resolved TrainConfig saved with a checkpoint."""
    return json.loads((Path(path) / TRAIN_CONFIG_FILE).read_text())
