"""`ct` (Convolution Transpose) as released: every Conv2d kernel transposed in its spatial axes (so the network
computes the original on transposed images), nothing else touched; then 3 epochs of CE on the retain set,
SGD lr 1e-3 (momentum 0.9, weight decay 5e-4) with a cosine stepped once per epoch, E/30 steps per epoch."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from methods import ct
from methods._train_loop import batch_cross_entropy
from methods._train_recipe import Recipe
from tests.methods.toy import fitted_tiny_cnn, random_loaders


def _loaders():
    return random_loaders((320, 32, 32), data_seed=7, shuffle_seed=0)


def _method(epochs_30=30, **overrides):
    m = ct.CT(seed=4, **overrides)
    m.configure(Recipe(epochs=epochs_30, lr=0.1))
    return m


def _no_training(monkeypatch, record):
    """Replace the fine-tuning by a pass that records (lr, momentum, weight decay, loss_fn, batch count)."""

    def fake(net, batches, loss_fn, opt, *a, **k):
        group = opt.param_groups[0]
        record.append((group["lr"], group["momentum"], group["weight_decay"], loss_fn, sum(1 for _ in batches)))
        return 0.0

    monkeypatch.setattr(ct, "train_steps", fake)


def _resnet18():
    """torchvision's ResNet-18 with random BatchNorm statistics and affine parameters (so they matter)."""
    torch.manual_seed(0)
    net = resnet18(num_classes=10)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return net.eval()


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_after_the_transpose_the_network_computes_the_original_on_transposed_images(monkeypatch):
    """ResNet-18 in eval mode: f_CT(xᵀ) = f(x) to float precision, while f_CT(x) is another function."""
    _no_training(monkeypatch, [])
    original = _resnet18()
    net = copy.deepcopy(original)
    _method().run(net, *_loaders())
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = original(x)
        on_transposed = net(x.transpose(2, 3))
        on_upright = net(x)
    assert torch.allclose(on_transposed, want, atol=1e-4, rtol=1e-4)
    assert (on_upright - want).abs().max() > 100 * (on_transposed - want).abs().max()
    assert (on_upright - want).abs().mean() > 0.05 * want.abs().mean()


def test_every_conv_is_transposed_and_nothing_else_changes(monkeypatch):
    """All 20 Conv2d weights of ResNet-18 (3x3, 7x7 and the 1x1 shortcuts) equal their spatial transposes;
    every other parameter and buffer is bit-identical; the square kernels keep their Parameter objects."""
    _no_training(monkeypatch, [])
    net = _resnet18()
    before = _state(net)
    params_before = {name: id(p) for name, p in net.named_parameters()}
    method = _method()
    method.run(net, *_loaders())
    after = _state(net)
    convs = {f"{name}.weight" for name, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    assert len(convs) == 20 and method.log_["transposed_convs"] == 20
    for key, value in after.items():
        if key in convs:
            assert torch.equal(value, before[key].transpose(2, 3)), key
            if value.shape[-1] > 1:
                assert not torch.equal(value, before[key]), key
        else:
            assert torch.equal(value, before[key]), key
    assert {name: id(p) for name, p in net.named_parameters()} == params_before


def test_a_non_square_kernel_gets_the_transposed_shape():
    net = nn.Sequential(nn.Conv2d(3, 4, (1, 3)), nn.Conv2d(4, 2, 3))
    w0, w1 = net[0].weight.detach().clone(), net[1].weight.detach().clone()
    assert ct.transpose_conv_kernels(net) == 2
    assert net[0].weight.shape == (4, 3, 3, 1) and torch.equal(net[0].weight, w0.transpose(2, 3))
    assert torch.equal(net[1].weight, w1.transpose(2, 3))


@pytest.mark.parametrize("epochs_30, per_epoch", [(30, 10), (15, 5), (3, 1), (1, 1)])
def test_three_epochs_of_ce_with_a_per_epoch_cosine_and_e_over_30_steps(monkeypatch, epochs_30, per_epoch):
    """3 epochs of round(E/30·|R|/b) steps (≥ 1) of plain CE, SGD momentum 0.9, weight decay 5e-4, lr 1e-3 × ½(1 +
    cos(πk/3)) in epoch k (1, 0.75, 0.25: the release's CosineAnnealingLR(T_max=3) stepped per epoch)."""
    record = []
    _no_training(monkeypatch, record)
    retain, forget, val = _loaders()
    assert len(retain) == 10
    _method(epochs_30).run(fitted_tiny_cnn(retain), retain, forget, val)
    assert [r[4] for r in record] == [per_epoch] * 3
    assert [r[0] for r in record] == pytest.approx([1e-3 * 0.5 * (1 + math.cos(math.pi * k / 3)) for k in range(3)])
    assert [r[0] for r in record] == pytest.approx([1e-3, 0.75e-3, 0.25e-3])
    assert all(r[1:4] == (0.9, 5e-4, batch_cross_entropy) for r in record)


def test_the_first_epoch_is_plain_sgd_on_ce_over_retain_batches(monkeypatch):
    """Epoch 1 replayed by hand from the transposed network on the batches it saw: SGD(1e-3, momentum 0.9,
    weight decay 5e-4) on the cross-entropy, in train mode; the batches are one pass over the retain set."""
    calls = []
    original = ct.train_steps

    def spy(net, batches, loss_fn, opt, *a, **k):
        batches = list(batches)
        before = copy.deepcopy(net)
        out = original(net, batches, loss_fn, opt, *a, **k)
        calls.append((before, batches, copy.deepcopy(net)))
        return out

    monkeypatch.setattr(ct, "train_steps", spy)
    retain, forget, val = _loaders()
    base = fitted_tiny_cnn(retain)
    _method().run(copy.deepcopy(base), retain, forget, val)
    assert len(calls) == 3
    before, batches, after = calls[0]
    transposed = copy.deepcopy(base)
    ct.transpose_conv_kernels(transposed)
    assert all(torch.equal(a, b) for a, b in zip(before.state_dict().values(), transposed.state_dict().values()))
    seen = torch.cat([x for x, _ in batches])
    assert len(seen) == len(retain.dataset)
    replay = copy.deepcopy(before).train()
    opt = torch.optim.SGD(replay.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    for x, y in batches:
        opt.zero_grad()
        F.cross_entropy(replay(x), y).backward()
        opt.step()
    for a, b in zip(replay.state_dict().values(), after.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)


def test_the_data_order_is_the_only_randomness_and_comes_from_the_seed():
    retain, forget, val = _loaders()
    base = fitted_tiny_cnn(retain)
    runs = []
    for seed in (1, 1, 2):
        net = copy.deepcopy(base)
        m = ct.CT(seed=seed)
        m.configure(Recipe(epochs=3, lr=0.1))
        m.run(net, retain, forget, val)
        runs.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])
