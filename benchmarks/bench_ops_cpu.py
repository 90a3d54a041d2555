"""CPU: the chunkwise backend vs the token-by-token recurrence, as a ratio measured in one run.

Shape B=2, T=2048, H=8, K=V=64, float32, fresh random inputs; median of several runs each.
Usage: python benchmarks/bench_ops_cpu.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import time

import torch

from decaylab.ops import decay_linear_attention


def run_once(leaves: list[torch.Tensor], backend: str, backward: bool) -> None:
    with torch.set_grad_enabled(backward):
        o, _ = decay_linear_attention(*leaves, backend=backend)
        if backward:
            o.sum().backward()


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--B", type=int, default=2)
    parser.add_argument("--T", type=int, default=2048)
    parser.add_argument("--H", type=int, default=8)
    parser.add_argument("--D", type=int, default=64, help="K = V")
    args = parser.parse_args()
    B, T, H, D = args.B, args.T, args.H, args.D
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"shape B={B} T={T} H={H} K=V={D}, float32\n")
    print(f"{'decay':<8}{'pass':<14}{'naive ms':>10}{'chunk ms':>10}{'speed-up':>10}")
    for vector in (False, True):
        q, k, v = (torch.randn(B, T, H, D) for _ in range(3))
        g = -torch.rand(B, T, H, D) if vector else -torch.rand(B, T, H)
        for pass_name in ("forward", "forward+backward"):
            times = {}
            for backend in ("naive", "chunk"):
                backward = pass_name != "forward"
                leaves = [x.clone().requires_grad_(backward) for x in (q, k, v, g)]
                times[backend] = timed(functools.partial(run_once, leaves, backend, backward), args.repeats)
            label = "vector" if vector else "scalar"
            print(f"{label:<8}{pass_name:<14}{times['naive'] * 1e3:>10.1f}{times['chunk'] * 1e3:>10.1f}"
                  f"{times['naive'] / times['chunk']:>9.1f}×")


if __name__ == "__main__":
    main()
