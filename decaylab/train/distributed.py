"""Processes, devices and data parallelism (DDP, FSDP2) for runs launched with ``torchrun``.

The process group is set up from the environment torchrun provides (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``): NCCL on CUDA, gloo on CPU. A run without those variables is one process and
needs no process group; ``parallel = "ddp" | "fsdp2"`` then leaves the model unwrapped, which is
the same computation.
"""

from __future__ import annotations

import contextlib
import gc
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: its rank among ``world_size`` processes and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_process_group: bool

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, checkpoints and the progress bar."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_runtime(device: str = "auto") -> Runtime:
    """Join the process group described by torchrun's environment (if any) and pick the device:
    ``cuda:LOCAL_RANK`` when CUDA is available (or required by ``device="cuda"``), else CPU."""
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was requested but CUDA is not available")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    owns = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
        owns = True
    return Runtime(rank, world_size, local_rank, dev, owns)


def shutdown(rt: Runtime) -> None:
    """Leave the process group if this run created it. The wrapped model (measured for DDP) sits in
    reference cycles that hold the group, so they are collected first: left to the
    interpreter's exit, the gloo group's threads could be torn down during finalization, which
    aborts the process ("terminate called without an active exception") after a finished run."""
    if rt.owns_process_group and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The per-layer blocks FSDP2 shards one by one: ``model.model.layers`` (decaylab, Llama)."""
    blocks = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(blocks, nn.ModuleList):
        raise TypeError(
            f"parallel=fsdp2 needs the model's blocks at model.model.layers (an nn.ModuleList); "
            f"{type(model).__name__} has none"
        )
    return blocks


def wrap_model(model: nn.Module, parallel: str, rt: Runtime) -> nn.Module:
    """Data-parallel wrapper for ``parallel`` across the process group.

    ``ddp``: DistributedDataParallel (replicated weights, averaged gradients).
    ``fsdp2``: ``fully_shard`` on every block and then on the root (sharded weights, gradients
    and optimizer state). With one process the model is returned as is."""
    if not rt.distributed:
        return model
    if parallel == "none":
        raise RuntimeError(
            f"launched with {rt.world_size} processes but parallel=none; set parallel=ddp or parallel=fsdp2"
        )
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(rt.device.type, (rt.world_size,))
    for block in transformer_blocks(model):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Within this context, backward passes reduce gradients across processes only if ``enabled``
    (off for all but the last micro-batch of a gradient-accumulation step)."""
    from torch.distributed.fsdp import FSDPModule

    if isinstance(model, torch.nn.parallel.DistributedDataParallel) and not enabled:
        with model.no_sync():
            yield
        return
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(enabled)
    yield


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place, and return it."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (between our own processes only)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order, on every process."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every process."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
