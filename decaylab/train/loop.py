"""The training loop.

Step after step (:func:`decaylab.train.step.optimizer_step`), AdamW with learning rate ``lr(s)``
minimizes the mean token cross-entropy over the global batch of ``micro_batch_size · A · W``
sequences of step ``s``, which depends on ``(seed, s)`` only; the run validates, logs and
checkpoints as its config says, and resumes from its latest checkpoint.

Because the data of a step, the learning rate of a step and (on CPU) the arithmetic are pure
functions of the step and the restored state, a run resumed from a checkpoint reproduces an
uninterrupted run exactly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from decaylab.atomic import write_text_atomic
from decaylab.device import autocast
from decaylab.lock import LOCK_FILE, Locked, exclusive_lock
from decaylab.train import build
from decaylab.train.checkpoint import (
    gather_model_state,
    gather_optimizer_state,
    latest_checkpoint,
    load_newest_intact,
    read_train_config,
    restore_model_and_optimizer,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from decaylab.train.config import ConfigError, TrainConfig
from decaylab.train.distributed import (
    Runtime,
    barrier,
    broadcast_object,
    gather_objects,
    init_runtime,
    shutdown,
    wrap_model,
)
from decaylab.train.metrics import MetricsLog
from decaylab.train.optim import make_optimizer
from decaylab.train.rundir import FINAL_FILE, checkpoints_root
from decaylab.train.step import evaluate, optimizer_step

log = logging.getLogger(__name__)

#: Fields that may differ between the run that wrote a checkpoint and the run resuming it: they
#: change how the work is laid out or reported, not what is computed (the global batch is
#: checked separately).
RESUME_FREE_FIELDS = frozenset({
    "run_dir", "progress", "tensorboard", "log_every", "ckpt_every", "keep_checkpoints",
    "parallel", "micro_batch_size", "grad_accum", "device", "precision", "compile", "compile_mode",
})


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite; the last good checkpoint is kept."""


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train (or resume, or skip a finished run) as ``cfg`` says; return the final metrics.

    Run under ``torchrun`` for several processes. The final metrics are also written to
    ``run_dir/final.json``; a run whose ``final.json`` exists is not redone when its config is
    ``cfg`` (and refused otherwise). One process (group) at a time may write a run directory:
    another one is refused, naming the holder's pid."""
    rt = init_runtime(cfg.device)
    try:
        with _sole_writer(Path(cfg.run_dir), rt):
            metrics = _run(cfg, rt)
        # Every process leaves the group together: a gloo process whose peer has already
        # destroyed the group can abort at exit ("terminate called without an active exception").
        barrier()
        return metrics
    finally:
        shutdown(rt)


def _run(cfg: TrainConfig, rt: Runtime) -> dict[str, Any]:
    session_start = time.perf_counter()
    run_dir = Path(cfg.run_dir)
    final_path = run_dir / FINAL_FILE
    finished, problem = broadcast_object(_finished_run(run_dir, cfg, rt.world_size) if rt.is_main else None)
    if problem:
        raise ConfigError(problem)
    if finished is not None:
        log.info("%s exists: the run is finished, nothing to do", final_path)
        return finished

    train_data, val_data = build.open_datasets(cfg.data, progress=rt.is_main and cfg.progress)
    _check_split_lengths((train_data, val_data), cfg.seq_len)
    model = build.initial_model(cfg.model, train_data.vocab_size, cfg.seed)
    model_config = model.config
    n_params = sum(p.numel() for p in model.parameters())
    model = wrap_model(model.to(rt.device), cfg.parallel, rt)
    compiled = build.compile_model(model, cfg.compile, cfg.compile_mode, rt.device)
    optimizer = make_optimizer(model, cfg)
    global_batch = cfg.micro_batch_size * cfg.grad_accum * rt.world_size
    tokens_per_step = global_batch * cfg.seq_len
    mixed_precision = autocast(rt.device, cfg.precision)

    state = _resume(run_dir, cfg, rt, model, optimizer, global_batch)
    start_step = state["step"]
    if rt.is_main:
        log.info("%s: %s parameters, %d processes (%s), global batch %d x %d tokens, %s at step %d",
                 run_dir, f"{n_params:,}", rt.world_size, cfg.parallel, global_batch, cfg.seq_len,
                 "resuming" if start_step else "starting", start_step)

    metrics = MetricsLog(run_dir, start_step=start_step, enabled=rt.is_main, tensorboard=cfg.tensorboard)
    bar = tqdm(total=cfg.steps, initial=start_step, unit="step", dynamic_ncols=True,
               disable=not (rt.is_main and cfg.progress))
    clock = state["clock"]
    wall_base = clock["wall_time_s"]
    window = {"tokens": 0, "seconds": 0.0}  # throughput since the last metrics record
    pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (step, loss, gradient norm) not read back yet
    model.train()
    try:
        t0 = time.perf_counter()
        for step in range(start_step, cfg.steps):
            done = step + 1
            loss, grad_norm, lr = optimizer_step(model, optimizer, train_data, step, cfg, rt, mixed_precision)
            pending.append((done, loss, grad_norm))
            window["tokens"] += tokens_per_step
            bar.update(1)
            evaluating = done == cfg.steps or bool(cfg.eval_every and done % cfg.eval_every == 0)
            first = step == start_step  # logged with its time, which includes compiling the model
            logging_step = first or done % cfg.log_every == 0 or evaluating
            saving = done % cfg.ckpt_every == 0 or done == cfg.steps
            if not (logging_step or saving):
                continue  # the GPU runs ahead: losses are read back at the next log, eval or checkpoint step
            loss, grad_norm = _read_back(pending, run_dir)
            seconds = time.perf_counter() - t0
            clock["train_time_s"] += seconds
            window["seconds"] += seconds
            if first and rt.is_main:
                log.info("first step%s: %.1f s", " (includes torch.compile)" if compiled else "", seconds)

            record = {"step": done, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                      "tokens": done * tokens_per_step,
                      "tokens_per_s": window["tokens"] / max(window["seconds"], 1e-9)}
            if first:
                record["first_step_s"] = seconds
            state["last"]["loss"] = loss
            if evaluating:
                batches = cfg.final_eval_batches if done == cfg.steps else cfg.eval_batches
                record.update(evaluate(model, val_data, cfg.seq_len, cfg.eval_batch_size, batches, rt, mixed_precision))
                state["last"].update(val_loss=record["val_loss"], val_ppl=record["val_ppl"], val_step=done)
            if logging_step:
                metrics.write(record)
                window = {"tokens": 0, "seconds": 0.0}
            bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{record['tokens_per_s']:,.0f}", lr=f"{lr:.2e}")

            if saving:
                clock["wall_time_s"] = wall_base + time.perf_counter() - session_start
                _save(run_dir, done, model, optimizer, model_config, cfg, rt, global_batch, state)
            t0 = time.perf_counter()
    finally:
        bar.close()
        metrics.close()

    final = {
        "steps": cfg.steps,
        "tokens": cfg.steps * tokens_per_step,
        "val_loss": state["last"].get("val_loss"),
        "val_ppl": state["last"].get("val_ppl"),
        "train_loss": state["last"].get("loss"),
        "wall_time_s": clock["wall_time_s"],
        "train_time_s": clock["train_time_s"],
        "tokens_per_s": cfg.steps * tokens_per_step / max(clock["train_time_s"], 1e-9),
        "params": n_params,
        "world_size": rt.world_size,
    }
    if rt.is_main:
        write_text_atomic(final_path, json.dumps(final, indent=2) + "\n")
    return broadcast_object(final)


@contextlib.contextmanager
def _sole_writer(run_dir: Path, rt: Runtime):
    """Rank 0 holds ``run_dir``'s lock for the ``with`` block. Every process raises first when the
    directory is not writable or another process holds its lock."""
    with contextlib.ExitStack() as stack:
        refusal = None
        if rt.is_main:
            try:
                _check_writable(run_dir)
                stack.enter_context(exclusive_lock(run_dir / LOCK_FILE))
            except (PermissionError, Locked) as e:
                refusal = e
        refusal = broadcast_object(refusal)
        if refusal is not None:
            raise refusal
        yield


def _check_writable(run_dir: Path) -> None:
    """Create a file in ``run_dir`` (and in its checkpoints directory, if there) and remove it again."""
    for directory in (run_dir, checkpoints_root(run_dir)):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = directory / f".write-probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise PermissionError(f"run_dir {run_dir} is not writable ({directory}: {e.strerror}); "
                                  "fix its permissions or choose another run_dir") from None


def _finished_run(run_dir: Path, cfg: TrainConfig, world_size: int) -> tuple[dict | None, str | None]:
    """(final metrics, None) when ``run_dir`` holds a finished run of ``cfg``; (None, why not) when
    it holds a finished run of another config; (None, None) when it holds no finished run."""
    final_path = run_dir / FINAL_FILE
    if not final_path.is_file():
        return None, None
    try:
        final = json.loads(final_path.read_text())
        if not isinstance(final, dict):
            raise ValueError("not a JSON object")
        last = latest_checkpoint(run_dir)
        if last is None:
            raise FileNotFoundError(f"no checkpoint in {checkpoints_root(run_dir)}")
        saved = read_train_config(last)
    except (OSError, ValueError) as e:
        return None, (f"{final_path} marks the run finished, but it or the config of its last checkpoint cannot "
                      f"be read ({e}); delete {final_path} to redo the end of the run, or use a new run_dir")
    saved_global_batch = saved["micro_batch_size"] * saved["grad_accum"] * final.get("world_size", 1)
    global_batch = cfg.micro_batch_size * cfg.grad_accum * world_size
    problem = _incompatibility(f"{run_dir} holds a finished run, and", saved, saved_global_batch, cfg, global_batch)
    return (None, problem) if problem else (final, None)


def _check_split_lengths(splits: tuple[Any, ...], seq_len: int) -> None:
    """Every split must hold at least one window of ``seq_len + 1`` tokens."""
    for data in splits:
        if data.num_windows(seq_len) < 1:
            raise ConfigError(f"the {data.split} split of {data.directory} has {data.num_tokens} tokens, fewer than "
                              f"seq_len + 1 = {seq_len + 1}; lower seq_len or prepare more data")


def _read_back(pending: list[tuple[int, torch.Tensor, torch.Tensor]], run_dir: Path) -> tuple[float, float]:
    """(loss, gradient norm) of the last pending step, read in one host transfer, and ``pending``
    emptied; raises :class:`TrainingDiverged` at the first pending step whose loss or gradient norm
    is not finite (its update was skipped, and no checkpoint is written after it)."""
    values = torch.stack([torch.stack([loss.float(), norm.float()]) for _, loss, norm in pending]).tolist()
    steps = [step for step, _, _ in pending]
    pending.clear()
    for step, (loss, grad_norm) in zip(steps, values):
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            raise TrainingDiverged(_divergence_message(step, loss, grad_norm, run_dir))
    return values[-1][0], values[-1][1]


def _divergence_message(step: int, loss: float, grad_norm: float, run_dir: Path) -> str:
    last = latest_checkpoint(run_dir)
    kept = f"the last good checkpoint, {last}, is intact" if last else "no checkpoint had been saved yet"
    return (f"training diverged at step {step}: loss = {loss}, gradient norm = {grad_norm}. "
            f"Its update was skipped and nothing was saved after it; {kept}. Try a lower lr or a longer warmup.")


def _fresh_state() -> dict[str, Any]:
    """The training state of a run that has no checkpoint yet."""
    return {"step": 0, "clock": {"wall_time_s": 0.0, "train_time_s": 0.0}, "last": {}}


def _resume(run_dir: Path, cfg: TrainConfig, rt: Runtime, model: nn.Module, optimizer: torch.optim.Optimizer,
            global_batch: int) -> dict[str, Any]:
    """Load the latest checkpoint of ``run_dir`` into the model and optimizer, restore the RNG
    states, and return the training state (step, clocks, last metrics); a fresh state when the
    run has no checkpoint."""
    found = load_newest_intact(run_dir) if rt.is_main else None
    path = broadcast_object(str(found[0]) if found else "")
    if not path:
        return _fresh_state()
    problem, model_state, state = None, {}, {}
    if rt.is_main:
        _, model_state, state = found
        problem = _incompatibility(f"cannot resume from {path}:", read_train_config(path),
                                   state["data"]["global_batch_size"], cfg, global_batch)
    problem = broadcast_object(problem)
    if problem:
        raise ConfigError(problem)
    restore_model_and_optimizer(model, optimizer, model_state, state.get("optimizer", {}), from_rank0=rt.distributed)
    state = broadcast_object({k: v for k, v in state.items() if k != "optimizer"})
    set_rng_state(state["rng"][rt.rank % len(state["rng"])])
    return {"step": state["step"], "clock": state["clock"], "last": state["last"]}


def _incompatibility(subject: str, saved: dict, saved_global_batch: int, cfg: TrainConfig,
                     global_batch: int) -> str | None:
    """Why a run written with config ``saved`` cannot continue as ``cfg`` (a message starting with
    ``subject``), or None."""
    now = cfg.to_dict()
    differing = sorted(k for k in set(saved) | set(now) if k not in RESUME_FREE_FIELDS and saved.get(k) != now.get(k))
    if differing:
        details = "; ".join(f"{k}: {json.dumps(saved.get(k))} there, {json.dumps(now.get(k))} now" for k in differing)
        return (f"{subject} the config differs in {details}. "
                f"Use the original config, or a new run_dir to start over.")
    if saved_global_batch != global_batch:
        return (f"{subject} it was trained with a global batch of {saved_global_batch} "
                f"sequences, and micro_batch_size x grad_accum x processes = {global_batch} now")
    return None


def _save(run_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, model_config: Any,
          cfg: TrainConfig, rt: Runtime, global_batch: int, state: dict[str, Any]) -> None:
    """Checkpoint after ``step`` optimizer steps (collective: every process takes part, rank 0 writes)."""
    model_state = gather_model_state(model)
    optimizer_state = gather_optimizer_state(model, optimizer)
    rngs = gather_objects(rng_state())
    if rt.is_main:
        train_state = {
            "step": step,
            "optimizer": optimizer_state,
            "rng": rngs,
            "schedule": {"name": cfg.schedule, "step": step},
            "data": {"next_step": step, "global_batch_size": global_batch, "seq_len": cfg.seq_len, "seed": cfg.seed},
            "clock": dict(state["clock"]),
            "last": dict(state["last"]),
        }
        save_checkpoint(run_dir, step, model_state, model_config, train_state, cfg.to_dict(), cfg.keep_checkpoints)
    barrier()

