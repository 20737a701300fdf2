"""`amnesiacs` does what its released notebook (kgltop6, "KDE") does, checked on a small setting.

Exactly the first conv and the fc are reset (torchvision's ResNet-18); the warm-up reads only validation
batches (with `warmup_classes="forget"` only those of the forget set's classes) and minimises
KL(softmax(f0/5) ‖ softmax(f/5)) without T² at SGD lr 9e-4; the retain phase minimises CE + soft CE +
KL at T = 5 at lr 1e-3 · (1, 0.75, 0.25) per epoch; every phase's length is its released epochs · E/30.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet18

import methods.amnesiacs as amn
from data.splits import make_loader
from methods._train_recipe import Recipe
from tests.methods.toy import fitted_tiny_cnn


def test_exactly_the_first_conv_and_the_fc_are_reset():
    torch.manual_seed(0)
    net = resnet18(num_classes=10)
    with torch.no_grad():  # BN away from its defaults, so a reset would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    net.train()
    net(torch.randn(4, 3, 32, 32))
    before = copy.deepcopy(net.state_dict())
    names = amn.Amnesiacs.reset_layers(net, torch.Generator().manual_seed(1))
    assert names == ["conv1", "fc"]
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"conv1.weight", "fc.weight", "fc.bias"}
    # the layers' own initialiser: U(±1/sqrt(fan_in)) (torchvision's conv1 was kaiming-normal, wider)
    for key, fan_in in [("conv1.weight", 3 * 7 * 7), ("fc.weight", 512), ("fc.bias", 512)]:
        bound = 1 / math.sqrt(fan_in)
        assert after[key].abs().max() <= bound
        assert after[key].abs().max() > 0.9 * bound
    assert before["conv1.weight"].abs().max() > 1 / math.sqrt(147)


def _loaders(forget_classes=(2, 5), batch_size=8):
    """Retain / forget / validation loaders with distinct images; the forget set holds only `forget_classes`."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(48 + 16 + 40, 3, 16, 16, generator=g)
    y = torch.randint(0, 10, (104,), generator=g)
    y[48:64] = torch.tensor(forget_classes).repeat(8)
    y[64:72] = forget_classes[0]  # the validation set holds both kinds
    retain = make_loader(x[:48], y[:48], batch_size, shuffle=True, seed=0)
    forget = make_loader(x[48:64], y[48:64], batch_size, shuffle=True, seed=1)
    val = make_loader(x[64:], y[64:], batch_size, shuffle=True, seed=2)
    return (retain, forget, val), (x, y)


def _spy(monkeypatch, calls):
    def spy(net, batches, loss_fn, opt, sched=None, **kw):
        calls.append(
            {
                "net": copy.deepcopy(net),
                "batches": list(batches),
                "loss_fn": loss_fn,
                "opt": opt,
                "lr": opt.param_groups[0]["lr"],
            }
        )
        return 0.0

    monkeypatch.setattr(amn, "train_steps", spy)


def _rows(batches):
    return torch.cat([xb for xb, _ in batches]), torch.cat([yb for _, yb in batches])


def _member(rows, pool):
    """Whether each row of `rows` is a row of `pool` (exact equality)."""
    return torch.stack([(pool == r).flatten(1).all(1).any() for r in rows])


def _kl_T(s, t, T=5.0):
    pt, ps = F.softmax(t / T, 1), F.softmax(s / T, 1)
    return (pt * (pt.log() - ps.log())).sum(1).mean()


@pytest.mark.parametrize("warmup_classes", ["all", "forget"])
def test_warmup_reads_validation_only_and_minimises_kl_at_T5_without_T2(monkeypatch, warmup_classes):
    (retain, forget, val), (x, y) = _loaders()
    net = fitted_tiny_cnn(make_loader(x[:48], y[:48], 16))
    original = copy.deepcopy(net).eval()
    calls = []
    _spy(monkeypatch, calls)
    amn.Amnesiacs(seed=0, warmup_classes=warmup_classes).run(net, retain, forget, val)
    warm, *retain_calls = calls
    assert len(retain_calls) == 3

    xs, ys = _rows(warm["batches"])
    assert _member(xs, x[64:]).all(), "a warm-up batch holds a non-validation image"
    if warmup_classes == "forget":
        of_forget = torch.isin(y[64:], torch.tensor([2, 5]))
        assert set(ys.tolist()) <= {2, 5} and len(ys) == 3 * int(of_forget.sum())  # 3 epochs of them
        assert _member(x[64:][of_forget], xs).all()
    else:
        assert len(ys) == 3 * 40 and len(set(ys.tolist())) > 2  # 3 epochs of the 40 validation images
    for c in retain_calls:
        assert _member(_rows(c["batches"])[0], x[:48]).all(), "a retain batch holds a non-retain image"

    group = warm["opt"].param_groups[0]
    assert type(warm["opt"]) is torch.optim.SGD
    assert (warm["lr"], group["momentum"], group["weight_decay"]) == (9e-4, 0.9, 5e-4)
    xb, yb = warm["batches"][0]
    student = copy.deepcopy(warm["net"]).train()
    got = warm["loss_fn"](student, xb, yb)
    hand = _kl_T(copy.deepcopy(warm["net"]).train()(xb), original(xb))
    assert torch.allclose(got, hand, atol=1e-6), (float(got), float(hand))


def test_retain_loss_is_ce_plus_soft_ce_plus_kl_at_T5(monkeypatch):
    (retain, forget, val), (x, y) = _loaders()
    net = fitted_tiny_cnn(make_loader(x[:48], y[:48], 16))
    original = copy.deepcopy(net).eval()
    calls = []
    _spy(monkeypatch, calls)
    amn.Amnesiacs(seed=0).run(net, retain, forget, val)
    call = calls[1]
    xb, yb = call["batches"][0]
    z, t = copy.deepcopy(call["net"]).train()(xb), original(xb)
    T = 5.0
    ce = -F.log_softmax(z, 1).gather(1, yb[:, None]).mean()
    soft_ce = -(F.softmax(t / T, 1) * F.log_softmax(z / T, 1)).sum(1).mean()
    hand = ce + soft_ce + _kl_T(z, t, T)
    got = call["loss_fn"](copy.deepcopy(call["net"]).train(), xb, yb)
    assert torch.allclose(got, hand, atol=1e-6), (float(got), float(hand))
    assert float(soft_ce.detach()) > float(_kl_T(z, t, T).detach()) > 0  # distinct terms: soft CE = KL + H(teacher)


@pytest.mark.parametrize("recipe_epochs", [None, 30, 3, 1])
def test_phases_follow_released_epochs_times_E_over_30(monkeypatch, recipe_epochs):
    (retain, forget, val), (x, y) = _loaders()  # 6 retain batches, 5 validation batches
    calls = []
    _spy(monkeypatch, calls)
    method = amn.Amnesiacs(seed=0)
    if recipe_epochs is not None:
        method.configure(Recipe(epochs=recipe_epochs, lr=0.1))
    method.run(fitted_tiny_cnn(make_loader(x[:48], y[:48], 16)), retain, forget, val)
    scale = (recipe_epochs or 30) / 30
    warm, *epochs = calls
    assert len(warm["batches"]) == max(1, round(3 * 5 * scale))
    assert [len(c["batches"]) for c in epochs] == [max(1, round(6 * scale))] * 3
    assert [c["lr"] for c in epochs] == pytest.approx([1e-3, 0.75e-3, 0.25e-3])
    assert len({id(c["opt"]) for c in epochs}) == 1 and epochs[0]["opt"] is not warm["opt"]
    group = epochs[0]["opt"].param_groups[0]
    assert (group["momentum"], group["weight_decay"]) == (0.9, 5e-4)


def test_a_real_run_with_one_step_phases():
    (retain, forget, val), (x, y) = _loaders()
    net = fitted_tiny_cnn(make_loader(x[:48], y[:48], 16))
    before = copy.deepcopy(net.state_dict())
    method = amn.Amnesiacs(seed=0, warmup_classes="forget")
    method.configure(Recipe(epochs=1, lr=0.1))
    method.run(net, retain, forget, val)
    assert not net.training
    assert all(torch.isfinite(v).all() for v in net.state_dict().values() if v.is_floating_point())
    assert not torch.equal(net.state_dict()["features.3.weight"], before["features.3.weight"])
    assert len(method.log_["retain_loss"]) == 3
