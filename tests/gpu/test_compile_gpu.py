"""torch.compile (Inductor) of a training step and of a decode step on CUDA, for every decay family.

Skipped without CUDA. Oracle: the same model in float32 without autocast, eager. The compiled
bf16 step must be as close to it as the eager bf16 step is (fusion changes roundings, not
accuracy): for the loss and for all gradients taken together, rel_err(compiled, fp32) ≤
1.5 · rel_err(eager, fp32) + 1e-3; for each gradient alone ≤ 4 · rel_err(eager, fp32) + 1e-3. A
single small gradient that sums many bf16 terms with cancellation (TPE's constant q, k and decay)
has an error that a changed rounding order moves either way: on the CPU, over three seeds of the
LightNet-TPE test model, its compiled/eager error ratio ranged from 0.3 to 3.4. A wrong gradient
(all zeros: rel_err 1) fails both rules.
"""

import pytest
import torch

from decaylab.model import build_model, make_config
from decaylab.train.build import compile_model
from decaylab.train.step import mean_loss
from tests.conftest import rel_err

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

FAMILIES = [
    ("mamba2", "vector", "none"), ("mamba2-no-a", "scalar", "none"), ("gla", "vector", "rope"),
    ("hgrn2", "vector", "none"), ("lightnet", "vector", "tpe"), ("lssp", "vector", "none"),
    ("tnl", "scalar", "none"), ("tnl-l", "scalar", "lrpe-cos"), ("sd-0.99", "vector", "none"),
    ("sd-0.99", "scalar", "rope"),
]
TINY = dict(hidden_size=128, num_hidden_layers=2, head_dim=32, intermediate_size=352, vocab_size=1024)


def loss_and_grads(model, x, bf16):
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        loss = mean_loss(model, x[:, :-1], x[:, 1:])
    return [loss, *torch.autograd.grad(loss, list(model.parameters()))]


def assert_as_accurate(compiled, eager, exact, model):
    """The rule of the module docstring for the gradients of ``model``'s parameters."""
    flat = [torch.cat([g.flatten().double() for g in grads]) for grads in (compiled, eager, exact)]
    assert rel_err(flat[0], flat[2]) <= 1.5 * rel_err(flat[1], flat[2]) + 1e-3
    for (name, _), c, e, r in zip(model.named_parameters(), compiled, eager, exact):
        assert rel_err(c, r) <= 4 * rel_err(e, r) + 1e-3, name


@pytest.mark.parametrize("decay,granularity,positional", FAMILIES)
def test_compiled_training_step_is_as_accurate_as_eager(decay, granularity, positional):
    torch._dynamo.reset()
    torch.manual_seed(0)
    config = make_config("micro", decay=decay, decay_granularity=granularity, positional=positional, **TINY)
    model = build_model(config).cuda().train()
    x = torch.randint(0, 1024, (2, 257), device="cuda")
    exact = loss_and_grads(model, x, bf16=False)
    eager = loss_and_grads(model, x, bf16=True)
    compile_model(model, "true", "default", torch.device("cuda"))
    compiled = loss_and_grads(model, x, bf16=True)
    assert rel_err(compiled[0], exact[0]) <= 1.5 * rel_err(eager[0], exact[0]) + 1e-3
    assert_as_accurate(compiled[1:], eager[1:], exact[1:], model)


@pytest.mark.parametrize("decay,granularity", [("sd-0.99", "vector"), ("lightnet", "vector"), ("tnl", "scalar")])
def test_compiled_decode_step_equals_eager(decay, granularity):
    torch._dynamo.reset()
    torch.manual_seed(0)
    block = build_model(make_config("micro", decay=decay, decay_granularity=granularity, **TINY)).model.layers[0]
    block = block.cuda().eval()
    prompt, token = torch.randn(4, 50, 128, device="cuda"), torch.randn(4, 1, 128, device="cuda")
    caches = [{}, {}]
    with torch.no_grad():
        for cache in caches:
            block(prompt, torch.arange(50, device="cuda").expand(4, 50), cache=cache)
        position = torch.full((4, 1), 50, device="cuda")
        eager = block(token, position, cache=caches[0])
        compiled = torch.compile(block, fullgraph=True, dynamic=False)(token, position, cache=caches[1])
    assert rel_err(compiled, eager) < 1e-5
    for key in caches[0]:
        assert rel_err(caches[1][key], caches[0][key]) < 1e-5, key


def accumulated_grads(model, batches, bf16):
    """param.grad after one step of ``len(batches)`` micro-steps, as the training loop accumulates it."""
    model.zero_grad(set_to_none=True)
    for x in batches:
        torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = mean_loss(model, x[:, :-1], x[:, 1:]) / len(batches)
        loss.backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("decay,granularity,positional", [("sd-0.99", "vector", "none"), ("tnl", "scalar", "none"),
                                                          ("lightnet", "vector", "tpe")])
def test_cuda_graph_training_steps_give_eager_gradients(decay, granularity, positional):
    """compile_mode="reduce-overhead" (one micro-step per step: the training config refuses more, since a
    second micro-step's replay overwrites the first one's gradients): gradients at the first step (graphs
    recorded) and at later ones (graphs replayed into the same memory) are as accurate as eager ones."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    config = make_config("micro", decay=decay, decay_granularity=granularity, positional=positional, **TINY)
    model = build_model(config).cuda().train()
    batches = [torch.randint(0, 1024, (2, 257), device="cuda")]
    exact = accumulated_grads(model, batches, bf16=False)
    eager = accumulated_grads(model, batches, bf16=True)
    compile_model(model, "true", "reduce-overhead", torch.device("cuda"))
    for _ in range(3):  # record, then replay twice
        assert_as_accurate(accumulated_grads(model, batches, bf16=True), eager, exact, model)
