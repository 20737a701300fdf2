"""Building blocks: losses, teacher, saliency masks, masked optimisation, re-initialisation, SAM."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from data.archs.tiny_cnn import TinyCNN
from methods._losses import (
    cross_entropy,
    dot_contrastive,
    entropy_matching,
    kl_to_teacher,
    kl_to_uniform,
    logit_margin,
    prediction_entropy,
    quantile_hinge,
    symmetric_kl,
    true_label_confidence,
    true_label_margin,
)
from methods._masked_optimizer import MaskedOptimizer
from methods._reinit import reinit_entries, reinit_modules, reset_all
from methods._saliency import gradient_saliency, saliency_mask
from methods._sam import SAM, with_sam
from methods._teacher import Teacher, frozen_copy
from tests.methods.toy import snapshot


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _logits(b=5, c=4, seed=0):
    return torch.randn(b, c, generator=_gen(seed))


def _cnn(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyCNN(num_classes=4, width=4)


def _batch(n=8, seed=1):
    g = _gen(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------- losses


def test_cross_entropy_plain_and_weighted():
    z, y = _logits(), torch.tensor([0, 1, 2, 3, 0])
    assert torch.allclose(cross_entropy(z, y), F.cross_entropy(z, y))
    assert torch.allclose(cross_entropy(z, y, label_smoothing=0.1), F.cross_entropy(z, y, label_smoothing=0.1))
    w = torch.tensor([1.0, 0.05, 0.05, 1.0, 0.0])
    per = -F.log_softmax(z, 1)[torch.arange(5), y]
    assert torch.allclose(cross_entropy(z, y, example_weights=w), (w * per).sum() / 5)  # / b, not / Σw


def test_kl_losses_match_formulas():
    s, t, T = _logits(seed=1), _logits(seed=2), 4.0
    pt, ps = F.softmax(t / T, 1), F.softmax(s / T, 1)
    want = T * T * (pt * (pt.log() - ps.log())).sum(1).mean()
    assert torch.allclose(kl_to_teacher(s, t, T), want, atol=1e-6)
    assert torch.allclose(kl_to_teacher(s, t, T), F.kl_div(F.log_softmax(s / T, 1), pt, reduction="batchmean") * T * T)
    pa, pb = F.softmax(s, 1), F.softmax(t, 1)
    per = 0.5 * ((pa * (pa / pb).log()).sum(1) + (pb * (pb / pa).log()).sum(1))
    assert torch.allclose(symmetric_kl(s, t, reduction="none"), per, atol=1e-6)
    assert torch.allclose(symmetric_kl(s, t), per.mean(), atol=1e-6)
    assert torch.allclose(symmetric_kl(s, s, reduction="none"), torch.zeros(5))
    with pytest.raises(ValueError):
        symmetric_kl(s, t, reduction="sum")
    u = torch.full((5, 4), 0.25)
    assert torch.allclose(kl_to_uniform(s), F.kl_div(u.log(), pa, reduction="batchmean"), atol=1e-6)
    assert kl_to_uniform(torch.zeros(3, 7)).abs() < 1e-6
    huge = torch.tensor([[1e4, 0.0, -1e4]])
    assert torch.isfinite(symmetric_kl(huge, -huge)) and torch.isfinite(kl_to_uniform(huge))


def test_entropy_losses():
    z = _logits()
    p = F.softmax(z, 1)
    assert torch.allclose(prediction_entropy(z), -(p * p.log()).sum(1), atol=1e-6)
    assert torch.allclose(prediction_entropy(torch.zeros(2, 10)), torch.full((2,), math.log(10)))
    r = _logits(seed=3).requires_grad_()
    zz = z.clone().requires_grad_()
    loss = entropy_matching(zz, r)
    assert torch.allclose(loss, ((prediction_entropy(z) - prediction_entropy(r.detach())) ** 2).mean())
    loss.backward()
    assert r.grad is None and zz.grad is not None  # the reference is detached


def test_margins_and_confidence():
    z = torch.tensor([[3.0, 1.0, -1.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([1, 2])
    assert torch.allclose(logit_margin(z, squared=False), torch.tensor([2.0, 0.0]))
    assert torch.allclose(logit_margin(z), torch.tensor([4.0, 0.0]))
    assert torch.allclose(true_label_margin(z, y), torch.tensor([0.0, 0.0]))
    want0 = 1.0 - math.log(math.exp(3.0) + math.exp(-1.0))
    assert torch.allclose(true_label_confidence(z, y), torch.tensor([want0, -math.log(2.0)]))
    p = F.softmax(z, 1)
    assert torch.allclose(true_label_confidence(z, y), p[[0, 1], y].log() - (1 - p[[0, 1], y]).log(), atol=1e-6)
    confident = torch.tensor([[200.0, 0.0, -5.0]])
    c = true_label_confidence(confident, torch.tensor([0]))
    assert torch.isfinite(c) and c.item() == pytest.approx(200.0 - math.log1p(math.exp(-5.0)), abs=1e-4)


def test_quantile_hinge():
    ref = torch.arange(100, dtype=torch.float32)  # quantiles of 0..99
    v = torch.tensor([90.0, 0.0])  # sorted: 0 -> q(0.25)=24.75, 90 -> q(0.75)=74.25
    assert torch.allclose(quantile_hinge(v, ref), torch.tensor((0 + 15.75**2) / 2))
    assert torch.allclose(quantile_hinge(v, ref, squared=False), torch.tensor(15.75 / 2))
    assert quantile_hinge(torch.tensor([-5.0, 1.0]), ref) == 0  # one-sided
    vv = v.clone().requires_grad_()
    quantile_hinge(vv, ref).backward()
    assert torch.allclose(vv.grad, torch.tensor([15.75, 0.0]))
    with pytest.raises(ValueError):
        quantile_hinge(v[None], ref)


def test_dot_contrastive():
    a, b = torch.randn(3, 5, generator=_gen(1)), torch.randn(4, 5, generator=_gen(2))
    logits = a @ b.T / 0.5
    want = -(logits - logits.logsumexp(1, keepdim=True)).mean()
    assert torch.allclose(dot_contrastive(a, b, 0.5), want)
    by_hand = (
        -sum(
            math.log(math.exp(logits[i, j]) / sum(math.exp(logits[i, k]) for k in range(4)))
            for i in range(3)
            for j in range(4)
        )
        / 12
    )
    assert dot_contrastive(a, b, 0.5).item() == pytest.approx(by_hand, rel=1e-5)


# ---------------------------------------------------------------- teacher


def test_teacher_frozen_eval_no_grad():
    net = _cnn()
    x, _ = _batch()
    teacher = Teacher(net)
    assert all(not p.requires_grad for p in teacher.module.parameters())
    teacher.module.train()
    before = _state(teacher.module)
    out = teacher(x)
    assert not out.requires_grad and not teacher.module.training
    _assert_same(before, _state(teacher.module))  # BN statistics untouched
    with torch.no_grad():
        net.fc.weight.add_(1.0)
    assert not torch.equal(teacher.module.fc.weight, net.fc.weight)  # a snapshot, not a view
    assert not frozen_copy(net).training and net.fc.weight.requires_grad


# ---------------------------------------------------------------- saliency


def _neg_ce(net, x, y):
    return -F.cross_entropy(net(x), y)


def test_gradient_saliency_leaves_net_untouched_and_matches_sum():
    net = _cnn()
    net.train()
    net.features[1].eval()  # a mixed train/eval state must come back as it was
    loader = [_batch(seed=s) for s in (1, 2, 3)]
    before, flags = _state(net), [m.training for m in net.modules()]
    scores = gradient_saliency(net, loader, _neg_ce, max_batches=2)
    _assert_same(before, _state(net))
    assert [m.training for m in net.modules()] == flags
    assert all(p.grad is None for p in net.parameters())
    ref = copy.deepcopy(net).eval()
    total = {n: torch.zeros_like(p) for n, p in ref.named_parameters()}
    absum = {n: torch.zeros_like(p) for n, p in ref.named_parameters()}
    for x, y in loader[:2]:
        ref.zero_grad()
        _neg_ce(ref, x, y).backward()
        for n, p in ref.named_parameters():
            total[n] += p.grad
            absum[n] += p.grad.abs()
    for n in total:
        assert torch.allclose(scores[n], total[n].abs(), atol=1e-6)
    soa = gradient_saliency(net, loader, _neg_ce, max_batches=2, reduce="sum_of_abs")
    assert all(torch.allclose(soa[n], absum[n], atol=1e-6) for n in absum)
    with pytest.raises(ValueError):
        gradient_saliency(net, loader, _neg_ce, reduce="max")


def test_saliency_mask_keeps_largest():
    scores = {"a": torch.tensor([[0.1, 9.0], [0.5, 0.2]]), "b": torch.tensor([0.3, 0.0, 5.0, 0.4])}
    m = saliency_mask(scores, 0.25)  # global: floor(0.25·8) = 2 entries
    assert m["a"][0, 1] and m["b"][2] and int(m["a"].sum() + m["b"].sum()) == 2
    assert not m["b"][1] and m["a"].dtype == torch.bool
    lay = saliency_mask(scores, 0.25, scope="layer")  # floor(0.25·4) = 1 per tensor
    assert int(lay["a"].sum()) == 1 and int(lay["b"].sum()) == 1 and lay["a"][0, 1] and lay["b"][2]
    tiny = saliency_mask(scores, 0.01)  # at least one entry kept
    assert int(tiny["a"].sum() + tiny["b"].sum()) == 1 and tiny["a"][0, 1]
    assert all(v.all() for v in saliency_mask(scores, 1.0).values())
    assert not any(v.any() for v in saliency_mask(scores, 0.0).values())
    only_b = saliency_mask(scores, 0.5, include=lambda n, t: n == "b", excluded_value=True)
    assert only_b["a"].all() and only_b["b"].tolist() == [False, False, True, True]
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="ratio"):
            saliency_mask(scores, bad)
    with pytest.raises(ValueError, match="scope"):
        saliency_mask(scores, 0.5, scope="tensor")


def test_saliency_mask_global_vs_layer_counts_on_net():
    net = _cnn()
    scores = gradient_saliency(net, [_batch()], _neg_ce)
    total = sum(s.numel() for s in scores.values())
    g = saliency_mask(scores, 0.3)
    assert sum(int(v.sum()) for v in g.values()) == math.floor(0.3 * total)
    lay = saliency_mask(scores, 0.3, scope="layer")
    for n, s in scores.items():
        assert int(lay[n].sum()) == max(1, math.floor(0.3 * s.numel()))
    flat = torch.cat([s.flatten() for s in scores.values()])
    kept = torch.cat([g[n].flatten() for n in scores])
    assert flat[kept].min() >= flat[~kept].max()  # the top-|g| entries, not the bottom ones


# ---------------------------------------------------------------- masked optimiser


def _random_masks(net, seed=0):
    g = _gen(seed)
    return {n: torch.rand(p.shape, generator=g) < 0.5 for n, p in net.named_parameters()}


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True),
        lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-2),
        lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=1e-1),
    ],
)
@pytest.mark.parametrize("use_closure", [False, True])
def test_masked_optimizer_bit_for_bit(make, use_closure):
    net = _cnn()
    x, y = _batch()
    masks = _random_masks(net)
    init = snapshot(net)
    opt = MaskedOptimizer(make(net.parameters()), net, masks)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    lr0 = opt.base_optimizer.param_groups[0]["lr"]

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        return loss

    for _ in range(10):
        if use_closure:
            assert torch.is_tensor(opt.step(closure))
        else:
            closure()
            opt.step()
        sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] != lr0
    for n, p in net.named_parameters():
        assert torch.equal(p[~masks[n]], init[n][~masks[n]]), n
        assert (p[masks[n]] != init[n][masks[n]]).float().mean() > 0.5, n
        for key, v in opt.state[p].items():
            if key != "step" and v.shape == p.shape:
                assert not v[~masks[n]].any(), (n, key)


def test_masked_optimizer_rejects_bad_masks():
    net = _cnn()
    with pytest.raises(ValueError, match="unknown"):
        MaskedOptimizer(torch.optim.SGD(net.parameters(), lr=0.1), net, {"nope": torch.ones(1, dtype=torch.bool)})
    with pytest.raises(ValueError, match="shape"):
        MaskedOptimizer(torch.optim.SGD(net.parameters(), lr=0.1), net, {"fc.bias": torch.ones(2, dtype=torch.bool)})


# ---------------------------------------------------------------- re-initialisation


def test_reset_all_seeded_and_global_rng_untouched():
    a, b = _cnn(0), _cnn(1)
    state = torch.random.get_rng_state()
    reset_all(a, seed=5)
    reset_all(b, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())
    _assert_same(_state(a), _state(b))
    reset_all(b, seed=6)
    assert not torch.equal(a.fc.weight, b.fc.weight)


def test_reinit_modules():
    net, ref = _cnn(), _cnn()
    net.features[1].running_mean.fill_(3.0)
    state = torch.random.get_rng_state()
    done = reinit_modules(net, ["features.0", "fc"], _gen(7))
    assert done == ["features.0", "fc"] and torch.equal(state, torch.random.get_rng_state())
    assert not torch.equal(net.fc.weight, ref.fc.weight) and not torch.equal(
        net.features[0].weight, ref.features[0].weight
    )
    assert torch.equal(net.features[3].weight, ref.features[3].weight)
    assert torch.equal(net.features[1].running_mean, torch.full((4,), 3.0))  # not selected
    again = _cnn()
    again.features[1].running_mean.fill_(3.0)
    reinit_modules(again, ["features.0", "fc"], _gen(7))
    _assert_same(_state(net), _state(again))
    other = _cnn()
    reinit_modules(other, ["features.0", "fc"], _gen(8))
    assert not torch.equal(other.fc.weight, net.fc.weight)
    bn = reinit_modules(net, lambda n, m: isinstance(m, torch.nn.BatchNorm2d))
    assert bn == ["features.1", "features.4"] and torch.equal(net.features[1].running_mean, torch.zeros(4))
    assert reinit_modules(_cnn(), ["features"], _gen(0)) == ["features.0", "features.1", "features.3", "features.4"]
    with pytest.raises(ValueError, match="valid names"):
        reinit_modules(net, ["conv1"])


def test_reinit_entries():
    net, ref = _cnn(), _cnn()
    g = _gen(3)
    masks = {n: torch.rand(p.shape, generator=g) < 0.3 for n, p in net.named_parameters() if p.ndim >= 2}
    frac = reinit_entries(net, masks, _gen(11))
    total = sum(m.numel() for m in masks.values())
    assert frac == pytest.approx(sum(int(m.sum()) for m in masks.values()) / total)
    for n, p in net.named_parameters():
        r = dict(ref.named_parameters())[n]
        if n in masks:
            assert torch.equal(p[~masks[n]], r[~masks[n]]), n
            assert (p[masks[n]] != r[masks[n]]).all(), n
            bound = 1 / math.sqrt(r[0].numel())  # kaiming_uniform(a=√5) bound: 1/√fan_in
            assert p[masks[n]].abs().max() <= bound + 1e-6
        else:
            assert torch.equal(p, r), n
    again = _cnn()
    reinit_entries(again, masks, _gen(11))
    _assert_same(_state(net), _state(again))
    other = _cnn()
    reinit_entries(other, masks, _gen(12))
    assert not torch.equal(other.fc.weight, net.fc.weight)


# ---------------------------------------------------------------- SAM


class _Tanh2(torch.nn.Module):
    def __init__(self):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.l1, self.l2 = torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.l2(torch.tanh(self.l1(x)))


def _fixed():
    g = _gen(4)
    return torch.randn(6, 3, generator=g), torch.randint(0, 2, (6,), generator=g)


def _closure_for(net, opt, x, y, record=None):
    def closure():
        if record is not None:
            record.append([p.detach().clone() for p in net.parameters()])
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        return loss

    return closure


def _grad_at(net, params, x, y):
    m = copy.deepcopy(net)
    with torch.no_grad():
        for q, v in zip(m.parameters(), params):
            q.copy_(v)
    return torch.autograd.grad(F.cross_entropy(m(x), y), list(m.parameters()))


@pytest.mark.parametrize(
    "mode,lam,adaptive", [("min", 1.0, False), ("max", 0.5, False), ("max", 1.0, True), ("min", 0.7, True)]
)
def test_sam_update_matches_hand_computation(mode, lam, adaptive):
    net, (x, y), rho, lr = _Tanh2(), _fixed(), 0.2, 0.1
    w = [p.detach().clone() for p in net.parameters()]
    g0 = _grad_at(net, w, x, y)
    t = [wi.abs() if adaptive else torch.ones_like(wi) for wi in w]
    norm = torch.sqrt(sum(((ti * gi) ** 2).sum() for ti, gi in zip(t, g0)))
    e = [rho * ti**2 * gi / norm for ti, gi in zip(t, g0)]
    g1 = _grad_at(net, [wi + ei for wi, ei in zip(w, e)], x, y)
    s = 1.0 if mode == "min" else -1.0
    want = [wi - lr * (a + s * lam * (b - a)) for wi, a, b in zip(w, g0, g1)]
    opt = SAM(torch.optim.SGD(net.parameters(), lr=lr), net, rho=rho, adaptive=adaptive, mode=mode, lam=lam)
    record = []
    loss = opt.step(_closure_for(net, opt, x, y, record))
    assert loss.item() == pytest.approx(F.cross_entropy(_Tanh2()(x), y).item())
    for wi, ei, w2 in zip(w, e, record[1]):
        assert torch.allclose(w2 - wi, ei, atol=1e-6)  # the perturbation of the second pass
    for got, wt in zip(net.parameters(), want):
        assert torch.allclose(got, wt, atol=1e-6)


def test_asam_perturbation_scales_with_abs_w():
    net, (x, y) = _Tanh2(), _fixed()
    with torch.no_grad():
        net.l1.weight[0, 0] = 0.0
        net.l1.weight[1, 1] *= 3.0
    w = [p.detach().clone() for p in net.parameters()]
    record = []
    opt = SAM(torch.optim.SGD(net.parameters(), lr=0.1), net, rho=0.5, adaptive=True)
    opt.step(_closure_for(net, opt, x, y, record))
    g0 = _grad_at(net, w, x, y)
    e = [b - a for a, b in zip(w, record[1])]
    assert e[0][0, 0] == 0  # a zero weight is not perturbed
    ratio = torch.cat([(ei / (wi.square() * gi)).flatten() for ei, wi, gi in zip(e, w, g0)])
    ratio = ratio[torch.isfinite(ratio)]
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4)  # e ∝ |w|²⊙g0


def test_sam_rho_zero_equals_plain_step():
    x, y = _batch()
    a, b = _cnn(), _cnn()
    a.train(), b.train()
    oa = SAM(torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9), a, rho=0.0)
    ob = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        oa.step(_closure_for(a, oa, x, y))
        _closure_for(b, ob, x, y)()
        ob.step()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-7, rtol=0), n


def test_sam_bn_stats_match_plain_step():
    x, y = _batch()
    a, b = _cnn(), _cnn()
    a.train(), b.train()
    oa = SAM(torch.optim.SGD(a.parameters(), lr=0.1), a, rho=0.5)
    ob = torch.optim.SGD(b.parameters(), lr=0.1)
    oa.step(_closure_for(a, oa, x, y))
    _closure_for(b, ob, x, y)()
    ob.step()
    for (n, u), v in zip(a.named_buffers(), b.buffers()):
        assert torch.equal(u, v), n
    a.features[1].momentum = None  # cumulative average: the second pass must not count either
    oa.step(_closure_for(a, oa, x, y))
    assert a.features[1].num_batches_tracked.item() == 2


def test_sam_errors_and_with_sam():
    net = _Tanh2()
    base = torch.optim.SGD(net.parameters(), lr=0.1)
    assert with_sam(base, net, None) is base
    wrapped = with_sam(base, net, "max", rho=1.0, adaptive=True, lam=0.5)
    assert (
        isinstance(wrapped, SAM)
        and wrapped.mode == "max"
        and wrapped.adaptive
        and wrapped.param_groups is base.param_groups
    )
    with pytest.raises(ValueError):
        with_sam(base, net, "sharp")
    with pytest.raises(RuntimeError, match="closure"):
        wrapped.step()


@pytest.mark.parametrize("mode", ["min", "max"])
def test_masked_sam_composition(mode):
    net = _cnn()
    x, y = _batch()
    masks = _random_masks(net, seed=5)
    init = snapshot(net)
    base = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1)
    opt = MaskedOptimizer(SAM(base, net, rho=0.5, adaptive=True, mode=mode, lam=0.5), net, masks)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5**k)
    record = []  # weights at each closure call: two per SAM step

    def closure():
        record.append([p.detach().clone() for p in net.parameters()])
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
        sched.step()
    assert len(record) == 10 and base.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**5)
    names = [n for n, _ in net.named_parameters()]
    for k in range(1, 10, 2):  # the SAM perturbation of the second pass is masked too
        for n, before, after in zip(names, record[k - 1], record[k]):
            assert torch.equal(before[~masks[n]], after[~masks[n]]), n
    for n, p in net.named_parameters():
        assert torch.equal(p[~masks[n]], init[n][~masks[n]]), n
        assert (p[masks[n]] != init[n][masks[n]]).float().mean() > 0.5, n


@pytest.mark.parametrize("name", ["cosine", "onecycle", "constant"])
def test_every_schedule_works_for_any_positive_step_count(name):
    """A phase scaled down to a few steps (kookmin's notebook once died in OneCycleLR at 4): every step's
    rate is finite, the first is positive, and none exceeds the peak."""
    from methods._optimizers import make_scheduler

    for steps in range(1, 12):
        q = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([q], lr=0.1)
        sched = make_scheduler(name, opt, steps, 0.1)
        rates = []
        for _ in range(steps):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert rates[0] > 0 and all(0 <= r <= 0.1 + 1e-12 and math.isfinite(r) for r in rates), (steps, rates)
