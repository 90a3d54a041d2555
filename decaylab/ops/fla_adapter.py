"""Optional adapter to flash-linear-attention (``fla``), for comparison and as a fallback backend.

Vector decay maps to ``fla.ops.gla.chunk_gla`` and scalar decay to
``fla.ops.simple_gla.chunk_simple_gla``; both take the same [B, T, H, ·] layout, a float32
state [N, H, K, V] and ``cu_seqlens`` as we do. ``fla`` is never a hard dependency: this module
imports it on first use and raises ``RuntimeError`` with the reason when it cannot serve.
"""

from __future__ import annotations

import importlib.metadata

import torch

MIN_FLA_VERSION = (0, 3, 0)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _fla_version() -> str:
    for dist in ("fla-core", "flash-linear-attention"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise RuntimeError(
        "backend 'fla' needs flash-linear-attention (pip install flash-linear-attention); "
        "use backend='triton' or 'chunk' instead"
    )


def _scalar_backward_refused(device: torch.device) -> bool:
    """fla (≥0.5) refuses the gated scalar-decay backward on Hopper with Triton ≥3.4,<3.7.1
    (wrong results, its issue 640); detect that before a backward pass fails deep inside it."""
    import triton

    major, _ = torch.cuda.get_device_capability(device)
    return major == 9 and (3, 4, 0) <= _version_tuple(triton.__version__) < (3, 7, 1)


def fla_decay_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    scale: float = 1.0,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Same contract as :func:`decaylab.ops.decay_linear_attention`, computed by fla's chunk kernels."""
    version = _fla_version()
    if _version_tuple(version) < MIN_FLA_VERSION:
        raise RuntimeError(f"backend 'fla' needs flash-linear-attention >= 0.3.0, found {version}")
    if q.device.type != "cuda":
        raise RuntimeError(f"backend 'fla' runs on CUDA only (fla's Triton kernels), got device {q.device}")
    scalar = log_decay.dim() == 3
    needs_grad = torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (q, k, v, log_decay, initial_state)
    )
    if scalar and needs_grad and _scalar_backward_refused(q.device):
        import triton

        raise RuntimeError(
            f"backend 'fla' cannot train with scalar decay here: fla {version} refuses chunk_simple_gla's "
            f"backward on Hopper GPUs with Triton {triton.__version__} (>=3.4,<3.7.1 gives wrong results, "
            "fla issue 640); use backend='triton'"
        )
    g = log_decay.float()
    h0 = None if initial_state is None else initial_state.float()
    cu = None if cu_seqlens is None else cu_seqlens.long()
    if scalar:
        from fla.ops.simple_gla import chunk_simple_gla

        o, final = chunk_simple_gla(
            q, k, v, g=g, scale=scale, initial_state=h0, output_final_state=output_final_state, cu_seqlens=cu
        )
    else:
        from fla.ops.gla import chunk_gla

        o, final = chunk_gla(
            q, k, v, g, scale=scale, initial_state=h0, output_final_state=output_final_state, cu_seqlens=cu
        )
    return o.to(v.dtype), (final if output_final_state else None)
