"""`ga`, `ng`, `scrub`, `sharp_minmax` and their shared pairing block `_paired`: the pieces each paper
defines, checked against hand computations on a TinyCNN."""

import copy

import pytest
import torch
import torch.nn.functional as F

from methods._common import unpack
from methods._paired import PairedBatches, neggrad_plus_loss
from methods._saliency import gradient_saliency, saliency_mask
from methods.ga import GA
from methods.ng import NG
from methods.scrub import SCRUB, decay_milestones
from methods.sharp_minmax import SharpMinMax, masked_optimizer, masked_step, minmax_iteration
from tests.methods.toy import fitted_tiny_cnn, random_loaders, snapshot


def _loaders(sizes=(96, 32, 32), batch_size=32, dict_batches=False):
    return random_loaders(sizes, data_seed=11, dict_batches=dict_batches, batch_size=batch_size)


@pytest.fixture(scope="module")
def net():
    return fitted_tiny_cnn(_loaders()[0], epochs=2)


def _forget_ce(net, loader):
    with torch.no_grad():
        return sum(F.cross_entropy(net(x), y, reduction="sum").item() for x, y in map(unpack, loader)) / len(
            loader.dataset
        )


# ---------------------------------------------------------------------------------------------- ga


def test_ga_increases_the_forget_loss(net):
    loaders = _loaders()
    before = _forget_ce(net.eval(), loaders[1])
    method = GA(seed=0, epochs=5, lr=0.5, max_update=0.0, augment=True)
    m = copy.deepcopy(net)
    method.run(m, *loaders)
    assert _forget_ce(m, loaders[1]) > before + 0.1
    assert method.log_["forget_loss"][-1] > method.log_["forget_loss"][0]
    plain = copy.deepcopy(net)
    GA(seed=0, epochs=5, lr=0.5, max_update=0.0, augment=False).run(plain, *loaders)
    assert not torch.allclose(snapshot(plain)["fc.weight"], snapshot(m)["fc.weight"]), "augment does something"


# ---------------------------------------------------------------------------------------------- pairing, ng


def test_paired_batches_reshuffle_the_forget_loader_on_every_pass():
    retain, forget, _ = _loaders(sizes=(192, 64, 32), batch_size=32)  # 6 retain, 2 forget batches
    pairs = PairedBatches(retain, forget, torch.Generator().manual_seed(0))
    assert len(pairs) == 6
    epochs = [list(pairs) for _ in range(2)]
    for epoch in epochs:  # each epoch is one pass over R
        assert sorted(torch.cat([y for (_, y), _ in epoch]).tolist()) == sorted(retain.dataset.tensors[1].tolist())
    forget_batches = [xf for epoch in epochs for _, (xf, _) in epoch]  # 6 passes over F of 2 batches
    passes = [torch.cat(forget_batches[i : i + 2]) for i in range(0, 12, 2)]
    for p in passes:  # every pass is all of F ...
        assert torch.equal(p.sum(0), forget.dataset.tensors[0].sum(0)) or torch.allclose(
            p.sum(0), forget.dataset.tensors[0].sum(0), atol=1e-4
        )
    assert not all(torch.equal(passes[0], p) for p in passes[1:]), "... in a new order (itertools.cycle replays)"
    assert len(list(PairedBatches(retain, forget, torch.Generator().manual_seed(0), epoch_fraction=0.5))) == 3


def test_neggrad_plus_loss_is_the_hand_formula(net):
    torch.manual_seed(0)
    xr, yr, xf, yf = (
        torch.randn(8, 3, 32, 32),
        torch.randint(0, 10, (8,)),
        torch.randn(5, 3, 32, 32),
        torch.randint(0, 10, (5,)),
    )
    net = copy.deepcopy(net).eval()
    alpha = 0.7
    hand = (
        alpha * -F.log_softmax(net(xr), 1)[torch.arange(8), yr].mean()
        - (1 - alpha) * -F.log_softmax(net(xf), 1)[torch.arange(5), yf].mean()
    )
    assert torch.allclose(neggrad_plus_loss(net, (xr, yr), (xf, yf), alpha), hand)


def test_ng_takes_plain_sgd_steps_on_the_neggrad_plus_loss(net):
    loaders = _loaders(sizes=(32, 32, 32))  # one retain and one forget batch: one step
    (xr, yr), (xf, yf) = unpack(next(iter(loaders[0]))), unpack(next(iter(loaders[1])))
    lr, alpha = 0.1, 0.8
    hand = copy.deepcopy(net).train()
    loss = alpha * F.cross_entropy(hand(xr), yr) - (1 - alpha) * F.cross_entropy(hand(xf), yf)
    grads = torch.autograd.grad(loss, list(hand.parameters()))
    expected = [p.detach() - lr * g for p, g in zip(hand.parameters(), grads)]
    m = copy.deepcopy(net)
    NG(seed=0, epochs=1, lr=lr, alpha=alpha, momentum=0.0, weight_decay=0.0, max_update=0.0, augment=False).run(
        m, *loaders
    )
    for p, e in zip(m.parameters(), expected):
        assert torch.allclose(p, e, atol=1e-6)


def test_ng_checks_alpha():
    with pytest.raises(ValueError, match="alpha"):
        NG(alpha=1.5)


# ---------------------------------------------------------------------------------------------- scrub


@pytest.mark.parametrize("epochs, msteps, n_max", [(3, 2, 2), (3, 0, 0), (2, 5, 2), (1, 1, 1)])
def test_scrub_runs_exactly_msteps_max_passes(net, epochs, msteps, n_max):
    method = SCRUB(seed=0, epochs=epochs, msteps=msteps)
    method.run(copy.deepcopy(net), *_loaders())
    log = method.log_
    assert (log["max_passes"], log["min_passes"]) == (n_max, epochs)
    assert len(log["max_loss"]) == n_max and len(log["min_loss"]) == epochs
    assert all(v <= 0 for v in log["max_loss"]), "the max pass minimises -KL"


def test_scrub_max_pass_moves_the_student_away_from_the_teacher(net):
    from methods._losses import kl_to_teacher

    retain, forget, val = _loaders()
    x, _ = unpack(next(iter(forget)))
    kl = {}
    for msteps in (0, 2):  # the min pass has zero weights: only the max passes (and weight decay) act
        m = copy.deepcopy(net)
        SCRUB(seed=0, epochs=2, msteps=msteps, lr=0.5, ce_weight=0.0, kl_weight=0.0, max_update=0.0).run(
            m, retain, forget, val
        )
        with torch.no_grad():
            kl[msteps] = float(kl_to_teacher(m(x), net.eval()(x), 4.0))
    assert kl[2] > 10 * kl[0]


def test_scrub_min_pass_is_ce_plus_kl_to_the_original_on_retain_batches(net, monkeypatch):
    """Each min pass steps on retain batches only, on ce_weight·CE + kl_weight·KL(teacher ‖ student) at T, the
    teacher the network at entry (hand computation on a retain batch, with the weights given)."""
    import methods.scrub as scrub_module
    from methods._losses import kl_to_teacher

    retain, forget, val = _loaders()
    retain_rows = {tuple(x.flatten()[:6].tolist()) for x, _ in retain.dataset}
    calls, real = [], scrub_module.train_steps

    def spy(model, batches, loss_fn, *rest):
        batches = list(batches)
        calls.append((batches, loss_fn))
        return real(model, batches, loss_fn, *rest)

    monkeypatch.setattr(scrub_module, "train_steps", spy)
    original = copy.deepcopy(net).eval()
    SCRUB(seed=0, epochs=2, msteps=1, ce_weight=0.7, kl_weight=0.3, kd_T=2.0).run(
        copy.deepcopy(net), retain, forget, val
    )
    assert len(calls) == 3, "max, min, min"
    for batches, _ in calls[1:]:
        assert all(tuple(x.flatten()[:6].tolist()) in retain_rows for b in batches for x in unpack(b)[0])
    x, y = unpack(next(iter(retain)))
    student = copy.deepcopy(net).train()
    z = student(x)
    expected = 0.7 * F.cross_entropy(z, y) + 0.3 * kl_to_teacher(z, original(x), 2.0)
    got = calls[1][1](copy.deepcopy(net).train(), x, y)
    assert torch.allclose(got, expected, atol=1e-6), (float(got), float(expected))


def test_scrub_lr_decay_follows_scrubs_adjust_learning_rate(net):
    method = SCRUB(seed=0, epochs=4, msteps=1, lr=1e-3, lr_decay_epochs="1 3")
    method.run(copy.deepcopy(net), *_loaders())
    assert method.log_["lr"] == pytest.approx([1e-3, 1e-4, 1e-4, 1e-5])  # 1-based epoch e > milestone
    assert SCRUB(seed=0).params.lr_decay_epochs == "3 5 9"  # the large-scale notebook's


def test_scrub_decay_milestones_and_checks():
    assert decay_milestones("3,5 9") == (3, 5, 9) and decay_milestones(2) == (2,) and decay_milestones(None) == ()
    assert decay_milestones([9, 3]) == (3, 9)
    with pytest.raises(ValueError, match="lr_decay_epochs"):
        SCRUB(lr_decay_epochs="three")
    with pytest.raises(ValueError, match="schedule=constant"):
        SCRUB(lr_decay_epochs=2, schedule="cosine")
    with pytest.raises(ValueError, match="msteps"):
        SCRUB(msteps=-1)


# ---------------------------------------------------------------------------------------------- sharp_minmax


def _mask(net, loader, ratio=0.3):
    scores = gradient_saliency(net, loader, lambda m, x, y: -F.cross_entropy(m(x), y))
    return saliency_mask(scores, ratio)


def _batches(loaders):
    return unpack(next(iter(loaders[0]))), unpack(next(iter(loaders[1])))


def test_sharp_minmax_steps_change_only_their_own_weights(net):
    """AdamW with weight decay, SAM-min / SAM-max at λ 0.5: each step fully masked (the release masks only
    g1), and neither optimizer's restore undoes the other's latest step."""
    loaders = _loaders()
    m = copy.deepcopy(net).train()
    mask = _mask(m, loaders[1])
    p = SharpMinMax.make_params(lr=1e-2, weight_decay=0.1, sam_lambda=0.5, max_update=0.0)
    retain_opt = masked_optimizer(p, m, {n: ~k for n, k in mask.items()})
    forget_opt = masked_optimizer(
        SharpMinMax.make_params(lr=1e-2, weight_decay=0.1, sam_lambda=0.5, max_update=0.0, sam="max"), m, mask
    )
    (xr, yr), (xf, yf) = _batches(loaders)
    for _ in range(2):  # the second iteration starts from weights the first one moved
        w0 = snapshot(m)
        masked_step(retain_opt, lambda: 0.99 * F.cross_entropy(m(xr), yr))
        w1 = snapshot(m)
        masked_step(forget_opt, lambda: -0.01 * F.cross_entropy(m(xf), yf))
        w2 = snapshot(m)
        for n, k in mask.items():
            assert torch.equal(w1[n][k], w0[n][k]), f"the retain step moved forget weights of {n}"
            assert torch.equal(w2[n][~k], w1[n][~k]), f"the forget step moved retain weights of {n}"
        assert any(not torch.equal(w1[n][~k], w0[n][~k]) for n, k in mask.items())
        assert any(not torch.equal(w2[n][k], w1[n][k]) for n, k in mask.items())
    for opt, free in ((retain_opt, {n: ~k for n, k in mask.items()}), (forget_opt, mask)):
        for n, q in m.named_parameters():  # the moments respect the mask too
            for key in ("exp_avg", "exp_avg_sq"):
                assert not opt.state[q][key][~free[n]].any()


def _sam_grad(net, loss_fn, free, rho, lam, sign):
    """SAM/ASAM-off reference: g = g0 + sign·λ·(g1 − g0), both gradients masked to `free` (ε over own weights)."""
    params = list(net.parameters())
    g0 = [g * k for g, k in zip(torch.autograd.grad(loss_fn(), params), free)]
    norm = torch.sqrt(sum((g**2).sum() for g in g0))
    with torch.no_grad():
        for q, g in zip(params, g0):
            q.add_(rho * g / norm)
    g1 = [g * k for g, k in zip(torch.autograd.grad(loss_fn(), params), free)]
    with torch.no_grad():
        for q, g in zip(params, g0):
            q.sub_(rho * g / norm)
    return [a + sign * lam * (b - a) for a, b in zip(g0, g1)]


def test_sharp_minmax_iteration_is_a_masked_sam_min_step_then_a_masked_sam_max_step(net):
    loaders = _loaders()
    (xr, yr), (xf, yf) = _batches(loaders)
    mask = _mask(net, loaders[1])
    lr, rho, lam, alpha = 0.05, 0.05, 0.5, 0.9
    common = dict(
        optimizer="sgd", momentum=0.0, weight_decay=0.0, max_update=0.0, lr=lr, rho=rho, adaptive=False, sam_lambda=lam
    )
    m = copy.deepcopy(net).train()
    retain_opt = masked_optimizer(SharpMinMax.make_params(sam="min", **common), m, {n: ~k for n, k in mask.items()})
    forget_opt = masked_optimizer(SharpMinMax.make_params(sam="max", **common), m, mask)
    minmax_iteration(m, retain_opt, forget_opt, (xr, yr), (xf, yf), alpha)

    hand = copy.deepcopy(net).train()
    names = [n for n, _ in hand.named_parameters()]
    g = _sam_grad(hand, lambda: alpha * F.cross_entropy(hand(xr), yr), [~mask[n] for n in names], rho, lam, +1)
    with torch.no_grad():
        for q, d in zip(hand.parameters(), g):
            q.sub_(lr * d)
    g = _sam_grad(hand, lambda: -(1 - alpha) * F.cross_entropy(hand(xf), yf), [mask[n] for n in names], rho, lam, -1)
    with torch.no_grad():
        for q, d in zip(hand.parameters(), g):
            q.sub_(lr * d)
    for (n, q), e in zip(m.named_parameters(), hand.parameters()):
        assert torch.allclose(q, e, atol=1e-6), n
    assert not torch.allclose(snapshot(m)["fc.weight"], dict(net.named_parameters())["fc.weight"])


def test_sharp_minmax_run_logs_its_mask_and_checks(net):
    method = SharpMinMax(seed=0, mask_ratio=0.3, epoch_fraction=0.5)  # 3 retain batches: 2 iterations
    m = copy.deepcopy(net)
    method.run(m, *_loaders(dict_batches=True))
    assert method.log_["mask_fraction"] == pytest.approx(0.3, abs=1e-3)
    assert len(method.log_["retain_loss"]) == 1 and method.log_["iterations"] == 2 and not m.training
    with pytest.raises(ValueError, match="mask_ratio"):
        SharpMinMax(mask_ratio=1.0)
    with pytest.raises(ValueError, match="forget_sam"):
        SharpMinMax(forget_sam="both")
