"""Kernel configurations, chosen by rule from the shape class (no autotuning).

Each kernel compiles once per (dtype, decay kind, K, V, flags) and the configuration below is a
pure function of those, so a first call costs a handful of compilations and nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
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
class Tiles:
    """One backward kernel's tile extents along K and V (each capped at the padded head
    dimension) and its launch options. The state passes own a k × v tile of S; the dv kernel
    writes v columns of dv and steps over K by k; the dq/dk kernel writes k columns of dq and dk
    and steps over V by v. num_stages 2 lets Triton prefetch the next loop step's tiles."""

    k: int
    v: int
    num_warps: int = 4
    num_stages: int = 1


@dataclass(frozen=True)
class BackwardConfig:
    """The backward's chunk size (C, shared by all its kernels) and each kernel's tiles."""

    chunk: int
    state: Tiles
    dv: Tiles
    dqk: Tiles


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
# on an H200, each backward kernel on its own (benchmarks/RESULTS.md, ## GPU). Each rule returns
# a preference list: a launcher moves to the next entry if the compiler reports that one does not
# fit.


def forward_configs(K: int, V: int, scalar: bool, store_states: bool) -> list[ForwardConfig]:
    """Forward: a program owns the state columns [K, block] and walks the chunks in order.
    Software pipelining pays except at K = 128 for scalar decay when the chunk states are kept
    and for vector decay when they are not. Configurations that keep the chunk states all use
    the backward's chunk (:func:`stored_state_chunk`), so the backward can read them."""
    bk, bv = padded(K), padded(V)
    if bk > 128:
        return [ForwardConfig(32, min(bv, 64), 8), ForwardConfig(16, min(bv, 32), 4)]
    fallback = ForwardConfig(32, min(bv, 64), 4)
    if store_states:
        fallback = replace(fallback, chunk=stored_state_chunk(K, V, scalar))
    if scalar:
        return [ForwardConfig(64, min(bv, 64), 4, 1 if store_states and bk > 64 else 2), fallback]
    block = min(bv, 128)
    wide = bk * block >= 128 * 64
    return [ForwardConfig(64, block, 8 if wide else 4, 1 if wide and not store_states else 2), fallback]


def backward_configs(K: int, V: int, scalar: bool) -> list[BackwardConfig]:
    """Backward: state passes over 64 × 64 tiles; dv with whole rows of up to 128 columns (A is
    formed once per chunk); dq/dk over 64 columns of K. Software pipelining pays in the state
    passes and, for vector decay, in the per-chunk kernels."""
    fallback = BackwardConfig(32, Tiles(32, 32), Tiles(32, 32), Tiles(32, 32))
    if max(padded(K), padded(V)) > 128:
        return [BackwardConfig(64, Tiles(64, 64), Tiles(64, 64, 8), Tiles(64, 64, 8)), fallback]
    if scalar:
        return [BackwardConfig(64, Tiles(64, 64, 4, 2), Tiles(128, 64), Tiles(64, 64)), fallback]
    return [BackwardConfig(64, Tiles(64, 64, 4, 2), Tiles(64, 128, 4, 2), Tiles(64, 64, 4, 2)), fallback]


def stored_state_chunk(K: int, V: int, scalar: bool) -> int:
    """The chunk size of the states a forward keeps for its backward: the backward's first choice."""
    return backward_configs(K, V, scalar)[0].chunk


def keep_forward_states(K: int, V: int, scalar: bool) -> bool:
    """Whether a forward followed by a backward should keep its chunk states: only when the
    rules give both the same chunk size, so that the backward can use them."""
    return forward_configs(K, V, scalar, True)[0].chunk == stored_state_chunk(K, V, scalar)


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
