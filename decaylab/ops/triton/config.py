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
class ForwardConfig:
    """Tiles and launch parameters of the single-pass forward kernel.

    chunk: tokens per chunk (C). block: the state columns S[:, block] (V) one program owns; K is
    covered whole (padded to a power of two, see :func:`padded`). num_warps / num_stages: Triton
    launch options (num_stages 1: no software pipelining).
    """

    chunk: int
    block: int
    num_warps: int
    num_stages: int = 1


@dataclass(frozen=True)
class BackwardConfig:
    """Tiles and launch parameters of the backward's kernels.

    chunk: tokens per chunk (C), shared by every kernel of the pass.
    state: the state passes' tile of S [K, V] (state × state, float32 in registers).
    block: the per-chunk kernels' output tile — V columns of dv, K columns of dq and dk.
    loop: the per-chunk kernels' step over the dimension they sum over (K for dv, V for dq, dk).
    num_warps / state_warps: warps of a per-chunk program and of a state-pass program.
    num_stages: Triton's software-pipelining depth (1: none).
    """

    chunk: int
    state: int
    block: int
    loop: int
    num_warps: int
    state_warps: int
    num_stages: int = 1


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


# The rules below come from timing candidates at B16·T4096·H16·K=V=128 and B32·T2048·H12·K=V=64
# on an H200 (benchmarks/RESULTS.md, ## GPU). Software pipelining (num_stages 2) gained 1–9% on
# the backward's 8-warp configuration, less than 4 warps did; it is untimed with 4 warps, and one
# single-pass configuration with it faulted, so none is used. Each rule returns a preference list:
# a launcher moves to the next entry if the compiler reports that one does not fit.


def forward_configs(K: int, V: int, scalar: bool) -> list[ForwardConfig]:
    """Forward: a program owns the state columns [K, block] and walks the chunks in order."""
    bk, bv = padded(K), padded(V)
    if bk > 128:
        return [ForwardConfig(32, min(bv, 64), 8), ForwardConfig(16, min(bv, 32), 4)]
    if scalar:
        return [ForwardConfig(64, min(bv, 64), 4), ForwardConfig(32, min(bv, 64), 4)]
    block = min(bv, 128)
    return [ForwardConfig(64, block, 8 if bk * block >= 128 * 64 else 4), ForwardConfig(32, min(bv, 64), 4)]


def backward_configs(K: int, V: int, scalar: bool) -> list[BackwardConfig]:
    """Backward: two state passes over 64 × 64 tiles, then per-chunk programs of 4 warps whose
    output tile covers a head dimension of up to 128 whole (dA and A are formed once per chunk)."""
    if max(padded(K), padded(V)) <= 128:
        return [BackwardConfig(64, 64, 128, 64, 4, 4), BackwardConfig(32, 32, 32, 32, 4, 4)]
    return [BackwardConfig(64, 64, 64, 64, 8, 4), BackwardConfig(32, 32, 32, 32, 4, 4)]


R = TypeVar("R")
Config = TypeVar("Config", ForwardConfig, BackwardConfig)
_CHOSEN: dict[Hashable, ForwardConfig | BackwardConfig] = {}


def launch_first_fitting(configs: list[Config], launch: Callable[[Config], R], key: Hashable) -> R:
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


def decode_block(K: int, V: int) -> int:
    """Decode: the number of state columns a program owns (it covers all K rows of them)."""
    return min(padded(V), max(16, 4096 // padded(K)))
