"""`kookmin` (MSG) as released: the NegGrad+ ranking gradient, the bottom 30% of each conv re-initialised
from Kaiming normal fan_out, kept conv gradients x0.1, the per-epoch lr ramp and the E/30 step counts."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods import kookmin
from methods._train_recipe import Recipe
from tests.methods.toy import count_steps, fitted_tiny_cnn, random_loaders


def _loaders(n_retain=320, n_forget=32):
    return random_loaders((n_retain, n_forget, 32), data_seed=5, shuffle_seed=0)


def _method(epochs_30=30, **overrides):
    m = kookmin.Kookmin(seed=3, **overrides)
    m.configure(Recipe(epochs=epochs_30, lr=0.1))
    return m


class WideCNN(nn.Module):
    """Two convs wide enough for the statistics of the re-initialised entries (64->128, 3x3)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, 2, 1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Conv2d(64, 128, 3, 2, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc(self.features(x))


def _no_training(monkeypatch, record=None):
    """Replace the fine-tuning by a pass that only consumes its batches (so only the re-init shows)."""

    def fake(net, batches, loss_fn, opt, *a, **k):
        n = sum(1 for _ in batches)
        if record is not None:
            record.append((opt.param_groups[0]["lr"], n))
        return 0.0

    monkeypatch.setattr(kookmin, "train_steps", fake)


def _conv_weights(net):
    return {n: p.detach().clone() for n, p in net.named_parameters() if n in kookmin.conv_weight_names(net)}


def test_the_ranking_gradient_is_neggrad_plus_summed_over_batches_in_train_mode(monkeypatch):
    """Hand replay on the batches the method used: ∇[Σ_b CE(retain_b) − Σ_b CE(forget_b)], BN on batch statistics,
    the retain subset as large as the forget set."""
    retain, forget, val = _loaders()
    net = fitted_tiny_cnn(retain)
    real = kookmin.neggrad_plus_gradient
    seen = {}

    def spy(net_, retain_batches, forget_batches, names):
        rb, fb = list(retain_batches), list(forget_batches)
        hand = copy.deepcopy(net_).train()
        params = dict(hand.named_parameters())
        loss = sum(F.cross_entropy(hand(x), y) for x, y in rb) - sum(F.cross_entropy(hand(x), y) for x, y in fb)
        seen["hand"] = dict(zip(names, torch.autograd.grad(loss, [params[n] for n in names])))
        seen["n_retain"] = sum(len(y) for _, y in rb)
        seen["got"] = real(net_, rb, fb, names)
        return seen["got"]

    monkeypatch.setattr(kookmin, "neggrad_plus_gradient", spy)
    _no_training(monkeypatch)
    _method().run(net, retain, forget, val)
    assert seen["n_retain"] == len(forget.dataset)
    assert set(seen["got"]) == {"features.0.weight", "features.3.weight"}
    for n, g in seen["hand"].items():
        assert torch.allclose(seen["got"][n], g, atol=1e-6), n


def test_exactly_the_bottom_30_percent_of_each_conv_is_reinitialised(monkeypatch):
    """Entries that moved == the round(0.3·n) smallest |g| of each conv (216·0.3 = 64.8: 65, not ⌊·⌋ = 64);
    BN, fc and every other parameter keep their values."""
    retain, forget, val = _loaders()
    net = fitted_tiny_cnn(retain)
    before = copy.deepcopy(net)
    real, seen = kookmin.neggrad_plus_gradient, {}

    def spy(*a):
        seen["g"] = real(*a)
        return seen["g"]

    monkeypatch.setattr(kookmin, "neggrad_plus_gradient", spy)
    _no_training(monkeypatch)
    _method().run(net, retain, forget, val)
    old = dict(before.named_parameters())
    for n, p in net.named_parameters():
        moved = p.detach() != old[n].detach()
        if n in seen["g"]:
            k = round(0.3 * p.numel())
            bottom = torch.zeros(p.numel(), dtype=torch.bool)
            bottom[seen["g"][n].abs().flatten().argsort()[:k]] = True
            assert torch.equal(moved.flatten(), bottom), n
        else:
            assert not moved.any(), f"{n} changed"


def test_reinitialised_entries_follow_kaiming_normal_fan_out(monkeypatch):
    """Fresh entries of the 64->128 3x3 conv: mean 0, std √(2/fan_out) = √(2/1152) (fan_in would give √(2/576);
    reset_parameters' uniform has std 1/√(3·576)), Gaussian kurtosis 3 (uniform: 1.8)."""
    torch.manual_seed(0)
    retain, forget, val = _loaders(n_retain=64, n_forget=64)
    net = WideCNN()
    before = _conv_weights(net)
    _no_training(monkeypatch)
    _method().run(net, retain, forget, val)
    w = net.features[3].weight.detach()
    fresh = w[w != before["features.3.weight"]]
    assert fresh.numel() == round(0.3 * w.numel())
    std = math.sqrt(2.0 / (128 * 9))
    assert abs(fresh.mean()) < 0.03 * std
    assert fresh.std() == pytest.approx(std, rel=0.03)
    kurtosis = float(((fresh - fresh.mean()) ** 4).mean() / fresh.var() ** 2)
    assert kurtosis == pytest.approx(3.0, abs=0.2)


def test_kept_conv_gradients_are_scaled_by_a_tenth_and_nothing_else(monkeypatch):
    """One step replayed by hand: w ← w − lr·(s ⊙ ∇CE + wd·w), s = 1 on re-initialised conv entries, 0.1 on
    kept conv entries, 1 on BN and fc; weight decay unscaled. One epoch, one step: lr multiplier 1."""
    retain, forget, val = _loaders(n_retain=32)
    net = fitted_tiny_cnn(retain)
    real, seen = kookmin.train_steps, {}

    def spy(net_, batches, loss_fn, opt, *a, **k):
        seen["batches"] = list(batches)
        seen["net"] = copy.deepcopy(net_)
        return real(net_, seen["batches"], loss_fn, opt, *a, **k)

    monkeypatch.setattr(kookmin, "train_steps", spy)
    method = _method(epochs=1, lr=0.05)
    method.run(net, retain, forget, val)
    assert len(seen["batches"]) == 1
    hand = seen["net"].train()
    ((x, y),) = seen["batches"]
    names = [n for n, _ in hand.named_parameters()]
    grads = torch.autograd.grad(F.cross_entropy(hand(x), y), list(hand.parameters()))
    got = dict(net.named_parameters())
    for n, w0, g in zip(names, hand.parameters(), grads):
        s = torch.where(method.mask_[n], 1.0, 0.1) if n in method.mask_ else 1.0
        expected = w0.detach() - 0.05 * (s * g + 5e-4 * w0.detach())
        assert torch.allclose(got[n].detach(), expected, atol=1e-6), n
    assert all(0 < m.float().mean() < 1 for m in method.mask_.values())


def test_lr_per_epoch_is_the_released_ramp(monkeypatch):
    record = []
    _no_training(monkeypatch, record)
    retain, forget, val = _loaders()
    _method().run(fitted_tiny_cnn(retain), retain, forget, val)
    assert [lr for lr, _ in record] == pytest.approx([1e-3 * m for m in (1 / 3, 2 / 3, 1, 2 / 3, 1 / 3)])


@pytest.mark.parametrize("epochs_30, per_epoch", [(30, 10), (15, 5), (3, 1), (1, 1)])
def test_steps_per_epoch_follow_e_over_30_and_a_one_step_epoch_runs(monkeypatch, epochs_30, per_epoch):
    """10 retain batches; an epoch is round(E/30·10) steps (at least one); real training, 5 epochs."""
    steps = count_steps(monkeypatch, kookmin)
    retain, forget, val = _loaders()
    net = fitted_tiny_cnn(retain)
    _method(epochs_30).run(net, retain, forget, val)
    assert steps == [per_epoch] * 5
    assert all(torch.isfinite(p).all() for p in net.parameters()) and not net.training
