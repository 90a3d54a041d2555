"""The public operator: input validation and backend dispatch.

One function serves the whole design space: every parameterization only changes how
``log_decay`` (and sometimes ``k``) is computed.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Callable

import torch

from decaylab.ops.naive import naive_decay_linear_attention, recurrent_step

BACKENDS = ("auto", "naive", "chunk", "triton", "fla")
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _fail(msg: str) -> None:
    raise ValueError(f"decay_linear_attention: {msg}")


def validate_inputs(q, k, v, log_decay, initial_state, cu_seqlens, check_values: bool = True) -> None:
    """Raise ``ValueError`` naming the offending argument when shapes, dtypes or values are wrong."""
    for name, x in (("q", q), ("k", k), ("v", v), ("log_decay", log_decay)):
        if not isinstance(x, torch.Tensor):
            _fail(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype not in _FLOAT_DTYPES:
            _fail(f"{name} must be a floating tensor (fp16/bf16/fp32/fp64), got {x.dtype}")
    if q.dim() != 4:
        _fail(f"q must be [B, T, H, K], got shape {tuple(q.shape)}")
    B, T, H, K = q.shape
    if k.shape != q.shape:
        _fail(f"k must have q's shape {tuple(q.shape)} [B, T, H, K], got {tuple(k.shape)}")
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        _fail(f"v must be [B, T, H, V] = [{B}, {T}, {H}, V], got {tuple(v.shape)}")
    if log_decay.shape not in ((B, T, H), (B, T, H, K)):
        _fail(
            f"log_decay must be [B, T, H] = {(B, T, H)} (scalar decay) or [B, T, H, K] = "
            f"{(B, T, H, K)} (vector decay), got {tuple(log_decay.shape)}"
        )
    devices = {x.device for x in (q, k, v, log_decay)}
    if len(devices) != 1:
        _fail(f"q, k, v, log_decay must be on one device, got {sorted(map(str, devices))}")
    for name, x in (("initial_state", initial_state), ("cu_seqlens", cu_seqlens)):
        if x is not None and x.device != q.device:
            _fail(f"{name} must be on q's device {q.device}, got {x.device} (move it with .to(q.device))")
    if check_values:
        check_log_decay_values(log_decay)
    N = B
    if cu_seqlens is not None:
        if B != 1:
            _fail(f"with cu_seqlens the batch must be packed into B = 1, got B = {B}")
        if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2 or cu_seqlens.dtype not in (torch.int32, torch.int64):
            _fail("cu_seqlens must be a 1-D int32/int64 tensor [N + 1] of sequence boundaries")
        bounds = cu_seqlens.tolist()
        if bounds[0] != 0 or bounds[-1] != T or any(b > a for a, b in zip(bounds[1:], bounds[:-1])):
            _fail(f"cu_seqlens must start at 0, end at T = {T} and never decrease, got {bounds}")
        N = len(bounds) - 1
    if initial_state is not None:
        V = v.shape[-1]
        if initial_state.shape != (N, H, K, V):
            _fail(f"initial_state must be [N, H, K, V] = {(N, H, K, V)}, got {tuple(initial_state.shape)}")
        if initial_state.dtype not in (torch.float32, torch.float64):
            _fail(f"initial_state must be float32 (or float64), got {initial_state.dtype}")


def check_log_decay_values(log_decay: torch.Tensor, where: str = "decay_linear_attention") -> None:
    """Raise ``ValueError`` when some ``log_decay`` is positive or NaN (one reduction and, on a GPU,
    one wait for it; skipped while ``torch.compile`` traces)."""
    if log_decay.numel() and not torch.compiler.is_compiling():
        if bool((log_decay > 0).any()) or bool(torch.isnan(log_decay).any()):
            raise ValueError(f"{where}: log_decay must be <= 0 everywhere (decay exp(g) in [0, 1]) and not NaN")


def _chunk(*args, **kwargs):
    from decaylab.ops.chunk import chunk_decay_linear_attention

    return chunk_decay_linear_attention(*args, **kwargs)


def _triton(*args, **kwargs):
    from decaylab.ops.triton import triton_decay_linear_attention

    return triton_decay_linear_attention(*args, **kwargs)


def _fla(*args, **kwargs):
    from decaylab.ops.fla_adapter import fla_decay_linear_attention

    return fla_decay_linear_attention(*args, **kwargs)


_IMPLEMENTATIONS: dict[str, Callable] = {
    "naive": naive_decay_linear_attention,
    "chunk": _chunk,
    "triton": _triton,
    "fla": _fla,
}


#: Whether the Triton kernels exist and Triton is importable, looked up once (``torch.compile``
#: reads it as a constant; it cannot trace ``importlib``).
_TRITON_AVAILABLE = (importlib.util.find_spec("triton") is not None
                     and importlib.util.find_spec("decaylab.ops.triton") is not None)


def triton_available() -> bool:
    """True when the Triton kernels exist and Triton is importable (they run on CUDA)."""
    return _TRITON_AVAILABLE


def resolve_backend(backend: str, device: torch.device) -> str:
    """Map ``"auto"`` to the fastest backend available for ``device``."""
    if backend not in BACKENDS:
        _fail(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if backend == "triton" and not triton_available():
        _fail("backend='triton' needs Triton: pip install 'decaylab[triton]', or use backend='chunk'")
    if backend in ("triton", "fla") and device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        _fail(f"backend={backend!r} runs on CUDA devices only, and the tensors are on {device.type}; use "
              "backend='chunk' (or 'auto'), or set TRITON_INTERPRET=1 to run the kernels in Triton's interpreter")
    if backend != "auto":
        return backend
    if device.type == "cuda" and triton_available():
        return "triton"
    return "chunk"


def decay_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    scale: float = 1.0,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    backend: str = "auto",
    *,
    check_values: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Linear attention with a data-dependent decay on the state.

    Per head: ``S_t = exp(g_t) ⊙ S_{t-1} + k_t v_tᵀ`` and ``o_t = scale · S_tᵀ q_t``.

    Args:
        q, k: ``[B, T, H, K]``.  v: ``[B, T, H, V]``.
        log_decay: ``g ≤ 0``, ``[B, T, H]`` (scalar decay) or ``[B, T, H, K]`` (vector decay);
            used in float32 whatever its dtype.
        scale: multiplies the output.
        initial_state: float32 ``[N, H, K, V]`` (N = B, or the number of packed sequences).
        output_final_state: also return the float32 state after the last token.
        cu_seqlens: ``[N + 1]`` boundaries of sequences packed along T (requires B = 1); the
            state is reset (to ``initial_state[n]``) at every boundary.
        backend: ``"auto"``, ``"naive"``, ``"chunk"``, ``"triton"`` or ``"fla"``.
        check_values: verify ``log_decay ≤ 0`` and not NaN (reads it once and, on a GPU, waits for
            it); callers whose decay is non-positive by construction may skip it.

    Returns:
        ``(o [B, T, H, V] in v's dtype, final_state [N, H, K, V] float32 or None)``.
    """
    name = resolve_backend(backend, q.device)
    validate_inputs(q, k, v, log_decay, initial_state, cu_seqlens, check_values)
    return _IMPLEMENTATIONS[name](
        q, k, v, log_decay, scale=scale, initial_state=initial_state,
        output_final_state=output_final_state, cu_seqlens=cu_seqlens,
    )


def decode_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    state: torch.Tensor,
    scale: float = 1.0,
    backend: str = "auto",
    *,
    check_values: bool = True,
) -> torch.Tensor:
    """Advance a batch of recurrent states by one token, updating ``state`` in place.

    Shapes: q, k ``[N, H, K]``; v ``[N, H, V]``; log_decay ``[N, H]`` or ``[N, H, K]``;
    state float32 ``[N, H, K, V]``. Returns o ``[N, H, V]`` in v's dtype. ``check_values`` as in
    :func:`decay_linear_attention`.
    """
    name = resolve_backend(backend, q.device)
    if check_values:
        check_log_decay_values(log_decay, "decode_step")
    if name == "triton":
        from decaylab.ops.triton import triton_decode

        return triton_decode(q, k, v, log_decay, state, scale)
    o, new_state = recurrent_step(q, k, v, log_decay, state, scale)
    state.copy_(new_state)
    return o
