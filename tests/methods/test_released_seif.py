"""`seif` (CFW) as released: absolute-σ noise on the top-level "conv" children only (torchvision ResNet-18: the
stem), the batch loss mean(CE)·mean(w), σ 0.005 before the last epoch, per-epoch cosine lr, E/30 steps."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet18

from data.archs.small_resnet import SmallResNet
from methods import seif
from methods._train_recipe import Recipe
from tests.methods.toy import count_steps, fitted_tiny_cnn, random_loaders


def _loaders(n_retain=320):
    return random_loaders((n_retain, 32, 32), data_seed=7, shuffle_seed=0)


def _method(epochs_30=30, **overrides):
    m = seif.Seif(seed=4, **overrides)
    m.configure(Recipe(epochs=epochs_30, lr=0.1))
    return m


def _no_training(monkeypatch, record):
    """Replace the fine-tuning by a pass that records (lr, batches, stem weight at its start)."""

    def fake(net, batches, loss_fn, opt, *a, **k):
        stem = getattr(net, "conv1", None)
        record.append(
            (opt.param_groups[0]["lr"], sum(1 for _ in batches), None if stem is None else stem.weight.detach().clone())
        )
        return 0.0

    monkeypatch.setattr(seif, "train_steps", fake)


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("weight_scale", [1.0, 100.0, 0.01])
def test_noise_is_absolute_and_touches_only_the_resnet18_stem(monkeypatch, weight_scale):
    """Added noise on conv1 (9,408 entries) has std 0.6 (√(0.6² + 0.005²)) whatever the weight's own scale;
    every other parameter and buffer of torchvision's ResNet-18 stays bit-identical."""
    torch.manual_seed(0)
    net = resnet18(num_classes=10)
    with torch.no_grad():
        net.conv1.weight.mul_(weight_scale)
    before = _state(net)
    _no_training(monkeypatch, [])
    method = _method()
    method.run(net, *_loaders())
    assert method.log_["noised"] == ["conv1"]
    after = _state(net)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == ["conv1.weight"]
    noise = after["conv1.weight"] - before["conv1.weight"]
    assert abs(noise.mean()) < 0.02
    assert noise.std() == pytest.approx(math.hypot(0.6, 0.005), rel=0.03)


def test_without_a_top_level_conv_child_the_noise_touches_nothing(monkeypatch):
    """The release's name-based selection, literally: SmallResNet's stem is `stem.0`, TinyCNN's convs sit in
    `features`: no noise at all (only the fine-tuning, here removed, would change them)."""
    _no_training(monkeypatch, [])
    for net in (SmallResNet(), fitted_tiny_cnn(_loaders()[0])):
        before = _state(net)
        method = _method()
        method.run(net, *_loaders())
        assert method.log_["noised"] == []
        assert all(torch.equal(before[k], v) for k, v in _state(net).items())


def test_the_small_noise_comes_before_the_last_epoch_only(monkeypatch):
    """conv1 at the start of each epoch: unchanged between epochs 0, 1, 2; between 2 and 3 moved by σ = 0.005."""
    record = []
    _no_training(monkeypatch, record)
    torch.manual_seed(0)
    _method().run(resnet18(num_classes=10), *_loaders())
    stems = [w for _, _, w in record]
    assert len(stems) == 4
    assert torch.equal(stems[0], stems[1]) and torch.equal(stems[1], stems[2])
    assert (stems[3] - stems[2]).std() == pytest.approx(0.005, rel=0.05)


def test_the_lr_is_a_cosine_stepped_once_per_epoch(monkeypatch):
    record = []
    _no_training(monkeypatch, record)
    _method().run(fitted_tiny_cnn(_loaders()[0]), *_loaders())
    assert [lr for lr, _, _ in record] == pytest.approx(
        [7e-4 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    )


def test_the_loss_is_mean_ce_times_mean_weight(monkeypatch):
    """The run's loss on a batch: mean_i CE_i × mean_i w_i, w = 1 for class 0 and 0.05 otherwise; this is not
    mean_i w_i·CE_i (checked to differ on the same batch)."""
    seen = {}

    def fake(net, batches, loss_fn, opt, *a, **k):
        seen.setdefault("loss_fn", loss_fn)
        seen.setdefault("net", copy.deepcopy(net))
        return 0.0

    monkeypatch.setattr(seif, "train_steps", fake)
    retain, forget, val = _loaders()
    _method().run(fitted_tiny_cnn(retain), retain, forget, val)
    x, y = next(iter(retain))
    y = y.clone()
    y[:8] = 0  # a batch with several class-0 examples
    net = seen["net"].eval()
    with torch.no_grad():
        logits = net(x)
        ce = F.cross_entropy(logits, y, reduction="none")
        w = torch.where(y == 0, 1.0, 0.05)
        got = seen["loss_fn"](net, x, y)
    assert got == pytest.approx(float(ce.mean() * w.mean()), rel=1e-5)
    assert float(got) != pytest.approx(float((w * ce).mean()), rel=1e-3)


@pytest.mark.parametrize("epochs_30, per_epoch", [(30, 10), (15, 5), (3, 1), (1, 1)])
def test_steps_per_epoch_follow_e_over_30_and_a_one_step_epoch_runs(monkeypatch, epochs_30, per_epoch):
    """10 retain batches; an epoch is round(E/30·10) steps (at least one); real training, 4 epochs."""
    steps = count_steps(monkeypatch, seif)
    retain, forget, val = _loaders()
    net = fitted_tiny_cnn(retain)
    _method(epochs_30).run(net, retain, forget, val)
    assert steps == [per_epoch] * 4
    assert all(torch.isfinite(p).all() for p in net.parameters()) and not net.training
