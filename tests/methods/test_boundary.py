"""`boundary_shrink` and `boundary_expand` (Chen et al., CVPR 2023) as released: the attack on the frozen
original, the nearest-class labels, the shadow class and its pruning."""

import copy

import pytest
import torch
import torch.nn.functional as F

import methods
import methods.boundary_expand as be
import methods.boundary_shrink as bs
from methods._adversarial import fgsm, pixel_range
from methods._train_recipe import Recipe
from tests.methods.toy import fitted_tiny_cnn, random_loaders, snapshot

RELEASED_EPOCHS = Recipe(epochs=30, lr=0.1)  # E/30 = 1: the released epochs as they are


def _loaders():
    return random_loaders((96, 48, 32), data_seed=9, batch_size=32)


@pytest.fixture(scope="module")
def net():
    return fitted_tiny_cnn(_loaders()[0], epochs=3)


def test_fgsm_is_one_signed_step_of_the_pixel_range_clamped_and_on_the_255_grid(net):
    x, y = next(iter(_loaders()[1]))
    lo, hi = pixel_range(_loaders()[1])
    assert lo.shape == (1, 3, 1, 1) and (lo < hi).all()
    before = snapshot(net)
    adv = fgsm(net, x, y, 0.1, lo, hi)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(copy.deepcopy(net).eval()(xg), y), [xg])
    expected = torch.max(torch.min(x + 0.1 * (hi - lo) * g.sign(), hi), lo)
    grid = torch.round((expected - lo) / (hi - lo) * 255) / 255 * (hi - lo) + lo
    torch.testing.assert_close(adv, grid)
    assert (adv >= lo - 1e-6).all() and (adv <= hi + 1e-6).all()
    assert all(torch.equal(before[n], q) for n, q in snapshot(net).items()), "the attack changes no weight"


def test_shrink_labels_come_from_the_frozen_original(net, monkeypatch):
    retain, forget, val = _loaders()
    lo, hi = pixel_range(forget)
    seen = []
    real = bs.batch_cross_entropy

    def spy(m, x, y_nbi):
        seen.append((x.clone(), y_nbi.clone()))
        return real(m, x, y_nbi)

    monkeypatch.setattr(bs, "batch_cross_entropy", spy)
    method = methods.get_method("boundary_shrink")(seed=0, lr=1e-2, epochs=3, batch_size=16)
    method.configure(RELEASED_EPOCHS)
    out = copy.deepcopy(net)
    method.run(out, retain, forget, val)
    original = copy.deepcopy(net).eval()
    batches = list(forget)  # one pass: the loader reshuffles on every pass
    xs, ys = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    assert len(seen) == 9 and sum(len(x) for x, _ in seen) == 3 * len(xs)
    for x, y_nbi in seen[-3:]:  # the last epoch: the model has moved, the labels still come from the original
        y = ys[[int((xs - xi).abs().flatten(1).sum(1).argmin()) for xi in x]]
        with torch.no_grad():
            assert torch.equal(y_nbi, original(fgsm(original, x, y, 0.1, lo, hi)).argmax(1))
    assert 0 < method.log_["label_changed"] <= method.log_["attacked"]


def test_expand_widens_the_head_with_a_xavier_shadow_row():
    head = torch.nn.Linear(64, 10)
    wide = be.widened(head, torch.Generator().manual_seed(0))
    assert wide.out_features == 11
    assert torch.equal(wide.weight[:10], head.weight) and torch.equal(wide.bias[:10], head.bias)
    assert float(wide.bias[10]) == 0.0
    assert abs(float(wide.weight[10].std()) / (2 / (64 + 11)) ** 0.5 - 1) < 0.35


def test_expand_trains_towards_the_shadow_class_and_prunes_it(net, monkeypatch):
    retain, forget, val = _loaders()
    xs = torch.cat([b[0] for b in forget])
    seen = {}
    real = be.train_steps

    def spy(model, batches, loss_fn, *args, **kwargs):
        wide = model.get_submodule(methods._partial.last_linear(model))
        shadow = torch.full((len(xs),), wide.out_features - 1)
        with torch.no_grad():
            seen["before"] = float(F.cross_entropy(model.eval()(xs), shadow))
        out = real(model, batches, loss_fn, *args, **kwargs)
        with torch.no_grad():
            seen["after"] = float(F.cross_entropy(model.eval()(xs), shadow))
        seen["wide"] = wide
        return out

    monkeypatch.setattr(be, "train_steps", spy)
    method = methods.get_method("boundary_expand")(seed=0, lr=1e-2, epochs=3, batch_size=16)
    method.configure(RELEASED_EPOCHS)
    out = copy.deepcopy(net)
    head_before = out.get_submodule(methods._partial.last_linear(out))
    method.run(out, retain, forget, val)
    assert seen["wide"].out_features == 11, "trained with the K + 1 head"
    assert seen["after"] < seen["before"], "the forget set moves towards the shadow class"
    head = out.get_submodule(methods._partial.last_linear(out))
    assert head is head_before and head.out_features == 10, "pruned back to the original head"
    assert torch.equal(head.weight, seen["wide"].weight[:-1]) and torch.equal(head.bias, seen["wide"].bias[:-1])
    assert not torch.equal(head.weight, dict(net.named_parameters())["fc.weight"])
    assert {n: q.shape for n, q in snapshot(out).items()} == {n: q.shape for n, q in snapshot(net).items()}
