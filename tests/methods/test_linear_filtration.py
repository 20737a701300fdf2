"""`linear_filtration` (Baumhauer et al. 2022) as released: the normalization filtration and where it applies."""

import copy

import torch

import methods
from methods.linear_filtration import class_mean_logits, filtration_matrix
from tests.methods.test_contract import _class_wise_loaders, _loaders
from tests.methods.toy import fitted_tiny_cnn, snapshot


def test_the_filtration_keeps_retained_means_and_levels_the_forgotten_columns():
    torch.manual_seed(0)
    a = torch.randn(6, 6) + 4 * torch.eye(6)
    forgotten = [1, 4]
    f = filtration_matrix(a, forgotten)
    kept = [0, 2, 3, 5]
    assert f.shape == (4, 6)
    fa = f @ a.double()
    torch.testing.assert_close(fa[:, kept], a.double()[kept][:, kept])  # retained classes' means, exactly
    mu = a.double()[kept][:, kept].mean()  # one level, from the block before any shift
    for d in forgotten:
        torch.testing.assert_close(fa[:, d], a.double()[kept, d] - a.double()[kept, d].mean() + mu)


def test_a_run_filters_the_forgotten_class_and_keeps_the_others():
    retain, forget, val = _class_wise_loaders(False)
    net = fitted_tiny_cnn(retain, epochs=2)
    method = methods.get_method("linear_filtration")(seed=0, samples_per_class=0)
    out = copy.deepcopy(net)
    method.run(out, retain, forget, val)
    assert method.log_["forgotten_classes"] == [0]
    before = class_mean_logits(net, val, 10, 0, None)
    after = class_mean_logits(out, val, 10, 0, None)
    torch.testing.assert_close(after[1:, 1:], before[1:, 1:], rtol=1e-4, atol=1e-4)  # classes 1-9 as they were
    w = snapshot(out)
    assert torch.equal(w["fc.weight"][0], torch.zeros_like(w["fc.weight"][0]))
    assert (
        float(w["fc.bias"][0]) == method.log_["floor_logit"]
        or abs(float(w["fc.bias"][0]) - method.log_["floor_logit"]) < 1e-5
    )
    assert (after[0] <= after[1:].min(0).values + 1e-5).all(), "the forgotten class's logit is at the floor"
    features = {n: q for n, q in snapshot(net).items() if not n.startswith("fc.")}
    assert all(torch.equal(q, w[n]) for n, q in features.items()), "only the classifier changes"


def test_on_a_random_forget_set_it_is_the_identity():
    retain, forget, val = _loaders(False)
    net = fitted_tiny_cnn(retain, epochs=1)
    out = copy.deepcopy(net)
    method = methods.get_method("linear_filtration")(seed=0)
    method.run(out, retain, forget, val)
    assert method.log_["forgotten_classes"] == []
    assert all(torch.equal(q, snapshot(out)[n]) for n, q in snapshot(net).items())
