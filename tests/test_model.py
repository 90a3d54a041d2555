"""Model interfaces (Auto classes, save/load, presets) and each decay's formula and init."""

import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM

import decaylab  # noqa: F401  (registers the Auto classes)
from decaylab.decay import DECAYS, DecayContext, DecaySpec
from decaylab.decay.fixed import tnl_log_decay
from decaylab.model import build_model, count_parameters, load_pretrained, make_config


@pytest.mark.parametrize("arch,overrides", [
    ("decay_linear", dict(decay="hgrn2", positional="tpe")),
    ("decay_linear", dict(decay="tnl-l", decay_granularity="scalar", positional="lrpe-cos")),
    ("softmax", {}),
])
def test_save_and_load_through_auto_classes_reproduces_logits_exactly(tmp_path, arch, overrides):
    torch.manual_seed(0)
    model = build_model(make_config("micro", arch=arch, **overrides)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # differ from any init
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert type(AutoConfig.from_pretrained(tmp_path)) is type(model.config)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(model, type(loaded))  # the softmax reference is saved as a plain transformers LLaMA
    assert type(load_pretrained(tmp_path)) is type(model)
    x = torch.randint(0, 512, (2, 9))
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)


@pytest.mark.parametrize("size,target", [("160m", 160e6), ("410m", 410e6), ("1.45b", 1.45e9)])
@pytest.mark.parametrize("arch", ["decay_linear", "softmax"])
def test_paper_presets_have_the_paper_parameter_counts(size, target, arch):
    assert abs(count_parameters(make_config(size, arch=arch)) / target - 1) <= 0.03


def test_loss_is_next_token_cross_entropy():
    model = build_model(make_config("micro")).eval()
    x = torch.randint(0, 512, (2, 7))
    out = model(x, labels=x)
    expected = F.cross_entropy(out.logits[:, :-1].reshape(-1, 512), x[:, 1:].reshape(-1))
    assert torch.allclose(out.loss, expected)


def decay_of(name, granularity="vector", layer=0, layers=4, heads=2, channels=6):
    ctx = DecayContext(channels if granularity == "vector" else heads, heads, layer, layers)
    return DecaySpec(name, granularity).build(ctx)


def test_mamba2_family_formulas_and_init():
    f = torch.randn(2, 5, 6)
    full = decay_of("mamba2")
    A = full.a_log.exp()
    assert ((A >= 1) & (A <= 16)).all()
    dt0 = F.softplus(full.dt_bias)
    assert ((dt0 >= 1e-3 * 0.999) & (dt0 <= 0.1 * 1.001)).all()
    assert torch.allclose(full(f)[0], -A * F.softplus(f + full.dt_bias))
    assert torch.allclose(full.shared_key(f, full(f)[0]), F.softplus(f + full.dt_bias))
    no_a = decay_of("mamba2-no-a")
    assert torch.allclose(no_a(f)[0], -F.softplus(f + no_a.dt_bias))
    no_dt = decay_of("mamba2-no-delta")
    assert torch.allclose(no_dt(f)[0], -no_dt.a_log.exp() * F.softplus(f))
    assert torch.allclose(decay_of("mamba2-no-a-no-delta")(f)[0], -F.softplus(f))


def test_gla_forms_are_distinct_closed_forms():
    f = torch.randn(2, 5, 6) * 10
    assert torch.allclose(decay_of("gla")(f)[0], torch.log(torch.sigmoid(f / 16)), atol=1e-6)
    assert torch.allclose(decay_of("gla-pow")(f)[0], torch.log(torch.sigmoid(f) ** (1 / 16)), atol=1e-6)


@pytest.mark.parametrize("p", [0.8, 0.9, 0.95, 0.99, 0.5])
def test_simple_decay_starts_at_p(p):
    sd = decay_of(f"sd-{p}")
    assert torch.allclose(sd(torch.zeros(1, 3, 6))[0].exp(), torch.full((1, 3, 6), p), atol=1e-6)


def test_hgrn2_lower_bound_is_l_over_L_at_init_and_monotone():
    from decaylab.decay import LayerLowerBounds

    bounds = LayerLowerBounds(4, 6)
    gamma = bounds()
    assert torch.allclose(gamma, torch.arange(4.0)[:, None].expand(4, 6) / 4)
    with torch.no_grad():
        bounds.logits.normal_()
    assert (bounds().diff(dim=0) > 0).all()
    f = torch.randn(2, 5, 6)
    layer2 = decay_of("hgrn2", layer=2)
    g = gamma[2]
    assert torch.allclose(layer2(f, lower_bound=gamma)[0], torch.log(g + (1 - g) * torch.sigmoid(f)), atol=1e-6)


def test_tnl_values_and_tnl_l_starts_at_them():
    L, H = 6, 4
    for layer in range(L):
        expected = [-(1 - layer / (L - 1) + 1e-5) / (2 * 128 ** (h / (H - 1))) for h in range(H)]
        assert torch.allclose(tnl_log_decay(H, layer, L), torch.tensor(expected, dtype=torch.float64))
        fixed = decay_of("tnl", "scalar", layer, L, H)
        learned = decay_of("tnl-l", "scalar", layer, L, H)
        assert torch.allclose(fixed(None, batch_shape=(2, 3))[0], learned(None, batch_shape=(2, 3))[0])
        assert len(list(fixed.parameters())) == 0 and len(list(learned.parameters())) == 1
    assert math.isclose(tnl_log_decay(H, 0, L)[0].item(), -(1 + 1e-5) / 2)


@pytest.mark.parametrize("name", sorted(DECAYS))
def test_each_decay_takes_exactly_the_model_inputs_it_declares(name):
    """A decay sees only what its needs_* flags ask for: no catch-all keyword arguments."""
    cls = DECAYS[name]
    method = cls.forward if cls.stateful else cls.log_decay
    params = inspect.signature(method).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
    declared = {arg for arg, flag in (("lower_bound", cls.needs_lower_bound), ("batch_shape", cls.needs_batch_shape))
                if flag}
    assert set(params) - {"self", "f", "state", "mask"} == declared


@pytest.mark.parametrize("name", ["lightnet", "lssp"])
def test_cumulative_decays_match_their_definitions_and_carry_state(name):
    f = torch.randn(2, 9, 6, dtype=torch.float64)
    decay = decay_of(name)
    g, _ = decay(f)
    if name == "lightnet":  # z_t = log(1 + Σ_{s≤t} e^{f_s})
        z = torch.log(1 + f.exp().cumsum(1))
    else:  # log S_t, S_t = 1 + Σ_{s≤t} softplus(f_s)
        z = torch.log(1 + F.softplus(f).cumsum(1))
    z_prev = torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], dim=1)
    assert torch.allclose(g.double(), z_prev - z, atol=1e-6)
    first, state = decay(f[:, :4])
    rest, _ = decay(f[:, 4:], state=state)
    assert torch.allclose(torch.cat([first, rest], dim=1), g, atol=1e-6)
    assert torch.allclose(-torch.expm1(g), decay.shared_key(f, g))
    if name == "lightnet":
        assert torch.allclose(decay.shared_key(f, g).double(), (f - z).exp(), atol=1e-6)
