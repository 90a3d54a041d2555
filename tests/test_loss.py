"""The blockwise linear + cross-entropy loss against F.cross_entropy on full logits."""

import pytest
import torch
import torch.nn.functional as F

from decaylab.model import build_model, make_config
from decaylab.model.loss import causal_lm_head, linear_cross_entropy, shifted_targets
from tests.conftest import rel_err


def _case(n=37, d=12, vocab=50, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=gen, dtype=dtype, requires_grad=True)
    weight = torch.randn(vocab, d, generator=gen, dtype=dtype, requires_grad=True)
    targets = torch.randint(0, vocab, (n,), generator=gen)
    targets[::5] = -100
    return hidden, weight, targets


@pytest.mark.parametrize("block_rows", [1, 8, 37, None])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_linear_cross_entropy_equals_full_logits_value_and_gradients(block_rows, dtype):
    hidden, weight, targets = _case(dtype=dtype)
    loss = linear_cross_entropy(hidden, weight, targets, block_rows=block_rows)
    gh, gw = torch.autograd.grad(3.0 * loss, (hidden, weight))
    ref = F.cross_entropy((hidden @ weight.T).to(torch.promote_types(dtype, torch.float32)), targets,
                          ignore_index=-100, reduction="sum")
    rh, rw = torch.autograd.grad(3.0 * ref, (hidden, weight))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(loss, ref, **tol)
    torch.testing.assert_close(gh, rh, **tol)
    torch.testing.assert_close(gw, rw, **tol)


def test_linear_cross_entropy_of_only_ignored_rows_is_zero_with_zero_gradients():
    hidden, weight, targets = _case()
    loss = linear_cross_entropy(hidden, weight, torch.full_like(targets, -100))
    gh, gw = torch.autograd.grad(loss, (hidden, weight))
    assert loss.item() == 0.0 and not gh.any() and not gw.any()


def test_linear_cross_entropy_under_cpu_autocast_is_as_accurate_as_a_plain_autocast_head():
    hidden, weight, targets = _case(n=64, d=32, vocab=97, dtype=torch.float32)
    exact = F.cross_entropy(hidden.double() @ weight.double().T, targets, reduction="sum")
    truth = [exact, *torch.autograd.grad(exact, (hidden, weight))]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = linear_cross_entropy(hidden, weight, targets, block_rows=16)
        plain = F.cross_entropy((hidden @ weight.T).float(), targets, reduction="sum")
    ours = [loss, *torch.autograd.grad(loss, (hidden, weight))]
    theirs = [plain, *torch.autograd.grad(plain, (hidden, weight))]
    assert ours[2].dtype == torch.float32  # the weight's own dtype, as for a plain lm_head
    for mine, ref, true in zip(ours, theirs, truth):
        assert 0 < rel_err(mine, true) <= 1.5 * rel_err(ref, true) + 1e-6  # bf16 products, like the plain head


def test_shifted_targets_follow_transformers_labels():
    labels = torch.tensor([[5, 6, 7, -100, 9]])
    assert shifted_targets(labels).tolist() == [[6, 7, -100, 9, -100]]


def test_causal_lm_head_divides_by_num_items_in_batch_and_skips_logits_in_training():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 30, bias=False)
    hidden = torch.randn(2, 6, 8)
    labels = torch.randint(0, 30, (2, 6))
    labels[0, 2] = -100
    full = head(hidden).float()
    per_token = F.cross_entropy(full[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), reduction="sum")
    head.train()
    loss, logits = causal_lm_head(hidden, head, labels=labels)
    assert logits is None
    torch.testing.assert_close(loss, per_token / 9)  # 2 × 5 targets, one ignored
    loss, _ = causal_lm_head(hidden, head, labels=labels, num_items_in_batch=torch.tensor(36))
    torch.testing.assert_close(loss, per_token / 36)
    head.eval()
    loss, logits = causal_lm_head(hidden, head, shift_labels=shifted_targets(labels), logits_to_keep=2)
    torch.testing.assert_close(logits, full[:, -2:])
    torch.testing.assert_close(loss, per_token / 9)


@pytest.mark.parametrize("arch", ["decay_linear", "softmax"])
def test_model_loss_gradients_equal_those_of_full_logits(arch):
    torch.manual_seed(0)
    model = build_model(make_config("micro", arch=arch)).train()
    x = torch.randint(0, 512, (2, 9))
    loss = model(x, labels=x).loss
    grads = torch.autograd.grad(loss, list(model.parameters()))
    hidden = model.model(x).last_hidden_state
    ref = F.cross_entropy(model.lm_head(hidden)[:, :-1].flatten(0, 1).float(), x[:, 1:].flatten())
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)
