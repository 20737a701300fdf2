"""`fanchuan` as released: a forget epoch on KL(uniform ‖ f), then 8 rounds of [the dot-product contrastive
loss MINIMISED on forget batches against detached logits of random retain batches, one epoch of CE on
the retain set], each optimizer as released, every phase's steps scaled by E/30."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import methods.fanchuan as fc
from data.splits import make_loader
from methods._train_recipe import Recipe
from tests.methods.toy import fitted_tiny_cnn, random_loaders

RETAIN_BATCH, FORGET_BATCH = 32, 8


def _loaders():
    """Retain 320 images in batches of 32 (10 batches), forget 64 in batches of 8 (8 batches), val 32."""
    retain, _, val = random_loaders((320, 64, 32), data_seed=7, shuffle_seed=0, batch_size=RETAIN_BATCH)
    g = torch.Generator().manual_seed(11)
    forget = make_loader(
        torch.randn(64, 3, 32, 32, generator=g),
        torch.randint(0, 10, (64,), generator=g),
        FORGET_BATCH,
        shuffle=True,
        seed=5,
    )
    return retain, forget, val


def _net(logit_scale=5.0):
    """A briefly fitted TinyCNN whose logits are scaled up, so the contrastive loss starts above its floor."""
    net = fitted_tiny_cnn(_loaders()[0], epochs=3)
    with torch.no_grad():
        net.fc.weight.mul_(logit_scale)
        net.fc.bias.mul_(logit_scale)
    return net


def _method(epochs_30=30, **overrides):
    """The method, its retain batches at the toy loader's 32 (the default 256 would hold the whole toy set)."""
    m = fc.Fanchuan(seed=3, **{"retain_batch_size": RETAIN_BATCH, **overrides})
    m.configure(Recipe(epochs=epochs_30, lr=0.1))
    return m


def _spy(monkeypatch, name, record):
    """Wrap `fc.<name>`: per call, record the net before, the phase's batches, the optimizer and its lr at the
    start, the net after and the result."""
    original = getattr(fc, name)

    def wrapper(net, batches, optimizer, *rest):
        batches = list(batches)
        before, lr = copy.deepcopy(net), optimizer.param_groups[0]["lr"]
        out = original(net, batches, optimizer, *rest)
        record.append(
            {
                "before": before,
                "batches": batches,
                "opt": optimizer,
                "lr": lr,
                "after": copy.deepcopy(net),
                "out": out,
                "rest": rest,
            }
        )
        return out

    monkeypatch.setattr(fc, name, wrapper)


def _flat(net):
    return torch.cat([t.detach().flatten().float() for t in net.state_dict().values()])


def _sgd(net, lr, momentum, weight_decay):
    return torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def test_kl_from_uniform_is_the_cross_entropy_to_uniform_not_kl_to_uniform():
    """KL(u ‖ p) batch mean, the release's KLDivLoss(log p, u): CE(u, p) − log C; not KL(p ‖ u) = log C − H(p)."""
    z = torch.randn(6, 10) * 3
    logp = F.log_softmax(z, dim=1)
    uniform = torch.full_like(z, 0.1)
    got = fc.kl_from_uniform(z)
    assert got == pytest.approx(float(F.kl_div(logp, uniform, reduction="batchmean")), rel=1e-6)
    assert got == pytest.approx(float(-(uniform * logp).sum(1).mean() - math.log(10)), rel=1e-6)
    kl_p_u = float((logp.exp() * (logp - math.log(0.1))).sum(1).mean())
    assert float(got) != pytest.approx(kl_p_u, rel=1e-2)


def test_stage1_is_one_sgd_step_per_forget_batch_on_cross_entropy_to_uniform(monkeypatch):
    """Replayed by hand from the weights before stage 1, on its batches: SGD lr 0.005, momentum 0.9, no weight
    decay, the loss KLDivLoss(log_softmax(f(x_u)), 1/C) (batchmean); one epoch of forget batches."""
    record = []
    _spy(monkeypatch, "uniform_pass", record)
    retain, forget, val = _loaders()
    _method().run(_net(), retain, forget, val)
    (call,) = record
    assert len(call["batches"]) == len(forget)
    assert all(len(x) == FORGET_BATCH for x, _ in call["batches"])
    replay = copy.deepcopy(call["before"]).train()
    opt = _sgd(replay, 0.005, 0.9, 0.0)
    for x, _ in call["batches"]:
        opt.zero_grad()
        z = replay(x)
        F.kl_div(F.log_softmax(z, dim=1), torch.full_like(z, 1 / z.shape[1]), reduction="batchmean").backward()
        opt.step()
    assert torch.allclose(_flat(replay), _flat(call["after"]), atol=1e-6)
    assert not torch.allclose(_flat(call["before"]), _flat(call["after"]), atol=1e-4)


def test_contrast_rounds_minimise_the_dot_contrastive_loss_against_detached_retain_logits(monkeypatch):
    """Round 1 replayed by hand: per pair (forget batch, retain batch), L = −mean_{i,j} log
    softmax_j(z_u,i·z_r,j / 1.15)
    with z the logits and z_r detached, DEscended by SGD (momentum 0.9, no weight decay) at 3e-4 annealed per step
    by a cosine to 1e-6 over all 8 rounds' steps; the pairs are one forget epoch, each with a retain batch."""
    record = []
    _spy(monkeypatch, "contrastive_round", record)
    retain, forget, val = _loaders()
    _method().run(_net(), retain, forget, val)
    assert len(record) == 8
    total = 8 * len(forget)
    first = record[0]
    assert len(first["batches"]) == len(forget)
    for (x_u, _), (x_r, _) in first["batches"]:
        assert len(x_u) == FORGET_BATCH and len(x_r) == RETAIN_BATCH
    assert first["rest"][1] == 1.15
    # each round's pairs come from a fresh shuffle of R: round 1's and round 2's retain batches differ
    assert not torch.equal(first["batches"][0][1][0], record[1]["batches"][0][1][0])
    replay = copy.deepcopy(first["before"]).train()
    opt = _sgd(replay, 3e-4, 0.9, 0.0)
    for k, ((x_u, _), (x_r, _)) in enumerate(first["batches"]):
        for group in opt.param_groups:
            group["lr"] = 1e-6 + (3e-4 - 1e-6) * 0.5 * (1 + math.cos(math.pi * k / total))
        opt.zero_grad()
        z_u = replay(x_u)
        z_r = replay(x_r).detach()
        loss = -F.log_softmax(z_u @ z_r.T / 1.15, dim=1).mean()
        loss.backward()
        opt.step()
    assert torch.allclose(_flat(replay), _flat(first["after"]), atol=1e-6)
    # the cosine runs on over the rounds: round r starts at the cosine's step r·|F|/b
    for r, call in enumerate(record):
        k = r * len(forget)
        assert call["lr"] == pytest.approx(1e-6 + (3e-4 - 1e-6) * 0.5 * (1 + math.cos(math.pi * k / total)), rel=1e-6)
    assert record[-1]["opt"].param_groups[0]["lr"] == pytest.approx(1e-6)


def test_contrastive_loss_decreases_over_the_rounds_and_stays_above_log_m(monkeypatch):
    """Minimised, the loss falls from the first round to the last; every step's loss is ≥ log m (m = 32, the
    retain batch): each forget example's similarities spread at best evenly over the retain batch."""
    record = []
    _spy(monkeypatch, "contrastive_round", record)
    retain, forget, val = _loaders()
    method = _method()
    method.run(_net(), retain, forget, val)
    per_round = method.log_["contrastive_loss"]
    assert len(per_round) == 8
    assert per_round[-1] < per_round[0] - 0.01
    assert sum(per_round[4:]) < sum(per_round[:4])
    steps = [loss for call in record for loss in call["out"]]
    assert len(steps) == 8 * len(forget)
    assert min(steps) >= math.log(RETAIN_BATCH) - 1e-5


def test_retain_rounds_are_a_full_epoch_of_ce_with_the_released_sgd(monkeypatch):
    """Round 1's retain phase replayed by hand: one epoch of retain batches, CE, SGD lr 0.004, momentum 0.9,
    weight decay 1e-2, constant; the same optimizer (its momentum) carries through all 8 rounds."""
    record = []
    _spy(monkeypatch, "retain_round", record)
    retain, forget, val = _loaders()
    _method().run(_net(), retain, forget, val)
    assert len(record) == 8
    assert len({id(call["opt"]) for call in record}) == 1
    assert all(call["opt"].param_groups[0]["lr"] == 0.004 for call in record)
    first = record[0]
    assert len(first["batches"]) == len(retain)
    seen = torch.cat([x for x, _ in first["batches"]])
    assert len(seen) == len(retain.dataset)  # an epoch: every retain image once
    assert torch.equal(seen.flatten(1).sum(1).sort().values, retain.dataset.tensors[0].flatten(1).sum(1).sort().values)
    replay = copy.deepcopy(first["before"]).train()
    opt = _sgd(replay, 0.004, 0.9, 1e-2)
    for x, y in first["batches"]:
        opt.zero_grad()
        F.cross_entropy(replay(x), y).backward()
        opt.step()
    assert torch.allclose(_flat(replay), _flat(first["after"]), atol=1e-6)


@pytest.mark.parametrize("epochs_30", [30, 15, 3, 1])
def test_steps_per_phase_follow_e_over_30(monkeypatch, epochs_30):
    """Stage 1: round(E/30·|F|/b) forget steps; each of 8 rounds the same on F plus round(E/30·|R|/b) on R (≥ 1)."""
    counts = {"uniform_pass": [], "contrastive_round": [], "retain_round": []}
    for name in counts:

        def fake(net, batches, optimizer, *rest, _name=name):
            counts[_name].append(sum(1 for _ in batches))
            return [0.0] if _name == "contrastive_round" else 0.0

        monkeypatch.setattr(fc, name, fake)
    retain, forget, val = _loaders()
    _method(epochs_30).run(_net(), retain, forget, val)
    f_steps = max(1, round(epochs_30 / 30 * len(forget)))
    r_steps = max(1, round(epochs_30 / 30 * len(retain)))
    assert counts == {"uniform_pass": [f_steps], "contrastive_round": [f_steps] * 8, "retain_round": [r_steps] * 8}


def test_a_run_where_every_phase_gets_one_step():
    retain, forget, val = _loaders()
    net = _net()
    method = _method(1)
    method.run(net, retain, forget, val)
    assert not net.training
    assert len(method.log_["contrastive_loss"]) == 8 and all(map(math.isfinite, method.log_["retain_loss"]))


def test_retain_rounds_and_pairs_draw_batches_of_256_whatever_the_loaders_batch(monkeypatch):
    """The release draws its retain batches at 256 for both the pairs and the retain rounds."""
    assert fc.Fanchuan.defaults()["retain_batch_size"] == 256
    sizes = {"pairs": set(), "retain": set()}
    real_contrast, real_retain = fc.contrastive_round, fc.retain_round

    def contrast(net, pairs, *rest):
        pairs = list(pairs)
        sizes["pairs"] |= {len(fc.unpack(r)[1]) for _, r in pairs}
        return real_contrast(net, pairs, *rest)

    def retain_round(net, batches, *rest):
        batches = list(batches)
        sizes["retain"] |= {len(fc.unpack(b)[1]) for b in batches}
        return real_retain(net, batches, *rest)

    monkeypatch.setattr(fc, "contrastive_round", contrast)
    monkeypatch.setattr(fc, "retain_round", retain_round)
    retain, forget, val = random_loaders((600, 64, 32), data_seed=7, batch_size=RETAIN_BATCH)
    m = fc.Fanchuan(seed=3, epochs=1)
    m.configure(Recipe(epochs=30, lr=0.1))
    m.run(fitted_tiny_cnn(retain), retain, forget, val)
    assert sizes == {"pairs": {256}, "retain": {256, 88}}, sizes  # 600 = 2·256 + 88; two forget batches
