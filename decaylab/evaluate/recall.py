"""Multi-query associative recall (MQAR, as in Zoology / Based): a synthetic memory probe.

Vocabulary layout for a task vocabulary of V tokens: 0 is the filler, keys are 1 … V_k and values
V_k + 1 … V − 1 with V_k = (V − 1) // 2. A sequence of length T holds N key–value pairs, then
the N keys again in a random order, at the starts of random non-overlapping 2-token slots of the
rest (filler elsewhere):

    k₁ v₁ k₂ v₂ … k_N v_N · · k₃ · · k₁ · · · k₂ · ·

Keys within a sequence are distinct; values are drawn with replacement. The target at a query
key's position is its value (the model must recall it from the first half); every other target
is −100 (ignored). The query region holds no values (as in Zoology's MQAR): with each answer
shown after its query, the last of N queries could be answered by elimination (the one value not
yet repeated), the one before by a guess between two, and so on, without any recall.

Accuracy = fraction of query positions whose argmax prediction is the value; a predictor that
knows only the value range scores 1 / (V − 1 − V_k) (chance).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from decaylab.device import autocast, model_device
from decaylab.train.build import compile_model
from decaylab.train.config import TrainConfig
from decaylab.train.optim import make_optimizer
from decaylab.train.step import optimizer_step, single_process

IGNORE = -100
FILLER = 0
HEAD_COUNT_FIELDS = ("num_heads", "num_attention_heads", "num_key_value_heads")  # of decaylab's and LLaMA's configs


@dataclass(frozen=True)
class MQARTask:
    """Shape of an MQAR task: sequence length T, key–value pairs N, task vocabulary V."""

    seq_len: int = 64
    num_pairs: int = 8
    vocab_size: int = 64

    @property
    def num_keys(self) -> int:
        return (self.vocab_size - 1) // 2

    @property
    def num_values(self) -> int:
        return self.vocab_size - 1 - self.num_keys

    @property
    def chance(self) -> float:
        """Accuracy of a predictor that knows only the value range."""
        return 1.0 / self.num_values

    def validate(self) -> None:
        if self.num_pairs < 1 or self.num_pairs > self.num_keys:
            raise ValueError(f"MQAR: num_pairs={self.num_pairs} must be in [1, {self.num_keys}] for vocab_size={self.vocab_size}")
        if self.seq_len < 4 * self.num_pairs:
            raise ValueError(f"MQAR: seq_len={self.seq_len} must be ≥ 4·num_pairs = {4 * self.num_pairs}")


def generate_mqar(task: MQARTask, num_examples: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` int64 ``[num_examples, T]`` for ``task``, a pure function of ``seed``.

    All rows at once: a draw of N distinct items out of M is the first N columns of the argsort of
    uniform noise [B, M] (the keys out of V_k, the query slots out of the (T − 2N) / 2 free ones, the
    order of the queries out of N), so a training batch costs well under a millisecond of the CPU
    (a row at a time it cost ~12 ms for 256 rows, as much as the GPU's step)."""
    task.validate()
    rng = np.random.default_rng(seed)
    B, T, N = num_examples, task.seq_len, task.num_pairs
    rows = np.arange(B)[:, None]

    def distinct(m: int) -> np.ndarray:  # [B, N] distinct draws from range(m), in random order
        return rng.random((B, m)).argsort(axis=1)[:, :N]

    keys = 1 + distinct(task.num_keys)
    values = 1 + task.num_keys + rng.integers(0, task.num_values, size=(B, N))
    order = rng.random((B, N)).argsort(axis=1)
    starts = 2 * N + 2 * np.sort(distinct((T - 2 * N) // 2), axis=1)  # query region cut into 2-token slots
    inputs = np.full((B, T), FILLER, dtype=np.int64)
    targets = np.full((B, T), IGNORE, dtype=np.int64)
    inputs[:, 0:2 * N:2], inputs[:, 1:2 * N:2] = keys, values
    inputs[rows, starts] = keys[rows, order]
    targets[rows, starts] = values[rows, order]
    return torch.from_numpy(inputs), torch.from_numpy(targets)


def recall_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
    """(correct, queries): argmax of ``logits`` [B, T, V] equals ``targets`` [B, T] where targets ≠ −100."""
    query = targets != IGNORE
    correct = (logits.argmax(dim=-1) == targets) & query
    return int(correct.sum()), int(query.sum())


@torch.no_grad()
def evaluate_mqar(model: nn.Module, task: MQARTask, num_examples: int = 256, batch_size: int = 32,
                  seed: int = 1234, progress: bool = False) -> dict:
    """Query accuracy of a trained ``model`` on fresh MQAR sequences (token ids < task.vocab_size,
    so a language model can be probed zero-shot with its own vocabulary as the task's):
    ``{"accuracy", "queries", "chance"}``."""
    model.eval()
    device = model_device(model)
    inputs, targets = generate_mqar(task, num_examples, seed)
    correct = queries = 0
    for a in tqdm(range(0, num_examples, batch_size), desc="mqar eval", disable=not progress, leave=False):
        with autocast(device):
            logits = model(input_ids=inputs[a:a + batch_size].to(device)).logits
        c, q = recall_accuracy(logits.float().cpu(), targets[a:a + batch_size])
        correct, queries = correct + c, queries + q
    return {"accuracy": correct / queries, "queries": queries, "chance": task.chance}


@dataclass(frozen=True)
class RecallProbe:
    """Every knob of the MQAR probe: the task (sequence length T, key–value pairs N, task vocabulary
    V), the training (steps, peak ``lr``, sequences per step, AdamW weight decay) and the model: the
    design of the model config on the model preset ``size`` (None: the model config's own sizes),
    with width and depth ``hidden_size`` and ``num_hidden_layers`` where set (heads of the same
    head width). The schedule is the training's warmup-cosine: 10% warmup, decaying to 0.

    The defaults sit at the edge of learning: on the CPU (2026-12-03, benchmarks/calibrate_mqar.py,
    seed 0) a softmax Transformer of size ``tiny`` reached 0.990 accuracy on 4 pairs in 64 tokens after
    3,000 steps at lr 3e-4, Mamba2 (vector) 0.997 and SD-0.99 (vector) 0.519, but with the batches the
    generator draws since that day (all rows at once: the same task, another random stream) the same
    probe stayed at 0.290 (2026-12-06; 0.267 with a 256-token vocabulary): at 32 sequences per step
    the escape from the plateau falls near step 3,000, so whether it happens depends on the data
    stream. Use 256 sequences per step where the GPU allows (below). At lr 1e-3, and with the ``micro``
    model (heads of 16) at any tried lr up to 6,000 steps, the softmax model stayed on the plateau
    where it picks one of the sequence's values without recall (≈ 1/N). More pairs need more
    training: with the same 3,000 steps of 32 sequences the tiny softmax model reached only 0.227 on
    8 pairs and 0.282 on 16; with 1,500 steps of 128 sequences, 0.401 on 8 pairs (0.250 at lr 1e-3);
    with 1,500 steps of 256 sequences, 1.000 on 8 pairs and 0.262 on 16. On one H200 (16 probes sharing
    it), 3,000 steps of 256 sequences: softmax 1.000 on 2, 4, 8 and 16 pairs. With a 256-token task vocabulary
    (127 keys) it stayed on the plateau at every length, batch and lr tried (benchmarks/RESULTS.md,
    2026-12-06), where Mamba2, SD-0.99 and TNL learned 16 pairs in 128 tokens.

    ``compile_mode`` (None: eager) compiles the probe's model with that ``torch.compile`` mode on
    CUDA (eager elsewhere), as a training run's ``compile=auto``: a tiny model's eager step is
    bound by the CPU's kernel launches, which ``"reduce-overhead"``'s CUDA graphs remove."""

    seq_len: int = 64
    num_pairs: int = 4
    vocab_size: int = 64
    steps: int = 3000
    lr: float = 3e-4
    batch_size: int = 32
    weight_decay: float = 0.1
    size: str | None = None
    hidden_size: int | None = None
    num_hidden_layers: int | None = None
    eval_examples: int = 256
    compile_mode: str | None = None

    @property
    def task(self) -> MQARTask:
        return MQARTask(self.seq_len, self.num_pairs, self.vocab_size)

    def train_config(self, seed: int) -> TrainConfig:
        """The probe's training as a :class:`TrainConfig` (optimizer, schedule and step settings)."""
        return TrainConfig(seed=seed, seq_len=self.seq_len, micro_batch_size=self.batch_size, steps=self.steps,
                           lr=self.lr, min_lr_ratio=0.0, warmup_steps=max(self.steps // 10, 1),
                           weight_decay=self.weight_decay, grad_clip=1.0, progress=False, tensorboard=False,
                           compile="auto" if self.compile_mode else "false",
                           compile_mode=self.compile_mode or "default")

    def model_config(self, model_config):
        """``model_config``'s design at the probe's size, with the task's vocabulary."""
        base = model_config if self.size is None else small_config_like(model_config, self.size)
        fields = {**base.to_dict(), "vocab_size": self.vocab_size}
        if self.hidden_size is not None:
            heads = self.hidden_size // fields["head_dim"]
            fields.update({"hidden_size": self.hidden_size},
                          **{k: heads for k in HEAD_COUNT_FIELDS if k in fields})
        if self.num_hidden_layers is not None:
            fields["num_hidden_layers"] = self.num_hidden_layers
        return type(base).from_dict(fields)


class MQARStream:
    """MQAR batches with the ``TokenDataset.batch`` contract, so the training step can draw them:
    step ``s`` of seed ``seed`` is a fresh global batch (a pure function of ``(seed, s)``), of which
    rank ``r`` takes rows ``r·batch_size …``."""

    def __init__(self, task: MQARTask):
        self.task = task

    def batch(self, step: int, batch_size: int, seq_len: int, *, seed: int = 0, rank: int = 0,
              world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        if seq_len != self.task.seq_len:
            raise ValueError(f"MQAR: batches of seq_len={seq_len} asked of a task of seq_len={self.task.seq_len}")
        inputs, targets = generate_mqar(self.task, batch_size * world_size, seed=seed * 1_000_003 + step)
        rows = slice(rank * batch_size, (rank + 1) * batch_size)
        return inputs[rows], targets[rows]


def train_and_eval_mqar(model_config, probe: RecallProbe = RecallProbe(), seed: int = 0,
                        device: str | torch.device = "cpu", progress: bool = True) -> dict:
    """Train a fresh model of ``model_config``'s design (vocabulary and width from ``probe``) on MQAR
    and report its query accuracy on held-out sequences.

    Training is the training loop's: :func:`~decaylab.train.optim.make_optimizer`, the warmup-cosine
    schedule and :func:`~decaylab.train.step.optimizer_step` on fresh batches of :class:`MQARStream`,
    minimizing the cross-entropy at query positions (every other target is ignored); a step whose
    loss or gradient is not finite leaves the model as it was and is counted in ``skipped_steps``.
    Returns ``{"accuracy", "queries", "chance", "final_loss", "steps", "skipped_steps", "seconds", "task"}``.
    """
    from decaylab.model import build_model

    task = probe.task
    cfg = probe.train_config(seed)
    torch.manual_seed(seed)
    model = build_model(probe.model_config(model_config)).to(device)
    compile_model(model, cfg.compile, cfg.compile_mode, torch.device(device))
    optimizer = make_optimizer(model, cfg)
    rt, data, mixed_precision = single_process(model), MQARStream(task), autocast(device)
    model.train()
    start, loss = time.perf_counter(), torch.tensor(float("nan"))
    skipped = torch.zeros((), dtype=torch.long, device=rt.device)
    bar = tqdm(range(probe.steps), desc="mqar train", disable=not progress, leave=False)
    for step in bar:
        loss, grad_norm, _ = optimizer_step(model, optimizer, data, step, cfg, rt, mixed_precision)
        skipped += ~(torch.isfinite(loss) & torch.isfinite(grad_norm))
        if progress and step % 50 == 0:  # a host read: the GPU runs ahead in between
            bar.set_postfix(loss=f"{loss.item():.3f}")
    seconds, final_loss = time.perf_counter() - start, loss.item()
    result = evaluate_mqar(model, task, num_examples=probe.eval_examples, seed=seed + 10_000_019)
    return {**result, "final_loss": final_loss, "steps": probe.steps, "skipped_steps": int(skipped),
            "seconds": seconds,
            "task": {"seq_len": task.seq_len, "num_pairs": task.num_pairs, "vocab_size": task.vocab_size}}


def small_config_like(model_config, size: str = "micro"):
    """A config of preset ``size`` with ``model_config``'s decay design (decay, granularity, sharing,
    positional encoding); the softmax baseline maps to the softmax model of that size."""
    from decaylab.model import DecayLinearConfig, make_config

    if not isinstance(model_config, DecayLinearConfig):
        return make_config(size, arch="softmax")
    design = {k: getattr(model_config, k) for k in ("decay", "decay_granularity", "share_decay_key", "positional")}
    return make_config(size, **design)
