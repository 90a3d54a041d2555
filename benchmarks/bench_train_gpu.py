"""End-to-end training throughput on one GPU: the same model with each operator backend.

Default: the paper's 160M Simple-Decay model (sd-0.99, vector decay), batch 8 × 2048 tokens,
bf16 autocast, AdamW; tokens/s is the median over timed steps after warm-up (CUDA-synchronized).
Backends that are unavailable or fail are reported, not hidden.

Usage: python benchmarks/bench_train_gpu.py [--size 160m] [--backends triton,fla,chunk]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from decaylab.model import build_model, make_config


def tokens_per_second(backend: str, args) -> float:
    torch.manual_seed(0)
    config = make_config(args.size, decay=args.decay, decay_granularity=args.granularity, backend=backend)
    model = build_model(config).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=True)
    tokens = args.batch * args.seq_len
    times = []
    for step in range(args.warmup + args.steps):
        x = torch.randint(0, config.vocab_size, (args.batch, args.seq_len + 1), device="cuda")
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x[:, :-1]).logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    if not torch.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss.item()}")
    del model, optimizer
    torch.cuda.empty_cache()
    return tokens / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="160m")
    parser.add_argument("--decay", default="sd-0.99")
    parser.add_argument("--granularity", default="vector")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--backends", default="triton,fla,chunk")
    args = parser.parse_args()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; {args.size} {args.decay} {args.granularity}, "
          f"batch {args.batch} x {args.seq_len}, bf16 autocast, AdamW")
    results = {}
    for backend in args.backends.split(","):
        try:
            results[backend] = tokens_per_second(backend, args)
            print(f"{backend:<8} {results[backend]:>12,.0f} tokens/s", flush=True)
        except Exception as err:  # report and go on: one broken backend must not hide the others
            print(f"{backend:<8} failed: {type(err).__name__}: {str(err)[:300]}", flush=True)
    base = results.get("chunk")
    if base:
        for backend, value in results.items():
            print(f"{backend:<8} {value / base:>6.2f}x the PyTorch chunk backend")


if __name__ == "__main__":
    main()
