"""Triton backend on a CUDA GPU against the float64 recurrence, at the contract's real shapes.

Skipped without CUDA. Targets (‖out − ref‖ / ‖ref‖, outputs and every gradient): ≤ 2e-3 for
bf16 inputs, ≤ 1e-4 for float32 inputs. Kernels are imported inside the tests so that collecting
this module on a CPU machine never decorates them outside Triton's interpreter.
"""

import pytest
import torch

from decaylab.ops import decay_linear_attention, decode_step
from decaylab.ops.naive import naive_decay_linear_attention, recurrent_step
from tests.conftest import rel_err

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TOL = {torch.bfloat16: 2e-3, torch.float32: 1e-4}


def draw(B, T, H, K, V, scalar, dtype, decay, N=None, seed=0):
    """Fresh random inputs like the model's (SiLU-positive q, k; normal v); log decay by kind."""
    gen = torch.Generator(device="cuda").manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, device="cuda", generator=gen)

    q = torch.nn.functional.silu(r(B, T, H, K)) / K**0.5
    k = torch.nn.functional.silu(r(B, T, H, K))
    v = r(B, T, H, V)
    shape = (B, T, H) if scalar else (B, T, H, K)
    u = torch.rand(*shape, device="cuda", generator=gen)
    if decay == "moderate":
        g = torch.nn.functional.logsigmoid(4.0 + 2.0 * r(*shape)) / 4
    elif decay == "extreme":  # half log-uniform in [-1, -1e-6] (near 0), half uniform in [-20, 0]
        g = torch.where(u < 0.5, -(10.0 ** (-12.0 * u)), -40.0 * (u - 0.5))
    else:
        raise ValueError(decay)
    h0 = r(N or B, H, K, V)
    do = r(B, T, H, V)
    dht = r(N or B, H, K, V)
    return [x.to(dtype) for x in (q, k, v)] + [g.float(), h0, do.to(dtype), dht]


def check(q, k, v, g, h0, do, dht, cu=None, scale=1.0):
    """Run the Triton backend with autograd and compare with the float64 recurrence."""
    xs = [x.clone().requires_grad_() for x in (q, k, v, g, h0)]
    o, ht = decay_linear_attention(*xs[:4], scale=scale, initial_state=xs[4], output_final_state=True,
                                   cu_seqlens=cu, backend="triton")
    torch.autograd.backward((o, ht), (do, dht))
    refs = [x.detach().double().requires_grad_() for x in (q, k, v, g, h0)]
    ro, rht = naive_decay_linear_attention(*refs[:4], scale, refs[4], True, cu)
    torch.autograd.backward((ro, rht), (do.double(), dht.double()))
    errs = {"o": rel_err(o, ro), "ht": rel_err(ht, rht)}
    errs.update({f"d{n}": rel_err(x.grad, r.grad) for n, x, r in zip("qkvgh", xs, refs)})
    for x in [o, ht] + [x.grad for x in xs]:
        assert torch.isfinite(x).all()
    return errs


CASES = [(dtype, decay, K, V) for dtype in (torch.bfloat16, torch.float32) for decay in ("moderate", "extreme")
         for K, V in ((128, 128), (64, 64))]
CASES += [(torch.bfloat16, "moderate", K, V) for K, V in ((256, 256), (64, 128), (128, 64), (48, 80))]


@pytest.mark.parametrize("scalar", [True, False], ids=["scalar", "vector"])
@pytest.mark.parametrize("dtype,decay,K,V", CASES, ids=lambda x: str(x).replace("torch.", ""))
def test_matches_recurrence(dtype, decay, K, V, scalar):
    KV = (K, V)
    errs = check(*draw(2, 333, 2, K, V, scalar, dtype, decay), scale=K**-0.5)
    print(dtype, scalar, decay, KV, {n: f"{e:.1e}" for n, e in errs.items()})
    assert max(errs.values()) <= TOL[dtype], errs


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("scalar", [True, False], ids=["scalar", "vector"])
def test_varlen(dtype, scalar):
    cu = torch.tensor([0, 1, 64, 200, 455, 520], device="cuda")
    errs = check(*draw(1, 520, 3, 128, 128, scalar, dtype, "moderate", N=5), cu=cu)
    print(dtype, scalar, errs)
    assert max(errs.values()) <= TOL[dtype], errs


@pytest.mark.parametrize("scalar", [True, False], ids=["scalar", "vector"])
def test_long_sequence(scalar):
    """T = 65,536 in one sequence, against the float64 recurrence (forward and gradients)."""
    K = V = 64
    errs = check(*draw(1, 65536, 1, K, V, scalar, torch.bfloat16, "moderate"))
    print("T=65536", scalar, {n: f"{e:.1e}" for n, e in errs.items()})
    assert max(errs.values()) <= TOL[torch.bfloat16], errs


@pytest.mark.parametrize("scalar", [True, False], ids=["scalar", "vector"])
def test_huge_log_decay_is_finite(scalar):
    q, k, v, g, h0, do, dht = draw(2, 300, 2, 128, 128, scalar, torch.bfloat16, "moderate")
    g = torch.where(torch.rand_like(g) < 0.2, torch.full_like(g, -1e4), g)
    errs = check(q, k, v, g, h0, do, dht)
    assert errs["o"] <= TOL[torch.bfloat16], errs


@pytest.mark.parametrize("scalar", [True, False], ids=["scalar", "vector"])
def test_decode_step(scalar):
    N, H, K, V = 64, 16, 128, 128
    gen = torch.Generator(device="cuda").manual_seed(1)
    q, k = (torch.randn(N, H, K, device="cuda", generator=gen).bfloat16() for _ in range(2))
    v = torch.randn(N, H, V, device="cuda", generator=gen).bfloat16()
    g = -torch.rand((N, H) if scalar else (N, H, K), device="cuda", generator=gen)
    state = torch.randn(N, H, K, V, device="cuda", generator=gen)
    ro, rstate = recurrent_step(q.double(), k.double(), v.double(), g.double(), state.double(), 0.1)
    o = decode_step(q, k, v, g, state, scale=0.1, backend="triton")
    assert rel_err(state, rstate) < 1e-6 and rel_err(o, ro) < TOL[torch.bfloat16]


def test_auto_picks_triton_on_cuda():
    from decaylab.ops.api import resolve_backend

    assert resolve_backend("auto", torch.device("cuda")) == "triton"
