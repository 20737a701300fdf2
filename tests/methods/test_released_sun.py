"""`sun` as released (DeepUnlearn's port kgltop7): the draws, the absolute noise, what trains, the phases.

Spies on the method's module-level names record what a run does; torchvision's ResNet-18 where the
layout matters (22 non-BatchNorm tensors, 40 BatchNorm ones), TinyCNN where it does not.
"""

import copy
import math

import pytest
import torch
from torchvision.models import resnet18

from data.archs.tiny_cnn import TinyCNN
from methods import sun
from methods._train_recipe import Recipe
from methods.sun import Sun, add_absolute_noise_, batchnorm_split
from tests.methods.toy import random_loaders

FINE_LRS = [2e-4, 2e-4, 2e-4, 1e-3]


def _resnet():
    torch.manual_seed(0)
    return resnet18(num_classes=10)


def _run(net, seed=0, epochs=30, sizes=(64, 16, 16), **overrides):
    method = Sun(seed=seed, **overrides)
    method.configure(Recipe(epochs=epochs, lr=0.05, batch_size=16))
    method.run(net, *random_loaders(sizes, data_seed=0, batch_size=16))
    return method


def _no_training(monkeypatch):
    """Replace the training of every epoch by nothing, recording each epoch's trained tensors."""
    trained = []
    monkeypatch.setattr(Sun, "epoch", lambda self, net, stream, steps, lr, names=None: trained.append(names) or 0.0)
    return trained


def test_pool_is_the_non_batchnorm_tensors_by_type():
    pool, bn = batchnorm_split(_resnet())
    assert len(pool) == 22 and {"fc.weight", "fc.bias", "layer2.0.downsample.0.weight"} <= set(pool)
    assert len(bn) == 40 and "layer2.0.downsample.1.weight" in bn  # the release's name test would miss it


def test_draws_nine_per_epoch_and_never_renoises_an_earlier_draw(monkeypatch):
    calls, noised_calls = [], []
    real_draw = sun.random_layers
    monkeypatch.setattr(
        sun, "random_layers", lambda names, k, g: calls.append((list(names), k, real_draw(names, k, g))) or calls[-1][2]
    )
    monkeypatch.setattr(sun, "add_absolute_noise_", lambda net, names, std, g: noised_calls.append((list(names), std)))
    trained = _no_training(monkeypatch)
    pool, bn = batchnorm_split(_resnet())
    redrawn = skipped = 0
    for seed in range(4):
        calls.clear(), noised_calls.clear(), trained.clear()
        log = _run(_resnet(), seed=seed).log_
        assert len(log["drawn"]) == 5 and len(trained) == 9 and trained[5:] == [None] * 4
        draws = [c for c in calls if c[0] == pool]
        picks = [c for c in calls if c[0] != pool]
        assert [c[1] for c in draws] == [9] * 5 and [c[1] for c in picks] == [6] * 4
        assert [d[2] for d in draws] == log["drawn"]
        assert all(len(set(d)) == 9 and set(d) <= set(pool) for d in log["drawn"])
        assert log["noised"][0] == [] and len(noised_calls) == 4 and all(std == 0.04 for _, std in noised_calls)
        for e in range(1, 5):
            earlier = set().union(*log["drawn"][:e])
            assert picks[e - 1][0] == log["drawn"][e], "the 6 noised are picked among the epoch's 9"
            assert log["noised"][e] == noised_calls[e - 1][0] == [n for n in picks[e - 1][2] if n not in earlier]
            redrawn += bool(earlier & set(log["drawn"][e]))
            skipped += len(picks[e - 1][2]) - len(log["noised"][e])
        assert [sorted(t) for t in trained[:5]] == [sorted(d + bn) for d in log["drawn"]]
    assert redrawn and skipped, "as released: tensors may be drawn again, but are not noised again"


def test_noise_is_absolute(monkeypatch):
    layer = torch.nn.Linear(1000, 1000)
    with torch.no_grad():
        layer.weight.mul_(50.0)  # a relative σ would scale with the weights
    before, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    add_absolute_noise_(layer, ["weight"], 0.04, torch.Generator().manual_seed(0))
    delta = layer.weight.detach() - before
    assert abs(delta.std().item() - 0.04) < 0.001 and abs(delta.mean().item()) < 0.001
    assert torch.equal(layer.bias, bias), "only the named tensors move"

    deltas = []
    real = sun.add_absolute_noise_

    def spy(net, names, std, g):
        params = dict(net.named_parameters())
        old = {n: params[n].detach().clone() for n in names}
        real(net, names, std, g)
        deltas.extend(params[n].detach() - old[n] for n in names if old[n].numel() >= 100_000)

    monkeypatch.setattr(sun, "add_absolute_noise_", spy)
    _no_training(monkeypatch)
    net = _resnet()
    with torch.no_grad():
        for q in net.parameters():
            q.mul_(10.0)
    for seed in range(3):
        _run(copy.deepcopy(net), seed=seed)
    assert deltas and all(abs(d.std().item() - 0.04) < 0.002 for d in deltas)


def test_only_the_draw_and_every_batchnorm_parameter_train(monkeypatch):
    records = []
    real = Sun.epoch

    def spy(self, net, stream, steps, lr, names=None):
        before = {n: q.detach().clone() for n, q in net.named_parameters()}
        loss = real(self, net, stream, steps, lr, names)
        records.append((names, {n: not torch.equal(before[n], q) for n, q in net.named_parameters()}))
        return loss

    monkeypatch.setattr(Sun, "epoch", spy)
    net = _resnet()
    pool, bn = batchnorm_split(net)
    log = _run(net, sizes=(16, 16, 16)).log_  # one step per epoch
    assert len(records) == 9
    for (names, changed), drawn in zip(records[:5], log["drawn"]):
        assert sorted(names) == sorted(drawn + bn)
        assert all(changed[n] for n in drawn + bn), "the drawn tensors and every BN parameter train"
        assert not any(changed[n] for n in pool if n not in drawn), "every other tensor is bit-identical"
    for names, changed in records[5:]:
        assert names is None and all(changed.values()), "the fine-tuning epochs train everything"


def test_fc_is_reinitialised_with_its_own_initialiser(monkeypatch):
    _no_training(monkeypatch)
    monkeypatch.setattr(sun, "add_absolute_noise_", lambda *a: None)
    net = _resnet()
    with torch.no_grad():
        net.fc.weight.fill_(7.0), net.fc.bias.fill_(7.0)
    base = copy.deepcopy(net)
    log = _run(net).log_
    assert log["reset"] == ["fc"]
    bound = 1 / math.sqrt(512)  # nn.Linear.reset_parameters: kaiming_uniform(a=√5), bias U(±1/√fan_in)
    assert net.fc.weight.abs().max() <= bound and net.fc.bias.abs().max() <= bound
    assert abs(net.fc.weight.std().item() - bound / math.sqrt(3)) < 0.1 * bound
    after = dict(net.named_parameters())
    assert all(torch.equal(q, after[n]) for n, q in base.named_parameters() if not n.startswith("fc."))


@pytest.mark.parametrize("epochs, n_retain, steps", [(10, 192, 4), (1, 64, 1)], ids=["E10", "one-step"])
def test_phase_lrs_optimizers_and_steps(monkeypatch, epochs, n_retain, steps):
    seen = []
    real = sun.train_steps

    def spy(net, batches, loss_fn, opt, sched=None, **kw):
        batches = list(batches)
        group = opt.param_groups[0]
        start = group["lr"]
        loss = real(net, batches, loss_fn, opt, sched, **kw)
        seen.append(
            {
                "n": len(batches),
                "lr": start,
                "end": group["lr"],
                "opt": opt,
                "momentum": group["momentum"],
                "wd": group["weight_decay"],
                "sgd": isinstance(opt, torch.optim.SGD),
            }
        )
        return loss

    monkeypatch.setattr(sun, "train_steps", spy)
    torch.manual_seed(0)
    _run(TinyCNN(), epochs=epochs, sizes=(n_retain, 16, 16), time_factor=1.0)  # the release
    assert [s["n"] for s in seen] == [steps] * 9, "every epoch is round(E/30 · batches) steps, 9 epochs"
    assert [s["lr"] for s in seen] == [2e-4] * 5 + FINE_LRS
    assert all(s["end"] == s["lr"] for s in seen), "constant lr within an epoch"
    assert all(s["sgd"] and s["momentum"] == 0.9 and s["wd"] == 5e-4 for s in seen)
    assert len({id(s["opt"]) for s in seen}) == 9, "a fresh optimizer every epoch"
