"""Where the GPU time of one training step goes: a torch.profiler pass over bench_train_gpu's step.

Prints, per row, the GPU time per step split into categories (decaylab's Triton operator kernels,
Inductor-generated fused kernels, matrix products, copies/casts, the optimizer, other), the GPU-busy
fraction of the wall time (a value well below 1 means the CPU does not launch fast enough), and the
kernels with the most GPU time.

Then, per row, the CPU operators with the most self CPU time per step (where the launching goes).

Usage: python benchmarks/profile_train_gpu.py [--only "sd-0.99 vector compiled"] [--steps 5] [--top 30]
"""

from __future__ import annotations

import argparse
import collections
import time

import torch
from torch.profiler import ProfilerActivity, profile

from bench_train_gpu import ROWS, training_step

#: category → substrings of kernel names (first match wins, checked in this order)
CATEGORIES = [
    ("decaylab operator", ("chunk_", "intra", "state_kernel", "decode")),
    ("matmul", ("gemm", "nvjet", "cutlass", "xmma", "wgmma", "sm90", "cublas")),
    ("optimizer", ("adam", "multi_tensor", "foreach")),
    ("copy/cast", ("copy", "convert", "cast", "to_copy", "cat")),
    ("inductor fused", ("triton_poi", "triton_red", "triton_per", "triton_tem")),
    ("flash/sdpa", ("flash", "fmha", "attention")),
]


def category(name: str) -> str:
    low = name.lower()
    for label, keys in CATEGORIES:
        if any(k in low for k in keys):
            return label
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="160m")
    parser.add_argument("--only", default="sd-0.99 vector compiled,softmax compiled")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    keep = set(args.only.split(","))
    for group in args.rows.split(","):
        for label, *spec in ROWS[group]:
            if label not in keep:
                continue
            model, step = training_step(*spec)
            for _ in range(4):
                step()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                start = time.perf_counter()
                for _ in range(args.steps):
                    step()
                torch.cuda.synchronize()
                wall = (time.perf_counter() - start) / args.steps
            kernels = collections.Counter()
            for event in prof.events():
                if event.device_type == torch.autograd.DeviceType.CUDA:
                    kernels[event.name] += event.device_time / 1e3 / args.steps  # ms per step
            busy = sum(kernels.values())
            by_category = collections.Counter()
            for name, ms in kernels.items():
                by_category[category(name)] += ms
            print(f"\n## {group} / {label}: wall {wall * 1e3:.1f} ms/step, GPU busy {busy:.1f} ms "
                  f"({busy / (wall * 1e3):.0%})")
            print("| category | ms/step | share |\n|---|---|---|")
            for name, ms in by_category.most_common():
                print(f"| {name} | {ms:.2f} | {ms / busy:.1%} |")
            print("| kernel | category | ms/step |\n|---|---|---|")
            for name, ms in kernels.most_common(args.top):
                print(f"| {name[:110]} | {category(name)} | {ms:.3f} |")
            print("| CPU operator | self CPU ms/step | calls/step |\n|---|---|---|")
            cpu_ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
            for e in cpu_ops[:args.top]:
                print(f"| {e.key[:110]} | {e.self_cpu_time_total / 1e3 / args.steps:.3f} | {e.count / args.steps:g} |")
            del model, step
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
