"""The operator: chunk and naive backends against an independent float64 oracle, values and gradients."""

import pytest
import torch

from decaylab.ops import decay_linear_attention, decode_step
from tests.conftest import rel_err


def quadratic_oracle(q, k, v, g, scale, h0):
    """Float64 parallel form: o_t = scale · Σ_{s≤t} (q_t ⊙ e^{Σ_{s<m≤t} g_m})·k_s v_s + scale · (q_t ⊙ e^{Σ_{m≤t} g_m})ᵀ S_0."""
    q, k, v, g = (x.double() for x in (q, k, v, g))
    B, T, H, K = q.shape
    if g.dim() == 3:
        g = g[..., None].expand(B, T, H, K)
    c = g.cumsum(1)  # float64: exact enough for moderate decays
    decay = (c[:, :, None] - c[:, None, :]).exp()  # [B, t, s, H, K]
    causal = torch.ones(T, T, dtype=torch.bool).tril()[None, :, :, None, None]
    scores = torch.einsum("bthk,btshk,bshk->bths", q, decay * causal, k)
    o = torch.einsum("bths,bshv->bthv", scores, v)
    final = None
    if h0 is not None:
        o = o + torch.einsum("bthk,bhkv->bthv", q * c.exp(), h0.double())
    last = c[:, -1:] - c  # Σ_{m>s} g_m
    final = torch.einsum("bshk,bshv->bhkv", k * last.exp(), v)
    if h0 is not None:
        final = final + c[:, -1, :, :, None].exp() * h0.double()
    return scale * o, final


def make_inputs(B, T, H, K, V, vector, dtype=torch.float32, seed=0, strength=1.0):
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, K, generator=gen, dtype=dtype) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=gen, dtype=dtype)
    shape = (B, T, H, K) if vector else (B, T, H)
    g = -strength * torch.rand(shape, generator=gen, dtype=torch.float32)
    h0 = torch.randn(B, H, K, V, generator=gen, dtype=torch.float32)
    return q, k, v, g, h0


@pytest.mark.parametrize("vector", [False, True])
@pytest.mark.parametrize("backend", ["naive", "chunk"])
@pytest.mark.parametrize("T,use_h0", [(1, False), (37, True), (100, False), (130, True)])
def test_forward_and_gradients_match_float64_oracle(vector, backend, T, use_h0):
    q, k, v, g, h0 = make_inputs(2, T, 3, 8, 6, vector, seed=T)
    h0 = h0 if use_h0 else None
    leaves = [x.clone().requires_grad_() for x in (q, k, v, g)] + ([h0.clone().requires_grad_()] if use_h0 else [])
    o, final = decay_linear_attention(*leaves[:4], scale=0.7, initial_state=leaves[4] if use_h0 else None,
                                      output_final_state=True, backend=backend)
    ref_leaves = [x.detach().double().requires_grad_() for x in leaves]
    ref_o, ref_final = quadratic_oracle(*ref_leaves[:4], 0.7, ref_leaves[4] if use_h0 else None)
    assert o.dtype == torch.float32 and final.dtype == torch.float32
    assert rel_err(o, ref_o) <= 1e-5
    assert rel_err(final, ref_final) <= 1e-5
    w_o, w_s = torch.randn_like(ref_o), torch.randn_like(ref_final)
    (o.double() * w_o).sum().add((final.double() * w_s).sum()).backward()
    (ref_o * w_o).sum().add((ref_final * w_s).sum()).backward()
    for name, a, b in zip("q k v g h0".split(), leaves, ref_leaves):
        assert rel_err(a.grad, b.grad) <= 1e-5, name


@pytest.mark.parametrize("vector", [False, True])
def test_varlen_equals_separate_calls(vector):
    lengths = [5, 33, 1, 70]
    q, k, v, g, _ = make_inputs(1, sum(lengths), 2, 8, 4, vector, seed=1)
    h0 = torch.randn(len(lengths), 2, 8, 4)
    cu = torch.tensor([0] + lengths).cumsum(0)
    for backend in ("naive", "chunk"):
        o, final = decay_linear_attention(q, k, v, g, initial_state=h0, output_final_state=True,
                                          cu_seqlens=cu, backend=backend)
        for n, (a, b) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):
            ref_o, ref_s = quadratic_oracle(q[:, a:b], k[:, a:b], v[:, a:b], g[:, a:b], 1.0, h0[n : n + 1])
            assert rel_err(o[:, a:b], ref_o) <= 1e-5
            assert rel_err(final[n : n + 1], ref_s) <= 1e-5


@pytest.mark.parametrize("vector", [False, True])
def test_decode_step_continues_a_prefix(vector):
    q, k, v, g, h0 = make_inputs(3, 20, 2, 8, 4, vector, seed=2)
    o, _ = decay_linear_attention(q, k, v, g, initial_state=h0, backend="chunk")
    _, state = decay_linear_attention(q[:, :12], k[:, :12], v[:, :12], g[:, :12], initial_state=h0,
                                      output_final_state=True, backend="chunk")
    for t in range(12, 20):
        step = decode_step(q[:, t], k[:, t], v[:, t], g[:, t], state)
        assert rel_err(step, o[:, t]) <= 1e-5


@pytest.mark.parametrize("vector", [False, True])
def test_low_precision_inputs_accumulate_in_float32(vector):
    q, k, v, g, _ = make_inputs(2, 50, 2, 16, 16, vector, seed=3)
    ref, _ = quadratic_oracle(q, k, v, g, 1.0, None)
    o, final = decay_linear_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), g, output_final_state=True,
                                      backend="chunk")
    assert o.dtype == torch.bfloat16 and final.dtype == torch.float32
    assert rel_err(o, ref) <= 2e-2  # bf16 inputs and output


@pytest.mark.parametrize("vector", [False, True])
def test_extreme_log_decay_is_finite_and_exact(vector):
    B, T, H, K = 1, 200, 2, 8
    q, k, v, _, h0 = make_inputs(B, T, H, K, K, vector, seed=4)
    shape = (B, T, H, K) if vector else (B, T, H)
    choices = torch.tensor([0.0, -1e-7, -1e-3, -1.0, -30.0, -1e4])
    g = choices[torch.randint(0, len(choices), shape, generator=torch.Generator().manual_seed(0))]
    g.requires_grad_()
    o, final = decay_linear_attention(q, k, v, g, initial_state=h0, output_final_state=True, backend="chunk")
    (o.sum() + final.sum()).backward()
    assert torch.isfinite(o).all() and torch.isfinite(final).all() and torch.isfinite(g.grad).all()
    ref_o, ref_final = decay_linear_attention(q.double(), k.double(), v.double(), g.detach().double(),
                                              initial_state=h0.double(), output_final_state=True, backend="naive")
    assert rel_err(o, ref_o) <= 1e-5 and rel_err(final, ref_final) <= 1e-5


@pytest.mark.parametrize("vector", [False, True])
def test_long_sequence_stays_finite(vector):
    T = 65536
    q, k, v, g, _ = make_inputs(1, T, 1, 4, 4, vector, seed=5, strength=1e-3)
    g[:, T // 2] = -1e4  # a full reset in the middle
    o, final = decay_linear_attention(q, k, v, g, output_final_state=True, backend="chunk")
    assert torch.isfinite(o).all() and torch.isfinite(final).all()
    _, tail_state = decay_linear_attention(q[:, T // 2 :], k[:, T // 2 :], v[:, T // 2 :], g[:, T // 2 :],
                                           output_final_state=True, backend="chunk")
    assert rel_err(final, tail_state) <= 1e-4  # nothing before the reset survives it


def test_bad_inputs_raise_value_errors_that_say_what_was_expected():
    q, k, v, g, h0 = make_inputs(2, 8, 2, 4, 4, vector=True)
    cases = [
        (dict(q=q[..., :3]), "k must have q's shape"),
        (dict(v=v[:, :5]), "v must be [B, T, H, V]"),
        (dict(log_decay=g[..., :3]), "log_decay must be [B, T, H]"),
        (dict(log_decay=-g), "log_decay must be <= 0"),
        (dict(initial_state=h0[:1]), "initial_state must be [N, H, K, V]"),
        (dict(initial_state=h0.bfloat16()), "initial_state must be float32"),
        (dict(backend="cuda"), "unknown backend"),
        (dict(q=q.long()), "q must be a floating tensor"),
        (dict(cu_seqlens=torch.tensor([0, 3, 8])), "batch must be packed into B = 1"),
        (dict(initial_state=h0.to("meta")), "initial_state must be on q's device cpu, got meta"),
        (dict(cu_seqlens=torch.tensor([0, 8], device="meta")), "cu_seqlens must be on q's device cpu, got meta"),
    ]
    for change, message in cases:
        args = dict(q=q, k=k, v=v, log_decay=g, initial_state=None, backend="chunk")
        args.update(change)
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            decay_linear_attention(**args)
    q1, k1, v1, g1, _ = make_inputs(1, 8, 2, 4, 4, vector=True)
    with pytest.raises(ValueError, match="cu_seqlens must start at 0, end at T"):
        decay_linear_attention(q1, k1, v1, g1, cu_seqlens=torch.tensor([0, 5, 7]))
