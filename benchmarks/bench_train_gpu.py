"""End-to-end training throughput on one GPU: decaylab designs against the softmax reference.

Every row trains with the step of ``decaylab train`` (``optimizer_step``: batches drawn on the CPU and
copied through pinned memory, no host read of the loss): bf16 autocast, the blockwise loss head
(``shift_labels``, no full float32 logits), gradient clipping, AdamW (``make_optimizer``: fused on CUDA), optionally
``torch.compile`` (:func:`decaylab.train.build.compile_model`). A row builds its model, runs
``--warmup`` steps (the first one compiles; its time is the "first step" column), then times
``--repeats`` windows of ``--steps`` steps each (CUDA-synchronized); tokens/s is reported as
min / median / max over the windows. Rows that fail are reported, not hidden.

Rows of the ``trained`` group first train ``--trained-steps`` steps (default 800) on the study's
dataset (``runs/data/large-8k``, prepared if missing) with the optimal scale's schedule (lr 2e-3,
warm-up, cosine), then time the next steps there: learned decays forget faster than a fresh
model's and send the operator's chunks to its slower blocked path (``decaylab.ops.triton.intra``),
so the other groups, all at initialization, overstate a real run's speed for Mamba2-like decays.

MFU = achieved FLOP/s ÷ the GPU's dense bf16 peak (``--peak-tflops``, 989 for an H200 SXM), with
training FLOP per token = 6·N_matmul + attention terms (fwd + bwd = 3 × forward):
    N_matmul = parameters of every matrix product, LM head included, embeddings excluded;
    softmax reference: 3 · 2·L·T·d (causal QKᵀ and AV: 2·T·d each, halved by the mask);
    decay linear attention: 3 · L·H·(C·(K + V) + 4·K·V) with chunk C = 64 (in-chunk causal scores
    and outputs, state read-out and update).

Usage: python benchmarks/bench_train_gpu.py [--rows 160m,long,small,trained] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

import torch
from tqdm import tqdm

from decaylab.model import build_model, make_config
from decaylab.sweep.presets import SCALES
from decaylab.train.build import compile_model, open_datasets
from decaylab.train.config import TrainConfig
from decaylab.train.step import optimizer_step, single_process
from decaylab.train.optim import make_optimizer

CHUNK = 64

#: (row group, label, preset, arch, config overrides, batch, seq_len, compile mode or None for eager)
ROWS = {
    "160m": [
        ("softmax eager", "160m", "softmax", {}, 8, 2048, None),
        ("softmax compiled", "160m", "softmax", {}, 8, 2048, "default"),
        ("sd-0.99 vector eager", "160m", "decay_linear", dict(decay="sd-0.99"), 8, 2048, None),
        ("sd-0.99 vector compiled", "160m", "decay_linear", dict(decay="sd-0.99"), 8, 2048, "default"),
        ("sd-0.99 scalar compiled", "160m", "decay_linear", dict(decay="sd-0.99", decay_granularity="scalar"),
         8, 2048, "default"),
        ("sd-0.99 vector reduce-overhead", "160m", "decay_linear", dict(decay="sd-0.99"), 8, 2048,
         "reduce-overhead"),
        ("sd-0.99 scalar reduce-overhead", "160m", "decay_linear", dict(decay="sd-0.99", decay_granularity="scalar"),
         8, 2048, "reduce-overhead"),
        ("lightnet vector compiled", "160m", "decay_linear", dict(decay="lightnet"), 8, 2048, "default"),
        ("lightnet vector reduce-overhead", "160m", "decay_linear", dict(decay="lightnet"), 8, 2048,
         "reduce-overhead"),
    ],
    "long": [
        ("softmax compiled", "160m", "softmax", {}, 1, 32768, "default"),
        ("sd-0.99 vector compiled", "160m", "decay_linear", dict(decay="sd-0.99"), 1, 32768, "default"),
        ("sd-0.99 vector reduce-overhead", "160m", "decay_linear", dict(decay="sd-0.99"), 1, 32768,
         "reduce-overhead"),
    ],
    "small": [
        ("softmax compiled", "small", "softmax", {}, 32, 512, "default"),
        ("softmax reduce-overhead", "small", "softmax", {}, 32, 512, "reduce-overhead"),
        ("sd-0.99 vector eager", "small", "decay_linear", dict(decay="sd-0.99"), 32, 512, None),
        ("sd-0.99 vector compiled", "small", "decay_linear", dict(decay="sd-0.99"), 32, 512, "default"),
        ("sd-0.99 vector reduce-overhead", "small", "decay_linear", dict(decay="sd-0.99"), 32, 512,
         "reduce-overhead"),
    ],
    "trained": [
        ("softmax compiled", "small", "softmax", {}, 32, 512, "default"),
        *((f"{decay} vector reduce-overhead", "small", "decay_linear", dict(decay=decay), 32, 512, "reduce-overhead")
          for decay in ("mamba2", "sd-0.99", "gla")),
    ],
}


def training_flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """6·N_matmul + the attention/operator terms (see the module docstring)."""
    cfg = model.config
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    L, d = cfg.num_hidden_layers, cfg.hidden_size
    if getattr(cfg, "model_type", "") == "llama":
        attention = 2 * L * seq_len * d
    else:
        H, K = cfg.num_heads, cfg.head_dim
        K_op = 2 * K if cfg.positional == "lrpe-cos" else K
        attention = L * H * (CHUNK * (K_op + K) + 4 * K_op * K)
    return 6 * matmul + 3 * attention


class RandomTokens:
    """Random token batches with the ``TokenDataset.batch`` contract, drawn on the CPU as a dataset's are."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def batch(self, step, batch_size, seq_len, *, seed=0, rank=0, world_size=1):
        x = torch.randint(0, self.vocab_size, (batch_size, seq_len + 1))
        return x[:, :-1], x[:, 1:]


def training_step(size, arch, overrides, batch, seq_len, mode, trained_steps=0):
    """(model, step): a fresh model (compiled with ``mode`` unless None) and ``step()``, one optimizer
    step of ``decaylab train`` (:func:`decaylab.train.step.optimizer_step`), which returns the loss as
    a device tensor (nothing in it waits for the GPU). With ``trained_steps`` = 0 the steps run on
    random tokens at a constant lr of 1e-4; otherwise on the optimal scale's data with its schedule
    (steps numbered from 0, so that the caller's first ``trained_steps`` steps train the model)."""
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = build_model(make_config(size, arch=arch, **overrides)).cuda().train()
    if mode is not None:
        compile_model(model, "true", mode, torch.device("cuda"))
    if trained_steps:
        scale = SCALES["optimal"]
        cfg = TrainConfig(**{k: v for k, v in scale.train.items() if k != "compile_mode"})
        data, _ = open_datasets(scale.data, progress=False)
        if (data.vocab_size, cfg.micro_batch_size, cfg.seq_len) != (model.config.vocab_size, batch, seq_len):
            raise ValueError(f"a trained row must match the optimal scale: vocabulary {data.vocab_size}, "
                             f"{cfg.micro_batch_size} x {cfg.seq_len} tokens per step")
    else:
        cfg = TrainConfig(lr=1e-4, warmup_steps=0, seq_len=seq_len, micro_batch_size=batch, grad_clip=1.0)
        data = RandomTokens(model.config.vocab_size)
    optimizer = make_optimizer(model, cfg)
    rt = single_process(model)
    mixed_precision = torch.autocast("cuda", dtype=torch.bfloat16)
    schedule_step = itertools.count() if trained_steps else itertools.repeat(0)  # 0 throughout on random tokens

    def step() -> torch.Tensor:
        return optimizer_step(model, optimizer, data, next(schedule_step), cfg, rt, mixed_precision)[0]

    return model, step


def measure(label, size, arch, overrides, batch, seq_len, mode, args, trained_steps=0) -> dict:
    model, step = training_step(size, arch, overrides, batch, seq_len, mode, trained_steps)
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    torch.cuda.synchronize()
    first = time.perf_counter() - start
    for _ in tqdm(range(trained_steps), desc=f"{label}: training first", leave=False, disable=not trained_steps):
        step()
    for _ in range(args.warmup - 1):
        step()
    windows = []
    for _ in range(args.repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        torch.cuda.synchronize()
        windows.append(args.steps * batch * seq_len / (time.perf_counter() - start))
    if not torch.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss.item()}")
    flops = training_flops_per_token(model, seq_len)
    row = {"label": label, "size": size, "batch": batch, "seq_len": seq_len, "mode": mode or "eager",
           "tokens_per_s": sorted(windows), "mfu": statistics.median(windows) * flops / (args.peak_tflops * 1e12),
           "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "first_step_s": first,
           "params": sum(p.numel() for p in model.parameters()), "trained_steps": trained_steps}
    del model, step
    torch.cuda.empty_cache()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="160m,long,small", help=f"row groups, of {sorted(ROWS)}")
    parser.add_argument("--only", default="", help="comma-separated labels to keep (default: all)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--trained-steps", type=int, default=800,
                        help="steps of real training before the timed steps of the trained rows")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    import transformers
    import triton

    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}, "
          f"transformers {transformers.__version__}; tokens/s min/median/max of {args.repeats} windows "
          f"x {args.steps} steps", flush=True)
    keep = set(filter(None, args.only.split(",")))
    results = []
    for group in args.rows.split(","):
        reference = None
        print(f"\n## {group}\n| row | batch | tokens/s (min / median / max) | MFU | peak GiB | first step s "
              f"| vs compiled softmax |\n|---|---|---|---|---|---|---|", flush=True)
        for label, *spec in ROWS[group]:
            if keep and label not in keep and label != "softmax compiled":
                continue
            try:
                row = measure(label, *spec, args, args.trained_steps if group == "trained" else 0)
            except Exception as err:  # report and go on: one broken row must not hide the others
                print(f"| {label} | failed: {type(err).__name__}: {str(err)[:300]} |", flush=True)
                continue
            row["group"] = group
            results.append(row)
            median = statistics.median(row["tokens_per_s"])
            if label == "softmax compiled":
                reference = median
            lo, hi = row["tokens_per_s"][0], row["tokens_per_s"][-1]
            ratio = f"{median / reference:.2f}x" if reference else "—"
            print(f"| {label} | {row['batch']} x {row['seq_len']} | {lo:,.0f} / {median:,.0f} / {hi:,.0f} "
                  f"| {row['mfu']:.1%} | {row['peak_gib']:.1f} | {row['first_step_s']:.1f} | {ratio} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
