"""torch.compile of the model on CPU (chunk backend): one graph per layer, eager results.

Dynamo traces each block of every decay family with ``fullgraph=True`` (a graph break inside a
layer is an error) and the traced program must compute what the Python code computes. One case
goes the whole way, through AOT autograd and Inductor's code generation, as ``decaylab train
compile=true`` does (tests/gpu repeats that for every family on CUDA). AOT autograd without
Inductor (``aot_eager``) is not used: its backward trusts PyTorch's symbolic strides, which differ
from the real ones for some gradients of the chunked operator.
"""

import pytest
import torch

from decaylab.model import build_model, make_config
from decaylab.train.build import compile_model
from decaylab.train.step import mean_loss
from tests.conftest import rel_err

FAMILIES = [
    ("mamba2", "vector", "none"), ("mamba2-no-a-no-delta", "scalar", "rope"), ("gla", "vector", "lrpe-cos"),
    ("gla-pow", "scalar", "none"), ("hgrn2", "vector", "tpe"), ("lightnet", "vector", "rope"),
    ("lssp", "scalar", "none"), ("tnl", "scalar", "none"), ("tnl-l", "scalar", "lrpe-cos"), ("sd-0.9", "vector", "rope"),
]


def _loss_and_grads(model, x):
    loss = mean_loss(model, x[:, :-1], x[:, 1:])
    return loss, torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])


@pytest.mark.parametrize("decay,granularity,positional", FAMILIES)
def test_every_decay_family_compiles_without_graph_breaks_and_matches_eager(decay, granularity, positional):
    torch._dynamo.reset()
    torch.manual_seed(0)
    config = make_config("micro", decay=decay, decay_granularity=granularity, positional=positional, backend="chunk")
    model = build_model(config).train()
    x = torch.randint(0, 512, (2, 21))
    loss, grads = _loss_and_grads(model, x)
    with torch.no_grad():
        logits = model.eval()(x).logits
    for block in model.model.layers:
        block.compile(backend="eager", fullgraph=True, dynamic=False)
    with torch.no_grad():
        assert rel_err(model(x).logits, logits) < 1e-5
    c_loss, c_grads = _loss_and_grads(model.train(), x)
    assert rel_err(c_loss, loss) < 1e-5
    for g, c in zip(grads, c_grads):
        assert rel_err(c, g) < 1e-5


def test_compiled_decode_step_matches_eager():
    """A decode step (T = 1 with a cache) of a stateful design through a fullgraph-compiled block."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    config = make_config("micro", decay="lightnet", positional="tpe", backend="chunk")
    block = build_model(config).model.layers[0].eval()
    prompt, token = torch.randn(2, 7, 64), torch.randn(2, 1, 64)
    caches = [{}, {}]
    with torch.no_grad():
        for cache in caches:
            block(prompt, torch.arange(7).expand(2, 7), cache=cache)
        eager = block(token, torch.full((2, 1), 7), cache=caches[0])
        compiled = torch.compile(block, backend="eager", fullgraph=True, dynamic=False)(token, torch.full((2, 1), 7), cache=caches[1])
    assert rel_err(compiled, eager) < 1e-6
    for key in caches[0]:
        assert rel_err(caches[1][key], caches[0][key]) < 1e-6, key


def test_training_compile_setting_through_inductor_matches_eager():
    """compile=true (the training option) on CPU: the whole model through Inductor."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = build_model(make_config("micro", decay="sd-0.99", backend="chunk", num_hidden_layers=1)).train()
    x = torch.randint(0, 512, (2, 17))
    loss, grads = _loss_and_grads(model, x)
    assert not compile_model(model, "auto", "default", torch.device("cpu"))  # auto: CUDA only
    assert compile_model(model, "true", "default", torch.device("cpu"))
    c_loss, c_grads = _loss_and_grads(model, x)
    assert rel_err(c_loss, loss) < 1e-5
    for g, c in zip(grads, c_grads):
        assert rel_err(c, g) < 1e-4
