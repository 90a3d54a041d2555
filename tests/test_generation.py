"""generate() through the recurrent cache, on every tested transformers release (CI runs this file on
the lowest supported release too): what the model receives at each step, cached == uncached, beam
search, left padding; and the rest of transformers' model contract (inputs_embeds, hidden states,
return_dict, gradient checkpointing)."""

import pytest
import torch
from transformers.cache_utils import Cache

from decaylab.model import RecurrentCache, build_model, make_config
from decaylab.model.cache import CACHE_FIELD
from tests.conftest import rel_err

DESIGNS = {
    "scalar": dict(decay="tnl-l", decay_granularity="scalar"),
    "vector": dict(decay="mamba2", positional="rope"),
    "stateful": dict(decay="lightnet"),
    "tpe": dict(decay="hgrn2", positional="tpe"),
}


def micro_model(design: str, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(make_config("micro", backend="chunk", **DESIGNS[design])).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # input-dependent decays, so a wrong state shows
    return model


def prompt(batch=2, length=7, seed=1):
    return torch.randint(3, 512, (batch, length), generator=torch.Generator().manual_seed(seed))


def record_inputs(model):
    """(input_ids shape, logits_to_keep) of every forward call of ``model``."""
    calls = []

    def hook(module, args, kwargs):
        calls.append((tuple(kwargs["input_ids"].shape), kwargs.get("logits_to_keep")))

    return calls, model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("design", DESIGNS)
def test_greedy_generate_feeds_the_prompt_once_then_one_token_per_step(design):
    model, x, new = micro_model(design), prompt(), 6
    calls, handle = record_inputs(model)
    out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new, do_sample=False,
                         pad_token_id=0, return_dict_in_generate=True)
    handle.remove()
    assert [shape for shape, _ in calls] == [(2, 7)] + [(2, 1)] * (new - 1)
    assert calls[0][1] == 1  # prefill computes the logits of the last position only
    cache = out[CACHE_FIELD]
    assert isinstance(cache, Cache) and isinstance(cache, RecurrentCache)
    assert cache.get_seq_length() == 7 + new - 1

    uncached = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new, do_sample=False,
                              pad_token_id=0, use_cache=False)
    assert torch.equal(out.sequences, uncached)
    with torch.no_grad():  # oracle: every greedy token is the argmax of one parallel pass over the whole sequence
        full = model(out.sequences).logits
    assert torch.equal(full[:, 6:-1].argmax(-1), out.sequences[:, 7:])


@pytest.mark.parametrize("design", ["vector", "stateful"])
def test_beam_search_through_the_cache_equals_beam_search_without_it(design):
    model, x = micro_model(design), prompt(batch=2, length=5, seed=4)
    kwargs = dict(attention_mask=torch.ones_like(x), max_new_tokens=5, num_beams=3, num_return_sequences=2,
                  do_sample=False, pad_token_id=0, early_stopping=True)
    calls, handle = record_inputs(model)
    cached = model.generate(x, **kwargs)
    handle.remove()
    assert [shape for shape, _ in calls] == [(6, 5)] + [(6, 1)] * 4
    assert torch.equal(cached, model.generate(x, use_cache=False, **kwargs))


@pytest.mark.parametrize("design", DESIGNS)
def test_left_padded_batch_generates_what_each_prompt_generates_alone(design):
    model = micro_model(design)
    short, long = prompt(1, 4, seed=5), prompt(1, 9, seed=6)
    batch = torch.cat([torch.cat([torch.full((1, 5), 2), short], dim=1), long])
    mask = torch.ones_like(batch)
    mask[0, :5] = 0
    kwargs = dict(max_new_tokens=5, do_sample=False, pad_token_id=2)
    together = model.generate(batch, attention_mask=mask, **kwargs)[:, 9:]
    assert torch.equal(together[0], model.generate(short, **kwargs)[0, 4:])
    assert torch.equal(together[1], model.generate(long, **kwargs)[0, 9:])


def test_generate_from_inputs_embeds_equals_generate_from_ids():
    model, x = micro_model("vector"), prompt()
    kwargs = dict(attention_mask=torch.ones_like(x), max_new_tokens=5, do_sample=False, pad_token_id=0)
    from_ids = model.generate(x, **kwargs)[:, x.shape[1]:]
    with torch.no_grad():
        embeds = model.get_input_embeddings()(x)
    assert torch.equal(model.generate(inputs_embeds=embeds, **kwargs), from_ids)


def test_cache_batch_operations_select_rows_and_crop_is_refused():
    model, x = micro_model("stateful"), prompt(batch=3)
    with torch.no_grad():
        out = model(x, use_cache=True)
        cache = out[CACHE_FIELD]
        state = {key: t.clone() for key, t in cache.layers[0].items()}
        cache.batch_select_indices(torch.tensor([2, 0]))
        assert cache.batch_size == 2
        for key, t in cache.layers[0].items():
            assert torch.equal(t, state[key][[2, 0]])
        cache.batch_repeat_interleave(2)
        assert torch.equal(cache.layers[0]["state"], state["state"][[2, 2, 0, 0]])
        step = model(x[[2, 2, 0, 0], :1], cache=cache).logits
        alone = model(torch.cat([x[[2, 0]], x[[2, 0], :1]], dim=1)).logits[:, -1]
        assert rel_err(step[::2, 0], alone) <= 1e-4
    cache.crop(0)
    with pytest.raises(ValueError, match="cannot drop tokens"):
        cache.crop(-1)
    cache.reset()
    assert cache.get_seq_length() == 0 and cache.layers[0] == {}


def test_hidden_states_tuple_and_return_dict():
    model, x = micro_model("tpe"), prompt()
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
        assert len(out.hidden_states) == model.config.num_hidden_layers + 1
        assert torch.equal(out.hidden_states[0], model.get_input_embeddings()(x))
        assert torch.allclose(model.lm_head(out.hidden_states[-1]), out.logits)
        assert model(x).hidden_states is None
        loss, logits = model(x, labels=x, return_dict=False)
        assert torch.equal(logits, out.logits) and loss.ndim == 0


def test_gradient_checkpointing_gives_the_same_gradients():
    model, x = micro_model("stateful"), prompt()
    model.train()

    def grads():
        model.zero_grad()
        model(x, labels=x).loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert model.model.gradient_checkpointing
    calls = []
    handle = model.model.layers[0].register_forward_pre_hook(lambda *a: calls.append(1))
    checkpointed = grads()
    handle.remove()
    assert len(calls) == 2  # recomputed in the backward pass
    for a, b in zip(checkpointed, plain):
        assert torch.allclose(a, b, atol=1e-6)


def trainer_losses(tmp_path, micro_batch: int, accumulation: int) -> list[float]:
    """The loss the HF Trainer logs at each of 3 steps of a global batch of 4 sequences whose numbers of
    labelled tokens differ (so a mean of per-micro-batch means would differ from the token mean)."""
    from transformers import Trainer, TrainingArguments

    gen = torch.Generator().manual_seed(0)
    rows = []
    for i in range(12):
        ids = torch.randint(0, 512, (16,), generator=gen)
        labels = ids.clone()
        labels[: 2 + 3 * (i % 4)] = -100
        rows.append({"input_ids": ids, "labels": labels})
    torch.manual_seed(0)
    model = build_model(make_config("micro", backend="chunk"))
    args = TrainingArguments(output_dir=str(tmp_path / f"gas{accumulation}"), per_device_train_batch_size=micro_batch,
                             gradient_accumulation_steps=accumulation, max_steps=3, logging_steps=1,
                             learning_rate=1e-3, report_to=[], save_strategy="no", use_cpu=True,
                             disable_tqdm=True, seed=0, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=rows)
    trainer.train()
    return [log["loss"] for log in trainer.state.log_history if "loss" in log]


def test_hf_trainer_logs_the_same_loss_with_and_without_gradient_accumulation(tmp_path):
    one, four = trainer_losses(tmp_path, 4, 1), trainer_losses(tmp_path, 1, 4)
    assert len(one) == len(four) == 3
    for a, b in zip(one, four):
        assert abs(a - b) <= 1e-5


def test_softmax_reference_returns_its_cache_under_the_releases_field(monkeypatch):
    """The softmax reference decodes through transformers' KV cache named as the installed release names it
    (no deprecated-name warning): prompt then one token through the cache equals the full forward."""
    from transformers.utils import generic

    warnings = []
    monkeypatch.setattr(generic.logger, "warning_once", lambda message, *a: warnings.append(message))
    torch.manual_seed(0)
    model = build_model(make_config("micro", arch="softmax")).eval()
    ids = prompt(length=6)
    with torch.no_grad():
        full = model(input_ids=ids).logits
        first = model(input_ids=ids[:, :5], use_cache=True)
        cache = getattr(first, CACHE_FIELD)
        assert isinstance(cache, Cache) and cache.get_seq_length() == 5
        step = model(input_ids=ids[:, 5:], use_cache=True, **{CACHE_FIELD: cache})
    assert getattr(step, CACHE_FIELD).get_seq_length() == 6
    assert rel_err(step.logits[:, -1], full[:, -1]) < 1e-5
    assert not [m for m in warnings if "deprecated" in m]
