"""`fisher` (Golatkar et al. 2020) as released: the predictive Fisher, the release's variance, the noise."""

import copy

import pytest
import torch
import torch.nn.functional as F

import methods
from data.splits import make_loader
from methods._importance import predictive_fisher_diagonal
from methods.fisher import fisher_variance
from tests.methods.toy import fitted_tiny_cnn, random_loaders, snapshot


def _loaders():
    return random_loaders((96, 32, 32), data_seed=4, batch_size=32)


@pytest.fixture(scope="module")
def net():
    return fitted_tiny_cnn(_loaders()[0], epochs=2)


def test_the_fisher_is_the_probability_weighted_sum_over_classes_one_example_at_a_time(net):
    x, y = next(iter(_loaders()[0]))
    x, y = x[:6], y[:6]
    model = copy.deepcopy(net).eval()
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(x)):  # the release's loop: batch size 1, every class, weighted by p_y
        logits = model(x[i : i + 1])
        probs = F.softmax(logits, 1).detach()[0]
        for c in range(logits.shape[1]):
            grads = torch.autograd.grad(
                F.cross_entropy(logits, torch.tensor([c])), list(model.parameters()), retain_graph=True
            )
            for (n, _), g in zip(model.named_parameters(), grads):
                expected[n] += probs[c] * g.square()
    got, count = predictive_fisher_diagonal(copy.deepcopy(net), [(x[:4], y[:4]), (x[4:], y[4:])])
    assert count == 6
    for n in expected:
        torch.testing.assert_close(got[n], expected[n] / 6, rtol=1e-4, atol=1e-10)


def test_the_variance_follows_the_release_step_by_step():
    torch.manual_seed(0)
    conv = torch.rand(4, 3, 3, 3) * 1e-2 + 5e-4  # 1/F between ~100 and 2000: some entries clamped at 1e3
    var = fisher_variance(conv, 1e-6, classifier=False)
    inverse = (1 / (conv + 1e-8)).clamp(max=1e3) * 1e-6
    torch.testing.assert_close(var, inverse.mean(dim=1, keepdim=True).expand_as(conv))  # dim 1 only
    assert not torch.equal(var[:, :, 0, 0], var[:, :, 1, 1]), "the kernel's spatial axes are not averaged"
    head = torch.rand(10, 8) * 1e-4
    expected = (1 / (head + 1e-8)).clamp(max=1e3).clamp(max=1e2) * 1e-6
    torch.testing.assert_close(
        fisher_variance(head, 1e-6, classifier=True), expected.mean(1, keepdim=True).expand_as(head) * 10
    )
    bias = torch.rand(16)
    torch.testing.assert_close(fisher_variance(bias, 1e-6, classifier=False), (1 / (bias + 1e-8)).clamp(max=1e3) * 1e-5)


def test_a_run_adds_noise_of_the_released_scale_around_the_original(net, monkeypatch):
    import methods.fisher as fisher_module

    retain, forget, val = _loaders()
    captured = {}
    real = fisher_module.predictive_fisher_diagonal

    def spy(model, batches):
        captured["fisher"], n = real(model, batches)
        return captured["fisher"], n

    monkeypatch.setattr(fisher_module, "predictive_fisher_diagonal", spy)
    method = methods.get_method("fisher")(seed=0, alpha=1e-6, time_factor=1.0)
    out = copy.deepcopy(net)
    method.run(out, retain, forget, val)
    assert method.log_["fisher_examples"] == len(retain.dataset)
    assert method.log_["forgotten_classes"] == [], "a random forget set leaves no class out of the retain set"
    before, after = snapshot(net), snapshot(out)
    head = [n for n in before if n.endswith("weight")][-1]
    z = torch.cat(
        [
            (
                (after[n] - before[n])
                / fisher_variance(captured["fisher"][n], 1e-6, n in (head, head.replace("weight", "bias"))).sqrt()
            ).flatten()
            for n in before
        ]
    )
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05, "θ = θ₀ + sqrt(var)·N(0, 1)"


def test_class_wise_forgetting_sends_the_forgotten_row_to_zero(net):
    """With a whole class forgotten (none of it left in R) its classifier row is redrawn from N(0, 1e-3)."""
    retain, _, val = _loaders()
    x, y = torch.cat([b[0] for b in retain]), torch.cat([b[1] for b in retain])
    keep = y != 3
    r = make_loader(x[keep], y[keep], 32, shuffle=True, seed=0)
    f = make_loader(x[~keep], y[~keep], 32, shuffle=True, seed=1)
    method = methods.get_method("fisher")(seed=0, time_factor=1.0)
    out = copy.deepcopy(net)
    method.run(out, r, f, val)
    assert method.log_["forgotten_classes"] == [3]
    after = snapshot(out)
    head = [n for n in after if n.endswith("weight")][-1]
    row = torch.cat([after[head][3], after[head.replace("weight", "bias")][3:4]])
    assert abs(float(row.std()) / 1e-3**0.5 - 1) < 0.3 and abs(float(row.mean())) < 0.02
