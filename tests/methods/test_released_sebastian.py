"""`sebastian` does what its released notebook (kgltop4, "PRMQ") does, checked on a small setting.

Global L1 pruning of 99% of conv+fc weights and biases (weights re-drawn U(±1/√fan_in), biases left at
zero, BN untouched); class-weighted CE + MSE of entropies against the frozen original; round(3.2 ·
|R|/batch · E/30) steps of SGD lr 5e-4 / momentum 0.9 / weight decay 5e-4 at a constant lr; weights and
buffers finally exact in float16.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import methods.sebastian as seb
from data.splits import make_loader
from methods._train_recipe import Recipe
from tests.methods.toy import fitted_tiny_cnn, random_loaders


class ConvBiasNet(nn.Module):
    """Two biased convs with BatchNorm and a linear head: every kind of tensor the ranking sees."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, bias=True), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, bias=True), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def _trained_like_net():
    """A ConvBiasNet with weights far from its initialiser's range and non-trivial BN statistics and affine."""
    torch.manual_seed(0)
    net = ConvBiasNet()
    scales = {"conv1.weight": 0.5, "conv2.weight": 0.2, "fc.weight": 2.0}  # unequal: global != per tensor
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(
                torch.randn_like(p) * scales.get(name, 0.1)
                + (1.0 if name.startswith("bn") and name.endswith("weight") else 0.0)
            )
    net.train()
    net(torch.randn(16, 3, 12, 12))
    return net.eval()


def _fan_in(w):
    return w[0].numel()


def test_prune_ranks_conv_fc_weights_and_biases_globally_and_reinits_weights_only():
    net = _trained_like_net()
    before = copy.deepcopy(net.state_dict())
    names = seb.conv_fc_parameter_names(net)
    assert names == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias"]

    mask = seb.prune_and_reinit(net, 0.99, torch.Generator().manual_seed(3))
    total = sum(before[n].numel() for n in names)
    pruned = sum(int(mask[n].sum()) for n in names)
    assert pruned == round(0.99 * total)
    # exactly the smallest |value| over all six tensors together (not per tensor)
    old = torch.cat([before[n].abs().flatten() for n in names])
    flat = torch.cat([mask[n].flatten() for n in names])
    assert old[flat].max() <= old[~flat].min()
    assert float(mask["fc.weight"].float().mean()) < 0.9 < float(mask["conv2.weight"].float().mean())

    after = net.state_dict()
    for n in names:
        m = mask[n]
        assert torch.equal(after[n][~m], before[n][~m]), f"{n}: a kept entry changed"
        if n.endswith("bias"):
            assert torch.equal(after[n][m], torch.zeros_like(after[n][m])), f"{n}: a pruned bias is not zero"
        else:
            fresh, bound = after[n][m], 1 / math.sqrt(_fan_in(after[n]))
            assert fresh.abs().max() <= bound, f"{n}: a re-drawn weight is outside U(±1/sqrt(fan_in))"
            assert (fresh != before[n][m]).all()
            if fresh.numel() > 2000:  # U(-b, b) has standard deviation b/sqrt(3)
                assert abs(float(fresh.std()) / (bound / math.sqrt(3)) - 1) < 0.1
    for key in before:  # BatchNorm parameters and buffers untouched
        if "bn" in key:
            assert torch.equal(after[key], before[key]), key


def _skewed_loaders(n=96, batch_size=16):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.cat([torch.zeros(n // 2, dtype=torch.long), torch.randint(1, 10, (n - n // 2,), generator=g)])
    retain = make_loader(x, y, batch_size, shuffle=True, seed=0)
    forget, val = random_loaders((16, 16, 16), data_seed=6)[1:]
    return retain, forget, val


def _spy(monkeypatch, calls, run_real=False):
    real = seb.train_steps

    def spy(net, batches, loss_fn, opt, sched=None, **kw):
        batches = list(batches)
        calls.append(
            {
                "net": net,
                "batches": batches,
                "loss_fn": loss_fn,
                "opt": opt,
                "sched": sched,
                "lr0": opt.param_groups[0]["lr"],
            }
        )
        if run_real:
            out = real(net, batches, loss_fn, opt, sched, **kw)
            calls[-1]["lr_end"] = opt.param_groups[0]["lr"]
            return out
        return 0.0

    monkeypatch.setattr(seb, "train_steps", spy)


def test_loss_is_class_weighted_ce_plus_entropy_mse_against_the_frozen_original(monkeypatch):
    retain, forget, val = _skewed_loaders()
    net = fitted_tiny_cnn(retain)
    original = copy.deepcopy(net).eval()
    calls = []
    _spy(monkeypatch, calls)
    seb.Sebastian(seed=1).run(net, retain, forget, val)
    (call,) = calls
    x, y = call["batches"][0]

    labels = torch.cat([yb for _, yb in retain])
    w = torch.bincount(labels, minlength=10).float().clamp(min=1) ** -0.1
    assert w[0] < w[1:].min()  # the skew makes the weights matter
    student = copy.deepcopy(call["net"]).train()
    z, z0 = student(x), original(x)
    ce_i = -F.log_softmax(z, 1).gather(1, y[:, None])[:, 0]
    ce = (w[y] * ce_i).sum() / w[y].sum()  # PyTorch's weight=: normalised by the summed weights

    def entropy(logits):
        p = F.softmax(logits, 1)
        return -(p * p.log()).sum(1)

    hand = ce + ((entropy(z) - entropy(z0)) ** 2).mean()
    student = copy.deepcopy(call["net"]).train()
    got = call["loss_fn"](student, x, y)
    assert torch.allclose(got, hand, atol=1e-5), (float(got), float(hand))


@pytest.mark.parametrize("recipe_epochs, expected", [(None, 64), (30, 64), (3, 6), (15, 32), (1, 2)])
def test_steps_follow_released_epochs_times_E_over_30_at_constant_sgd(monkeypatch, recipe_epochs, expected):
    # 20 retain batches: round(3.2 · 20 · E/30) steps
    x, y = torch.randn(160, 3, 8, 8), torch.randint(0, 10, (160,))
    retain = make_loader(x, y, 8, shuffle=True, seed=0)
    forget, val = make_loader(x[:8], y[:8], 8), make_loader(x[:8], y[:8], 8)
    calls = []
    _spy(monkeypatch, calls, run_real=True)
    method = seb.Sebastian(seed=0)
    if recipe_epochs is not None:
        method.configure(Recipe(epochs=recipe_epochs, lr=0.1))
    method.run(fitted_tiny_cnn(make_loader(x, y, 32)), retain, forget, val)
    (call,) = calls
    assert len(call["batches"]) == expected == method.log_["steps"]
    opt = call["opt"]
    assert type(opt) is torch.optim.SGD
    group = opt.param_groups[0]
    assert (group["momentum"], group["weight_decay"]) == (0.9, 5e-4)
    assert call["lr0"] == call["lr_end"] == 5e-4  # constant
    assert {id(p) for p in group["params"]} == {id(p) for p in call["net"].parameters()}


def test_final_weights_and_buffers_are_exact_in_float16():
    retain, forget, val = random_loaders((96, 32, 32), data_seed=2)
    net = fitted_tiny_cnn(retain)
    seb.Sebastian(seed=0, lr=0.01).run(net, retain, forget, val)
    assert not net.training
    for name, t in [*net.named_parameters(), *net.named_buffers()]:
        if t.is_floating_point():
            assert torch.equal(t, t.half().float()), f"{name} is not exactly representable in float16"
