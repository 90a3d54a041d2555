"""Kernel configurations, chosen by rule from the shape class (no autotuning).

Each kernel compiles once per (dtype, decay kind, K, V, flags) and the configuration below is a
pure function of those, so a first call costs a handful of compilations and nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

import torch
import triton
from triton.runtime.errors import OutOfResources


@dataclass(frozen=True)
class ChunkConfig:
    """Tile sizes and launch parameters of one chunked kernel.

    chunk: tokens per chunk (C). block: the width of the slice of the state [K, V] that one
    program owns — columns (V) in the forward and the decode step, rows (K) in the backward; the
    other dimension is covered whole (padded to a power of two, see :func:`padded`).
    num_warps / num_stages: Triton launch options.
    """

    chunk: int
    block: int
    num_warps: int
    num_stages: int


def dot_precision(dtype: torch.dtype, backward: bool) -> str:
    """Precision of matrix products with float32 operands (see ``intra.mma``): rounded tf32 in
    the forward of 16-bit models, bf16 hi/lo splits in the bf16 backward, float32 accuracy
    (tf32x3) for float32 models and the fp16 backward."""
    if dtype == torch.float32:
        return "tf32x3"
    if not backward:
        return "tf32"
    return "bf16x3" if dtype == torch.bfloat16 else "tf32x3"


def padded(n: int) -> int:
    """Tile extent covering a head dimension of n (a power of two, at least 16 for tl.dot)."""
    return max(16, triton.next_power_of_2(n))


# The rules below come from timing every candidate at B16·T4096·H16·K=V=128 on an H200
# (benchmarks/RESULTS.md, ## GPU). Software pipelining (num_stages 2) gained nothing there and
# one such configuration faulted, so none is used. Each rule returns a preference list: a
# launcher moves to the next entry if the compiler reports that one does not fit.


def forward_configs(K: int, V: int, scalar: bool) -> list[ChunkConfig]:
    """Forward: a program owns the state columns [K, block] and walks the chunks in order."""
    bk, bv = padded(K), padded(V)
    if bk > 128:
        return [ChunkConfig(32, min(bv, 64), 8, 1), ChunkConfig(16, min(bv, 32), 4, 1)]
    if scalar:
        return [ChunkConfig(64, min(bv, 64), 4, 1), ChunkConfig(32, min(bv, 64), 4, 1)]
    block = min(bv, 128)
    return [ChunkConfig(64, block, 8 if bk * block >= 128 * 64 else 4, 1), ChunkConfig(32, min(bv, 64), 4, 1)]


def backward_configs(K: int, V: int, scalar: bool) -> list[ChunkConfig]:
    """Backward: a program owns the state rows [block, V]; one kernel walks forward for dq, the
    other backward for dk, dv, dg."""
    bk, bv = padded(K), padded(V)
    if bv > 128:
        return [ChunkConfig(32, min(bk, 64), 8, 1), ChunkConfig(16, min(bk, 32), 4, 1)]
    if scalar:
        return [ChunkConfig(64, min(bk, 64), 4, 1), ChunkConfig(32, min(bk, 64), 4, 1)]
    return [ChunkConfig(32, min(bk, 128), 8, 1), ChunkConfig(64, min(bk, 64), 8, 1), ChunkConfig(32, min(bk, 64), 4, 1)]


R = TypeVar("R")
_CHOSEN: dict[Hashable, ChunkConfig] = {}


def launch_first_fitting(configs: list[ChunkConfig], launch: Callable[[ChunkConfig], R], key: Hashable) -> R:
    """Run ``launch(cfg)`` with the first configuration the compiler accepts (a shared-memory or
    register overflow is reported before any work is done) and remember it under ``key``."""
    if key in _CHOSEN:
        return launch(_CHOSEN[key])
    for cfg in configs:
        try:
            out = launch(cfg)
        except OutOfResources:
            continue
        _CHOSEN[key] = cfg
        return out
    raise RuntimeError(f"no kernel configuration fits this GPU for {key}; tried {configs}")


def decode_config(K: int, V: int) -> ChunkConfig:
    """Decode: a program owns state columns [K, block] of one (sequence, head)."""
    bv = min(padded(V), max(16, 4096 // padded(K)))
    return ChunkConfig(chunk=1, block=bv, num_warps=4, num_stages=1)
