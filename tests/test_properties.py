"""Property tests (hypothesis): the operator's argument validation and the model-override parser.

Each example is built valid or with one known defect; a valid one must agree with the float64
recurrence, a defective one must raise ``ValueError`` naming the offending argument."""

from __future__ import annotations

import math
import string

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decaylab.ops import decay_linear_attention
from decaylab.ops.naive import naive_decay_linear_attention
from decaylab.train import ConfigError, load_config
from decaylab.model.presets import config_fields

PROPERTY = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

# defect → the argument the error must name
DEFECTS = {
    None: None,
    "k has another head width": "k must have q's shape",
    "v has another batch": "v must be",
    "log_decay has a wrong last axis": "log_decay must be",
    "q is an integer tensor": "q must be a floating tensor",
    "a positive log decay": "log_decay must be <= 0",
    "a NaN log decay": "log_decay must be <= 0",
    "initial_state has a wrong shape": "initial_state must be",
    "initial_state is bfloat16": "initial_state must be float32",
    "cu_seqlens with a batch of 2": "with cu_seqlens the batch must be packed",
    "cu_seqlens does not end at T": "cu_seqlens must start at 0, end at T",
    "cu_seqlens decreases": "cu_seqlens must start at 0, end at T",
}


@st.composite
def operator_arguments(draw):
    """(kwargs of decay_linear_attention, defect or None)."""
    defect = draw(st.sampled_from(list(DEFECTS)))
    packed = defect is not None and defect.startswith("cu_seqlens") or (defect is None and draw(st.booleans()))
    B = 2 if defect == "cu_seqlens with a batch of 2" else (1 if packed else draw(st.integers(1, 3)))
    T, H, K, V = draw(st.integers(2, 10)), draw(st.integers(1, 2)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    vector = draw(st.booleans())
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    q, k = (torch.randn(B, T, H, K, generator=gen, dtype=torch.float64) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=gen, dtype=torch.float64)
    g = -torch.rand(*((B, T, H, K) if vector else (B, T, H)), generator=gen, dtype=torch.float64) * 2
    cu = None
    if packed:
        cut = draw(st.integers(1, T - 1))
        cu = torch.tensor([0, cut, T])
    N = 1 if cu is None and B == 1 else (2 if cu is not None else B)
    state = draw(st.none() | st.just(True))
    initial = None if state is None else torch.randn(N, H, K, V, generator=gen)

    if defect == "k has another head width":
        k = torch.randn(B, T, H, K + 1, dtype=torch.float64)
    elif defect == "v has another batch":
        v = torch.randn(B + 1, T, H, V, dtype=torch.float64)
    elif defect == "log_decay has a wrong last axis":
        g = -torch.rand(B, T, H, K + 1, dtype=torch.float64)
    elif defect == "q is an integer tensor":
        q = torch.ones(B, T, H, K, dtype=torch.long)
    elif defect in ("a positive log decay", "a NaN log decay"):
        g = g.clone()
        g.view(-1)[draw(st.integers(0, g.numel() - 1))] = 0.25 if defect == "a positive log decay" else math.nan
    elif defect == "initial_state has a wrong shape":
        initial = torch.zeros(N, H, K, V + 1)
    elif defect == "initial_state is bfloat16":
        initial = torch.zeros(N, H, K, V, dtype=torch.bfloat16)
    elif defect == "cu_seqlens with a batch of 2":
        cu = torch.tensor([0, T])
    elif defect == "cu_seqlens does not end at T":
        cu = torch.tensor([0, T - 1])
    elif defect == "cu_seqlens decreases":
        cu = torch.tensor([0, T, T - 1, T])
        if initial is not None:
            initial = torch.zeros(3, H, K, V)
    return dict(q=q, k=k, v=v, log_decay=g, initial_state=initial, cu_seqlens=cu), defect


@PROPERTY
@given(operator_arguments(), st.sampled_from(["naive", "chunk"]))
def test_operator_accepts_exactly_the_valid_arguments(case, backend):
    kwargs, defect = case
    if defect is not None:
        with pytest.raises(ValueError, match=rf"^decay_linear_attention: {DEFECTS[defect]}"):
            decay_linear_attention(**kwargs, output_final_state=True, backend=backend)
        return
    o, state = decay_linear_attention(**kwargs, output_final_state=True, backend=backend)
    o_ref, state_ref = naive_decay_linear_attention(**{**kwargs, "initial_state": None if kwargs["initial_state"] is None
                                                       else kwargs["initial_state"].double()}, output_final_state=True)
    torch.testing.assert_close(o, o_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(state.double(), state_ref.double(), rtol=1e-5, atol=1e-5)


@PROPERTY
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=12))
def test_log_decay_values_are_refused_exactly_when_positive_or_nan(values):
    T = len(values)
    q = torch.ones(1, T, 1, 2)
    g = torch.tensor(values, dtype=torch.float32).view(1, T, 1)
    bad = any(math.isnan(x) or x > 0 for x in values)
    if bad:
        with pytest.raises(ValueError, match="log_decay must be <= 0 everywhere"):
            decay_linear_attention(q, q, q, g, backend="naive")
    else:
        decay_linear_attention(q, q, q, g, backend="naive")


# --------------------------------------------------------------------------- the override parser

FIELDS = config_fields("decay_linear")
TRUE, FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


@PROPERTY
@given(st.sampled_from(["share_decay_key", "tie_word_embeddings"]),
       st.sampled_from(["true", "false", "True", "False", "1", "0", "TRUE", " false "])
       | st.text(alphabet=string.ascii_letters + string.digits + " ", max_size=6))
def test_boolean_fields_parse_the_usual_spellings_and_refuse_the_rest(field, text):
    override = f"model.overrides.{field}={text}"
    word = text.strip().lower()
    if word in TRUE | FALSE:
        assert load_config(None, ["model.overrides.decay=gla", override]).model["overrides"][field] is (word in TRUE)
    else:
        with pytest.raises(ConfigError, match=rf"model\.overrides\.{field}"):
            load_config(None, ["model.overrides.decay=gla", override])


@PROPERTY
@given(st.sampled_from(["rope_theta", "rms_norm_eps"]), st.floats(allow_nan=True, allow_infinity=True))
def test_positive_constants_are_accepted_exactly_when_finite_and_positive(field, value):
    override = f"model.overrides.{field}={value!r}"
    if math.isfinite(value) and value > 0:
        assert load_config(None, [override]).model["overrides"][field] == value
    else:
        with pytest.raises(ConfigError, match=rf"{field}"):
            load_config(None, [override])


@PROPERTY
@given(st.sampled_from(["decay_rank", "gate_rank", "num_hidden_layers"]), st.integers(-3, 40))
def test_integer_fields_are_accepted_exactly_when_positive(field, value):
    if value >= 1:
        assert load_config(None, [f"model.overrides.{field}={value}"]).model["overrides"][field] == value
    else:
        with pytest.raises(ConfigError, match=rf"{field}={value} must be a positive integer"):
            load_config(None, [f"model.overrides.{field}={value}"])


@PROPERTY
@given(st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=20))
def test_unknown_fields_are_refused_with_a_real_field_as_the_suggestion(key):
    if key in FIELDS:
        return
    with pytest.raises(ConfigError, match=rf"unknown model field model\.overrides\.{key};") as info:
        load_config(None, [f"model.overrides.{key}=1"])
    message = str(info.value)
    if "did you mean" in message:
        assert message.rsplit("model.overrides.", 1)[1].rstrip("?") in FIELDS
