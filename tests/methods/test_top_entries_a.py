"""`fanchuan`, `kookmin`, `seif`, `sebastian` (NeurIPS 2023 top entries) and the `_gradscale` block: each
entry's distinctive mechanics checked against hand computations on a TinyCNN (spies record the state a
run passes through; the steps are replayed by hand)."""
import copy

import pytest
import torch
import torch.nn.functional as F

import methods.fanchuan as fanchuan_mod
import methods.kookmin as kookmin_mod
import methods.sebastian as sebastian_mod
import methods.seif as seif_mod
from data.archs.tiny_cnn import TinyCNN
from data.splits import make_loader
from methods._common import unpack
from methods._gradscale import GradScaleOptimizer
from methods._iterative import build_optimizer
from methods._losses import dot_contrastive, kl_to_uniform
from methods._sam import SAM
from tests.methods.toy import fitted_tiny_cnn, random_loaders

PLAIN = dict(momentum=0.0, weight_decay=0.0, max_update=0.0, schedule="constant")   # plain SGD steps


def _loaders(sizes=(96, 64, 32), batch_size=32, data_seed=5):
    return random_loaders(sizes, data_seed=data_seed, batch_size=batch_size)


@pytest.fixture(scope="module")
def net():
    return fitted_tiny_cnn(_loaders()[0], epochs=2)


def _params(net):
    return {n: p.detach().clone() for n, p in net.named_parameters()}


def _sgd_step(net, loss, lr, scales=None):
    """{name: w − lr·s·∇loss} for the parameters of `net` (s = 1 where `scales` has no entry)."""
    named = dict(net.named_parameters())
    grads = torch.autograd.grad(loss, list(named.values()))
    scales = scales or {}
    return {n: (p - lr * scales.get(n, 1.0) * g).detach() for (n, p), g in zip(named.items(), grads)}


def _assert_params(net, expected, atol=1e-6):
    for n, p in net.named_parameters():
        assert torch.allclose(p, expected[n], atol=atol), f"{n}: max diff {(p - expected[n]).abs().max():.2e}"


def _spy_after(monkeypatch, module, name, record):
    """Replace `module.name` by a wrapper that calls it and then records the network's parameters."""
    real = getattr(module, name)

    def spy(net, *args, **kwargs):
        out = real(net, *args, **kwargs)
        record.append(_params(net))
        return out
    monkeypatch.setattr(module, name, spy)


# ---------------------------------------------------------------------------------------------- _gradscale

def test_gradscale_scales_entrywise_before_a_plain_step():
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    s = torch.rand(3, 4)
    expected = _sgd_step(lin, F.cross_entropy(lin(x), y), 0.5, {"weight": s, "bias": 0.1})
    opt = GradScaleOptimizer(torch.optim.SGD(lin.parameters(), lr=0.5), lin, {"weight": s, "bias": 0.1})

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lin(x), y)
        loss.backward()
        return loss
    opt.step(closure)
    _assert_params(lin, expected)
    with pytest.raises(ValueError, match="unknown"):
        GradScaleOptimizer(torch.optim.SGD(lin.parameters(), lr=0.5), lin, {"nope": 1.0})
    with pytest.raises(ValueError, match="broadcast"):
        GradScaleOptimizer(torch.optim.SGD(lin.parameters(), lr=0.5), lin, {"weight": torch.ones(5)})


def test_gradscale_scales_both_sam_passes():
    """SAM's perturbation uses the scaled g0 and its step the scaled g1 (hand SAM, rho 0.5)."""
    torch.manual_seed(1)
    lin = torch.nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    s = {"weight": torch.rand(3, 4), "bias": torch.tensor(0.1)}
    lr, rho = 0.3, 0.5
    hand = copy.deepcopy(lin)
    g0 = [s[n] * g for n, g in zip(s, torch.autograd.grad(F.cross_entropy(hand(x), y), list(hand.parameters())))]
    norm = torch.sqrt(sum((g ** 2).sum() for g in g0))
    with torch.no_grad():
        for p, g in zip(hand.parameters(), g0):
            p.add_(rho * g / norm)
    g1 = [s[n] * g for n, g in zip(s, torch.autograd.grad(F.cross_entropy(hand(x), y), list(hand.parameters())))]
    expected = {n: (p - rho * g0i / norm - lr * g1i).detach()
                for (n, p), g0i, g1i in zip(hand.named_parameters(), g0, g1)}
    opt = GradScaleOptimizer(SAM(torch.optim.SGD(lin.parameters(), lr=lr), lin, rho=rho), lin, s)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lin(x), y)
        loss.backward()
        return loss
    opt.step(closure)
    _assert_params(lin, expected, atol=1e-5)


# ---------------------------------------------------------------------------------------------- kookmin

def _neggrad_plus_grads(net, retain, forget):
    """∇[CE(retain batch) − CE(forget batch)] of every conv weight, in eval mode (one batch each)."""
    m = copy.deepcopy(net).eval()
    (xr, yr), (xf, yf) = unpack(next(iter(retain))), unpack(next(iter(forget)))
    names = [n for n, q in m.named_parameters() if q.ndim == 4]
    named = dict(m.named_parameters())
    loss = F.cross_entropy(m(xr), yr) - F.cross_entropy(m(xf), yf)
    return dict(zip(names, torch.autograd.grad(loss, [named[n] for n in names])))


def test_kookmin_reinitialises_exactly_the_bottom_30_percent_of_conv_weights_by_neggrad_plus(net, monkeypatch):
    # |R| = |F| = one batch: the ranking's retain subset is all of R and each sum is one batch mean
    retain, forget, val = _loaders(sizes=(32, 32, 32))
    grads = _neggrad_plus_grads(net, retain, forget)
    after = []
    _spy_after(monkeypatch, kookmin_mod, "reinit_entries", after)
    method = kookmin_mod.Kookmin(seed=0, epochs=1)
    method.run(copy.deepcopy(net), retain, forget, val)
    before, after = _params(net), after[0]
    for n, w in before.items():
        changed = after[n] != w
        if n not in grads:
            assert not changed.any(), f"{n} is not a conv weight and must not be re-initialised"
            continue
        k, mag = int(0.3 * w.numel()), grads[n].abs()
        assert int(changed.sum()) == k, f"{n}: {int(changed.sum())} entries re-initialised, want {k}"
        slack = 1e-5 * float(mag.max())   # the method sums the batch in another order: float-level ties
        assert float(mag[changed].max()) <= float(mag[~changed].min()) + slack, \
            f"{n}: not the {k} smallest |NegGrad+ gradient| entries"
    assert method.log_["reinit_fraction"] == pytest.approx(0.3, abs=0.01)


def test_kookmin_scales_conv_gradients_1_for_reinitialised_and_01_for_kept_weights(net, monkeypatch):
    retain, forget, val = _loaders(sizes=(32, 32, 32))    # one retain batch: one fine-tuning step
    after_reinit = []
    _spy_after(monkeypatch, kookmin_mod, "reinit_entries", after_reinit)
    lr = 0.2
    method = kookmin_mod.Kookmin(seed=3, epochs=1, lr=lr, **PLAIN)
    m = copy.deepcopy(net)
    method.run(m, retain, forget, val)
    hand = copy.deepcopy(net).train()
    with torch.no_grad():
        for n, p in hand.named_parameters():
            p.copy_(after_reinit[0][n])
    x, y = unpack(next(iter(retain)))
    scales = {n: torch.where(mask, 1.0, 0.1) for n, mask in method.mask_.items()}
    assert set(scales) == {n for n, q in net.named_parameters() if q.ndim == 4}, "conv weights only"
    expected = _sgd_step(hand, F.cross_entropy(hand(x), y), lr, scales)
    _assert_params(m, expected)
    # and the scale matters: a step with unscaled conv gradients is elsewhere
    plain = copy.deepcopy(hand)
    unscaled = _sgd_step(plain, F.cross_entropy(plain(x), y), lr)
    conv = next(iter(scales))
    assert not torch.allclose(dict(m.named_parameters())[conv], unscaled[conv], atol=1e-6)


# ---------------------------------------------------------------------------------------------- seif

def test_seif_noise_is_06_of_each_conv_weights_std_and_0005_before_the_last_epoch(monkeypatch):
    torch.manual_seed(0)
    wide = TinyCNN(width=48).eval()
    retain, forget, val = _loaders()
    events, states = [], []
    real_noise = seif_mod.add_weight_noise_

    def noise_spy(n, scale, generator=None, masks=None):
        states.append(_params(n))
        real_noise(n, scale, generator, masks)
        states.append(_params(n))
        events.append(("noise", scale))
    monkeypatch.setattr(seif_mod, "add_weight_noise_", noise_spy)
    monkeypatch.setattr(seif_mod, "train_steps", lambda *a, **k: events.append("train") or 0.0)  # no training
    seif_mod.Seif(seed=0).run(wide, retain, forget, val)
    assert events == [("noise", 0.6), "train", "train", "train", ("noise", 0.005), "train"]
    for i, sigma in ((0, 0.6), (2, 0.005)):
        before, after = states[i], states[i + 1]
        for n, w in before.items():
            noise = after[n] - w
            if w.ndim == 4:
                ratio = float(noise.std() / w.std())
                tol = 4 * sigma / (2 * w.numel()) ** 0.5 + 1e-3 * sigma     # ~4 standard errors of a std
                assert ratio == pytest.approx(sigma, abs=tol), f"{n}: noise std {ratio:.4f} x std(w), want {sigma}"
                assert abs(float(noise.mean())) < 4 * sigma * float(w.std()) / w.numel() ** 0.5
            else:
                assert torch.equal(noise, torch.zeros_like(noise)), f"{n} (not a conv weight) was noised"


def _skewed_retain(n=32, majority=3, n_major=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.full((n_major,), majority), torch.randint(0, 10, (n - n_major,), generator=g)])
    y[n_major:][y[n_major:] == majority] = (majority + 1) % 10
    return make_loader(torch.randn(n, 3, 32, 32, generator=g), y, batch_size=n, shuffle=True, seed=0)


def test_seif_loss_weighs_the_majority_class_1_and_others_005_averaged_over_the_batch():
    torch.manual_seed(0)
    z, y = torch.randn(10, 10), torch.tensor([3, 3, 3, 1, 2, 4, 5, 3, 0, 9])
    per = F.cross_entropy(z, y, reduction="none")
    w = torch.tensor([1.0 if c == 3 else 0.05 for c in y])
    assert torch.allclose(seif_mod.majority_weighted_ce(z, y, 3, 0.05), (w * per).sum() / 10)
    assert seif_mod.majority_class(_skewed_retain(), 10) == 3


def test_seif_takes_sgd_steps_on_the_weighted_loss_of_the_retain_majority(net):
    retain = _skewed_retain(majority=7)
    _, forget, val = _loaders()
    lr = 0.3
    method = seif_mod.Seif(seed=0, epochs=1, epoch_fraction=1.0, noise=0.0, final_noise=0.0, other_weight=0.05,
                           lr=lr, **PLAIN)
    m = copy.deepcopy(net)
    method.run(m, retain, forget, val)
    assert method.log_["majority_class"] == 7
    hand = copy.deepcopy(net).train()
    x, y = unpack(next(iter(retain)))
    w = torch.where(y == 7, 1.0, 0.05)
    per = F.cross_entropy(hand(x), y, reduction="none")
    _assert_params(m, _sgd_step(hand, (w * per).sum() / len(y), lr))


# ---------------------------------------------------------------------------------------------- sebastian

def test_sebastian_reinitialises_the_99_percent_smallest_conv_and_fc_weights(net, monkeypatch):
    retain, forget, val = _loaders()
    monkeypatch.setattr(sebastian_mod, "train_steps", lambda *a, **k: 0.0)   # the re-initialisation only
    method = sebastian_mod.Sebastian(seed=0, reinit_ratio=0.99)   # the entry's ratio (shipped: 0.8)
    m = copy.deepcopy(net)
    method.run(m, retain, forget, val)
    before, after = _params(net), _params(m)
    weights = [n for n, w in before.items() if w.ndim >= 2]            # conv and fc weights
    assert weights == ["features.0.weight", "features.3.weight", "fc.weight"]
    for n, w in before.items():
        if n not in weights:
            assert torch.equal(after[n], w), f"{n} must not change"
    mags = torch.cat([before[n].abs().flatten() for n in weights])
    changed = torch.cat([(after[n] != before[n]).flatten() for n in weights])
    assert int(changed.sum()) == int(0.99 * mags.numel())
    assert mags[~changed].min() >= mags[changed].max(), "the kept 1% are the largest |w| over conv+fc together"


def test_sebastian_steps_on_ce_plus_mse_of_entropies(net, monkeypatch):
    retain, forget, val = _loaders(sizes=(32, 32, 32))   # one step
    after_reinit = []
    _spy_after(monkeypatch, sebastian_mod, "reinit_entries", after_reinit)
    lr = 0.2
    m = copy.deepcopy(net)
    sebastian_mod.Sebastian(seed=0, epochs=1, epoch_fraction=1.0, lr=lr, **PLAIN).run(m, retain, forget, val)
    hand = copy.deepcopy(net).train()
    with torch.no_grad():
        for n, p in hand.named_parameters():
            p.copy_(after_reinit[0][n])
    x, y = unpack(next(iter(retain)))

    def entropy(z):
        p = torch.softmax(z, 1)
        return -(p * torch.log(p)).sum(1)
    with torch.no_grad():
        h0 = entropy(copy.deepcopy(net).eval()(x))    # the original model, before re-initialisation
    z = hand(x)
    loss = F.cross_entropy(z, y) + ((entropy(z) - h0) ** 2).mean()
    _assert_params(m, _sgd_step(hand, loss, lr), atol=1e-5)


# ---------------------------------------------------------------------------------------------- fanchuan

class StepSpy(GradScaleOptimizer):
    """An optimizer wrapper (no scaling) that logs every step, with the parameters before and after it."""

    def __init__(self, base, net, tag, events):
        super().__init__(base, net, {})
        self.net, self.tag, self.events = net, tag, events

    def step(self, closure=None):
        before = _params(self.net)
        loss = super().step(closure)
        self.events.append((self.tag, before, _params(self.net)))
        return loss


def _spy_fanchuan(monkeypatch, net):
    events, inputs, built = [], [], []

    def build(p, n, parameters=None, lr=None):
        tag = ("stage1", "forget", "retain")[len(built)]   # the order run() builds them in
        built.append(tag)
        return StepSpy(build_optimizer(p, n, parameters, lr), n, tag, events)
    monkeypatch.setattr(fanchuan_mod, "build_optimizer", build)
    net.register_forward_pre_hook(lambda mod, args: inputs.append(args[0].detach().clone()))
    return events, inputs


def test_fanchuan_stage1_is_one_step_per_forget_batch_on_kl_to_uniform(net, monkeypatch):
    retain, forget, val = _loaders(sizes=(96, 96, 32))    # 3 forget batches
    m = copy.deepcopy(net)
    events, inputs = _spy_fanchuan(monkeypatch, m)
    lr = 0.5
    fanchuan_mod.Fanchuan(seed=0, epochs=1, uniform_lr=lr, **PLAIN).run(m, retain, forget, val)
    tags = [t for t, _, _ in events]
    assert tags == ["stage1"] * 3 + ["forget"] * 3 + ["retain"] * round(0.2 * 3), tags
    seen = torch.cat(inputs[:3])          # stage 1: one forward per step, together one pass over F
    assert torch.allclose(seen.sum(0), forget.dataset.tensors[0].sum(0), atol=1e-3) and len(seen) == 96
    hand = copy.deepcopy(net).train()
    for k in range(3):
        expected = _sgd_step(hand, kl_to_uniform(hand(inputs[k])), lr)
        with torch.no_grad():
            for n, p in hand.named_parameters():
                p.copy_(expected[n])
        for n in expected:
            assert torch.allclose(events[k][2][n], expected[n], atol=1e-6), f"stage-1 step {k}, {n}"


@pytest.mark.parametrize("ascent", [True, False])
def test_fanchuan_forget_rounds_ascend_the_contrastive_loss_then_train_on_retain(net, monkeypatch, ascent):
    retain, forget, val = _loaders(sizes=(160, 64, 32))   # 5 retain, 2 forget batches
    m = copy.deepcopy(net)
    events, inputs = _spy_fanchuan(monkeypatch, m)
    lr, T = 0.5, 1.15
    method = fanchuan_mod.Fanchuan(seed=0, epochs=2, forget_lr=lr, retain_fraction=0.4, ascent=ascent, **PLAIN)
    method.run(m, retain, forget, val)
    tags = [t for t, _, _ in events]
    assert tags == ["stage1"] * 2 + (["forget"] * 2 + ["retain"] * 2) * 2, tags
    # the first forget step: forwards of the forget batch (with grad) and of a random retain batch
    _, before, after = events[2]
    x_u, x_r = inputs[2], inputs[3]
    hand = copy.deepcopy(net).train()
    with torch.no_grad():
        for n, p in hand.named_parameters():
            p.copy_(before[n])
    with torch.no_grad():
        z_r = hand(x_r)
    contrast = dot_contrastive(hand(x_u), z_r, T)
    expected = _sgd_step(hand, -contrast if ascent else contrast, lr)   # cosine schedule: step 1 at the peak
    for n in expected:
        assert torch.allclose(after[n], expected[n], atol=1e-6), n
    retain_sums = retain.dataset.tensors[0].flatten(1).sum(1)
    assert all(torch.isclose(retain_sums, r, atol=1e-3).any() for r in x_r.flatten(1).sum(1)), "x_r: retain images"
    assert len(method.log_["contrastive_loss"]) == 2 and all(v > 0 for v in method.log_["contrastive_loss"])
