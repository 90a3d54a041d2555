"""Every valid point of the design space decodes token by token exactly as it runs in parallel,
ignores left padding, and every invalid point is refused when the config is built."""

import pytest
import torch

from decaylab.decay import DecaySpec, design_space
from decaylab.model import DecayLinearConfig, build_model, make_config
from decaylab.model.cache import CACHE_FIELD
from tests.conftest import rel_err

SPECS = design_space()


def micro_model(spec: DecaySpec, seed: int = 0):
    torch.manual_seed(seed)
    cfg = make_config(
        "micro", decay=spec.decay, decay_granularity=spec.decay_granularity,
        share_decay_key=spec.share_decay_key, positional=spec.positional, backend="chunk",
    )
    model = build_model(cfg).eval()
    # make decays strong and input dependent enough that a wrong state or position shows
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def spec_id(spec: DecaySpec) -> str:
    return f"{spec.decay}/{spec.decay_granularity}/{'shared' if spec.share_decay_key else 'sep'}/{spec.positional}"


def test_design_space_is_large_and_covers_every_axis():
    assert len(SPECS) > 100
    assert {s.decay_granularity for s in SPECS} == {"scalar", "vector"}
    assert {s.positional for s in SPECS} == {"none", "rope", "lrpe-cos", "tpe"}
    assert {s.share_decay_key for s in SPECS} == {False, True}


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_decoding_through_the_cache_matches_the_parallel_pass_and_padding_is_ignored(spec):
    model = micro_model(spec)
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 512, (2, 11), generator=gen)
    with torch.no_grad():
        full = model(x).logits
        out = model(x[:, :4], use_cache=True)
        steps = [out.logits]
        for t in range(4, 11):
            steps.append(model(x[:, t : t + 1], cache=out[CACHE_FIELD]).logits)
        assert rel_err(torch.cat(steps, dim=1), full) <= 1e-4

        # left padding: sequence 0 shorter by 3 tokens, padded with arbitrary ids
        padded = x.clone()
        padded[0, :3] = 7
        mask = torch.ones_like(x)
        mask[0, :3] = 0
        batch = model(padded, attention_mask=mask).logits
        alone = model(x[:1, 3:]).logits
        assert rel_err(batch[0, 3:], alone[0]) <= 1e-4
        assert rel_err(batch[1], full[1]) <= 1e-4


@pytest.mark.parametrize("spec", [s for s in SPECS if s.positional in ("none", "rope")][::5], ids=spec_id)
def test_padded_generation_equals_unpadded_generation(spec):
    model = micro_model(spec)
    prompt = torch.randint(0, 512, (1, 6), generator=torch.Generator().manual_seed(2))
    padded = torch.cat([torch.full((1, 4), 3), prompt], dim=1)
    mask = torch.cat([torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 6, dtype=torch.long)], dim=1)
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=3)
    alone = model.generate(prompt, **kwargs)[:, 6:]
    batched = model.generate(padded, attention_mask=mask, **kwargs)[:, 10:]
    assert torch.equal(alone, batched)
    # greedy decoding through the cache picks the argmax of the full parallel pass at every step
    seq = torch.cat([prompt, alone], dim=1)
    with torch.no_grad():
        logits = model(seq).logits
    assert torch.equal(logits[0, 5:-1].argmax(-1), alone[0])


@pytest.mark.parametrize("decay", ["lightnet", "lssp", "sd-0.9", "tnl-l"])
def test_packed_sequences_equal_separate_sequences(decay):
    spec = DecaySpec(decay, "scalar" if decay.startswith("tnl") else "vector", False, "rope")
    model = micro_model(spec)
    lengths = [7, 3, 12]
    x = torch.randint(0, 512, (1, sum(lengths)), generator=torch.Generator().manual_seed(3))
    cu = torch.tensor([0] + lengths).cumsum(0)
    with torch.no_grad():
        packed = model(x, cu_seqlens=cu).logits
        for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
            assert rel_err(packed[:, a:b], model(x[:, a:b]).logits) <= 1e-4


def field_names_in(message: str) -> set[str]:
    fields = ("decay", "decay_granularity", "share_decay_key", "positional")
    return {f for f in fields if f"{f}=" in message}


@pytest.mark.parametrize("spec", [s for s in design_space(valid_only=False) if s.problems()], ids=spec_id)
def test_invalid_combinations_are_refused_at_construction_naming_the_fields(spec):
    with pytest.raises(ValueError) as err:
        DecayLinearConfig(decay=spec.decay, decay_granularity=spec.decay_granularity,
                          share_decay_key=spec.share_decay_key, positional=spec.positional)
    named = field_names_in(str(err.value))
    assert len(named) >= 1
    if spec.share_decay_key:
        assert "share_decay_key" in named
    if spec.decay.startswith("tnl") and spec.decay_granularity == "vector":
        assert "decay_granularity" in named


@pytest.mark.parametrize(
    "fields, names",
    [
        (dict(decay="nope"), ["decay="]),
        (dict(decay="sd-1.5"), ["decay="]),
        (dict(decay_granularity="matrix"), ["decay_granularity="]),
        (dict(positional="alibi"), ["positional="]),
        (dict(hidden_size=0), ["hidden_size="]),
        (dict(positional="rope", head_dim=7), ["head_dim="]),
        (dict(backend="cuda"), ["backend="]),
    ],
)
def test_bad_field_values_are_named(fields, names):
    with pytest.raises(ValueError) as err:
        DecayLinearConfig(**fields)
    for name in names:
        assert name in str(err.value)
