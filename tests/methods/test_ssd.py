"""`ssd` (Selective Synaptic Dampening, Foster et al. 2024) as released: importances, selection, dampening."""

import copy

import pytest
import torch
import torch.nn.functional as F

import methods
from methods._importance import batch_gradient_importance
from methods.ssd import dampen_
from tests.methods.toy import fitted_tiny_cnn, random_loaders, snapshot


def _loaders():
    return random_loaders((96, 32, 32), data_seed=11, batch_size=32)


@pytest.fixture(scope="module")
def net():
    return fitted_tiny_cnn(_loaders()[0], epochs=2)


def test_importance_is_the_mean_squared_batch_gradient(net):
    loader = _loaders()[0]  # three batches: the mean, not the sum
    expected = {n: torch.zeros_like(p) for n, p in net.named_parameters()}
    model = copy.deepcopy(net).eval()
    batches = list(loader)
    for x, y in batches:
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for n, p in model.named_parameters():
            expected[n] += p.grad.square()
    got = batch_gradient_importance(copy.deepcopy(net), batches)  # the same batches (the loader reshuffles)
    for n in expected:
        torch.testing.assert_close(got[n], expected[n] / len(batches))


def test_only_parameters_far_more_important_to_the_forget_set_change_by_the_released_factor(net):
    """Below the selection threshold every entry stays bit for bit; above it θ·min(λ·I_D/I_F, 1)."""
    torch.manual_seed(0)
    before = snapshot(net)
    full = {n: torch.rand_like(p) for n, p in before.items()}
    forget = {n: torch.rand_like(p) * 30 for n, p in before.items()}
    out = copy.deepcopy(net)
    alpha, lam = 10.0, 1.0
    selected = dampen_(out, full, forget, alpha, lam)
    after = snapshot(out)
    assert 0 < sum(selected.values()) < sum(p.numel() for p in before.values())
    for n in before:
        chosen = forget[n] > alpha * full[n]
        assert torch.equal(after[n][~chosen], before[n][~chosen]), f"{n}: an unselected entry moved"
        factor = (lam * full[n][chosen] / forget[n][chosen]).clamp(max=1.0)
        torch.testing.assert_close(after[n][chosen], before[n][chosen] * factor)
        assert (factor < 1).all(), "selected entries shrink (I_F > α·I_D with α ≥ λ gives a factor < 1)"


def test_a_run_dampens_a_few_parameters_and_trains_nothing(net):
    retain, forget, val = _loaders()
    method = methods.get_method("ssd")(seed=0, alpha=1.5)  # random toy data: nothing is 10x more important
    out = copy.deepcopy(net)
    method.run(out, retain, forget, val)
    before, after = snapshot(net), snapshot(out)
    moved = sum(int((after[n] != before[n]).sum()) for n in before)
    assert 0 < method.log_["selected_fraction"] < 0.5
    assert moved <= sum(method.log_["selected"].values())
    for n in before:  # every change is a shrink towards 0, never a step elsewhere
        changed = after[n] != before[n]
        assert (after[n][changed].abs() < before[n][changed].abs()).all()
        assert (torch.sign(after[n][changed]) == torch.sign(before[n][changed])).all()
