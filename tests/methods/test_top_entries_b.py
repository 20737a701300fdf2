"""The distinctive mechanics of `amnesiacs`, `sun` and `forget` (NeurIPS 2023 entries) and of `_partial`.

Toy setting of tests/methods/toy.py (TinyCNN, random loaders); layer selection is also checked on the
cpu preset's SmallResNet and torchvision's ResNet-18, whose layers have other names.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader, Dataset
from torchvision.models import resnet18

import methods
import methods.amnesiacs as amnesiacs_module
import methods.forget as forget_module
from data.archs.airbench import AirbenchNet
from data.archs.small_resnet import SmallResNet
from data.archs.tiny_cnn import TinyCNN
from methods._iterative import TrainParams
from methods._partial import (PartialEpochs, first_conv, fresh_layer_optimizer, last_linear, layer_masks,
                              layer_parameters, only_trainable, random_layers, weight_layers)
from tests.methods.toy import fitted_tiny_cnn, random_loaders


def _loaders():
    return random_loaders((96, 32, 64), data_seed=7, shuffle_seed=0)


@pytest.fixture(scope="module")
def base():
    return fitted_tiny_cnn(_loaders()[0])


class _Counted(Dataset):
    """A dataset that appends its tag to a shared list on every item read."""

    def __init__(self, dataset, tag, log):
        self.dataset, self.tag, self.log = dataset, tag, log

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        self.log.append(self.tag)
        return self.dataset[i]


def _counted_loaders(log):
    return tuple(DataLoader(_Counted(loader.dataset, tag, log), batch_size=loader.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(0))
                 for loader, tag in zip(_loaders(), ("retain", "forget", "val")))


def _changed(a: torch.nn.Module, b: torch.nn.Module) -> set[str]:
    """Names of the state_dict entries (parameters and buffers) that differ between a and b."""
    sb = b.state_dict()
    return {k for k, v in a.state_dict().items() if not torch.equal(v, sb[k])}


# ---------------------------------------------------------------------------------------------
# _partial: layers by type, on four architectures

@pytest.mark.parametrize("net, conv, fc, n_layers", [
    (TinyCNN(), "features.0", "fc", 3),
    (SmallResNet(), "stem.0", "fc", 10),
    (resnet18(num_classes=10), "conv1", "fc", 21),
    (AirbenchNet(), "whiten.0", "fc", 8),
], ids=["tiny_cnn", "small_resnet", "resnet18", "airbench"])
def test_layers_are_chosen_by_type_on_every_architecture(net, conv, fc, n_layers):
    modules = dict(net.named_modules())
    assert first_conv(net) == conv and last_linear(net) == fc
    layers = weight_layers(net, batchnorm=False)
    assert len(layers) == n_layers
    assert all(isinstance(modules[n], (torch.nn.Conv2d, torch.nn.Linear)) for n in layers)
    with_bn = weight_layers(net)
    assert set(with_bn) - set(layers) and all(isinstance(modules[n], _BatchNorm) for n in set(with_bn) - set(layers))


def test_random_layers_follow_the_generator_and_keep_order():
    names = [f"l{i}" for i in range(10)]
    draws = {tuple(random_layers(names, 4, torch.Generator().manual_seed(s))) for s in range(20)}
    assert len(draws) > 10
    assert all(list(d) == sorted(d, key=names.index) and len(set(d)) == 4 for d in draws)
    assert random_layers(names, 4, torch.Generator().manual_seed(3)) == \
        random_layers(names, 4, torch.Generator().manual_seed(3))


def test_only_trainable_freezes_the_rest_and_restores_flags(base):
    net = copy.deepcopy(base)
    params = layer_parameters(net, ["fc"])
    assert params == [net.fc.weight, net.fc.bias]
    with only_trainable(net, params):
        assert [p.requires_grad for p in net.parameters()] == [id(p) in map(id, params) for p in net.parameters()]
    assert all(p.requires_grad for p in net.parameters())
    masks = layer_masks(net, ["features.0"])
    assert bool(masks["features.0.weight"].all()) and not any(bool(m.any()) for k, m in masks.items()
                                                               if not k.startswith("features.0."))


def test_partial_epochs_cut_each_pass_and_reshuffle():
    loader = _loaders()[0]   # 96 images, batches of 32
    part = PartialEpochs(loader, 0.5)
    assert len(part) == 2 and len(list(part)) == 2
    first = [torch.cat([x for x, _ in part]) for _ in range(2)]
    assert not torch.equal(first[0], first[1]), "every pass must be a fresh pass over the loader"
    assert len(PartialEpochs(loader, 1e-6)) == 1
    longer = PartialEpochs(loader, 0.5, min_steps=7)   # a tiny data set: several fresh passes
    assert len(longer) == 7 and len(list(longer)) == 7
    with pytest.raises(ValueError):
        PartialEpochs(loader, 0.0)


def _ref(w):
    return float(w.norm()) if w.ndim >= 2 else max(float(w.norm()), w.numel() ** 0.5)


def test_fresh_layers_get_their_own_step_cap(base):
    net = copy.deepcopy(base)
    before = {n: q.detach().clone() for n, q in net.named_parameters()}
    p = TrainParams(lr=1e4, momentum=0.0, weight_decay=0.0, max_update=1e-3)
    opt = fresh_layer_optimizer(p, net, layer_parameters(net, ["fc"]), 0.05)
    x, y = next(iter(_loaders()[0]))
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    opt.step()
    assert opt.steps == 1 and opt.capped_steps == 1
    for n, q in net.named_parameters():
        moved = float((q.detach() - before[n]).norm()) / _ref(before[n])
        if n.startswith("fc."):
            assert 0.01 < moved <= 0.05 * (1 + 1e-4), (n, moved)   # the fresh cap, not the trained one
        else:
            assert moved <= 1e-3 * (1 + 1e-4), (n, moved)


# ---------------------------------------------------------------------------------------------
# amnesiacs

def test_amnesiacs_resets_exactly_the_first_conv_and_the_fc(base):
    net = copy.deepcopy(base)
    cls = methods.get_method("amnesiacs")
    names = cls.reset_layers(net, torch.Generator().manual_seed(0))
    assert names == ["features.0", "fc"]
    assert _changed(net, base) == {"features.0.weight", "fc.weight", "fc.bias"}
    big = SmallResNet()
    before = copy.deepcopy(big)
    assert cls.reset_layers(big, torch.Generator().manual_seed(0)) == ["stem.0", "fc"]
    assert _changed(big, before) == {"stem.0.weight", "fc.weight", "fc.bias"}


def test_amnesiacs_warmup_reads_only_the_validation_set_before_the_retain_phase(base):
    log = []
    cls = methods.get_method("amnesiacs")
    method = cls(seed=1, warmup_epochs=2, epochs=1, epoch_fraction=1.0, min_steps=0)
    method.run(copy.deepcopy(base), *_counted_loaders(log))
    n_val, n_retain = 64, 96
    assert log == ["val"] * (2 * n_val) + ["retain"] * n_retain, "warm-up: validation only; forget never read"
    assert len(method.log_["warmup_loss"]) == 2 and len(method.log_["retain_loss"]) == 1
    log.clear()
    cls(seed=1, warmup_epochs=0, epochs=1, epoch_fraction=1.0, min_steps=0).run(copy.deepcopy(base),
                                                                              *_counted_loaders(log))
    assert log == ["retain"] * n_retain


def test_amnesiacs_warmup_distils_the_original_with_kl(base, monkeypatch):
    calls = []
    original = copy.deepcopy(base).eval()
    real = amnesiacs_module.kl_to_teacher

    def spy(student, teacher, temperature=1.0):
        calls.append((teacher.detach().clone(), temperature))
        return real(student, teacher, temperature)

    monkeypatch.setattr(amnesiacs_module, "kl_to_teacher", spy)
    val = _loaders()[2]
    cls = methods.get_method("amnesiacs")
    cls(seed=1, warmup_epochs=1, epochs=1, epoch_fraction=1.0, min_steps=0, kd_T=2.0).run(copy.deepcopy(base),
                                                                                        *_loaders())
    assert len(calls) == len(val) and all(t == 2.0 for _, t in calls)
    with torch.no_grad():
        reference = original(torch.cat([x for x, _ in DataLoader(val.dataset, batch_size=len(val.dataset))]))
    for teacher_logits, _ in calls:   # each batch's targets are the ORIGINAL model's logits on validation images
        assert any(torch.allclose(teacher_logits[0], r, atol=1e-5) for r in reference)


def test_amnesiacs_retain_loss_is_ce_plus_symmetric_kl():
    g = torch.Generator().manual_seed(0)
    z, t = torch.randn(6, 10, generator=g, requires_grad=True), torch.randn(6, 10, generator=g) * 3
    y = torch.randint(0, 10, (6,), generator=g)
    lz, lt = F.log_softmax(z, 1), F.log_softmax(t, 1)
    kl_zt = (lz.exp() * (lz - lt)).sum(1).mean()
    kl_tz = (lt.exp() * (lt - lz)).sum(1).mean()
    expected = F.cross_entropy(z, y) + 0.7 * 0.5 * (kl_zt + kl_tz)
    got = amnesiacs_module.amnesiacs_retain_loss(z, t, y, 0.7)
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, F.cross_entropy(z, y) + 0.7 * kl_tz, atol=1e-4), "one-sided KL would pass"
    assert torch.allclose(amnesiacs_module.amnesiacs_retain_loss(z, z.detach(), y, 5.0), F.cross_entropy(z, y))


def test_amnesiacs_retain_phase_uses_that_loss_on_retain_batches(base, monkeypatch):
    calls = []
    real = amnesiacs_module.amnesiacs_retain_loss

    def spy(logits, teacher_logits, y, kl_weight):
        calls.append(kl_weight)
        return real(logits, teacher_logits, y, kl_weight)

    monkeypatch.setattr(amnesiacs_module, "amnesiacs_retain_loss", spy)
    retain = _loaders()[0]
    cls = methods.get_method("amnesiacs")
    cls(seed=1, warmup_epochs=1, epochs=2, epoch_fraction=1.0, min_steps=0, kl_weight=0.5).run(copy.deepcopy(base),
                                                                                             *_loaders())
    assert calls == [0.5] * (2 * len(retain))


# ---------------------------------------------------------------------------------------------
# sun

def test_sun_never_draws_batchnorm_and_draws_differ(base):
    method = methods.get_method("sun")(layer_fraction=0.5)
    net = SmallResNet()
    modules = dict(net.named_modules())
    draws = [method.draw_layers(net, torch.Generator().manual_seed(s)) for s in range(30)]
    assert all(len(d) == 5 for d in draws)
    assert not any(isinstance(modules[n], _BatchNorm) for d in draws for n in d)
    assert len({tuple(d) for d in draws}) > 10
    assert set().union(*draws) == set(weight_layers(net, batchnorm=False))


@pytest.mark.parametrize("head", [None, "fc"])
def test_sun_noised_epoch_changes_only_the_drawn_layers(base, head):
    net = copy.deepcopy(base)
    method = methods.get_method("sun")(layer_fraction=0.34, noise_scale=0.5, lr=0.05)
    out = method.noised_epoch(net, _loaders()[0], torch.Generator().manual_seed(4), head)
    assert len(out["noised"]) == 1
    trained = set(out["trained"])
    assert trained == set(out["noised"]) | ({head} if head else set())
    params = {n for n, _ in net.named_parameters()}
    changed = _changed(net, base) & params
    assert changed and all(n.rpartition(".")[0] in trained for n in changed), changed
    assert {n for n in params if n.rpartition(".")[0] in trained} == changed
    assert all(p.requires_grad for p in net.parameters()), "the requires_grad flags must be restored"


def test_sun_noise_has_the_relative_size_and_spares_the_other_layers(base):
    net = copy.deepcopy(base)
    method = methods.get_method("sun")(layer_fraction=1.0, noise_scale=0.5, lr=1e-12, train_fc=False)
    method.noised_epoch(net, _loaders()[0], torch.Generator().manual_seed(4))
    old = dict(base.named_parameters())
    for name, p in net.named_parameters():
        if p.ndim >= 2:   # noise std = 0.5 x the tensor's std
            ratio = float((p - old[name]).detach().std() / old[name].detach().std())
            assert 0.35 < ratio < 0.65, (name, ratio)
        elif name.startswith("fc") or "features.1" in name or "features.4" in name:
            assert torch.allclose(p, old[name], atol=1e-9), name   # biases and BN: no noise


def test_sun_resets_the_fc_and_its_log(base):
    net = copy.deepcopy(base)
    method = methods.get_method("sun")(seed=3, noised_epochs=2, epochs=1, epoch_fraction=0.34, min_steps=0)
    method.run(net, *_loaders())
    assert method.log_["reset"] == ["fc"]
    assert len(method.log_["noised_epochs"]) == 2
    assert all("fc" in e["trained"] and not any(n.startswith(("features.1", "features.4")) for n in e["noised"])
               for e in method.log_["noised_epochs"])


# ---------------------------------------------------------------------------------------------
# forget

def test_forget_resets_a_random_layer_subset_that_depends_on_the_seed():
    cls = methods.get_method("forget")
    net = SmallResNet()
    modules = dict(net.named_modules())
    draws = {tuple(cls(reinit_fraction=0.2).draw_layers(net, torch.Generator().manual_seed(s))) for s in range(20)}
    assert len(draws) > 5 and all(len(d) == 2 for d in draws)
    assert not any(isinstance(modules[n], _BatchNorm) for d in draws for n in d)


def test_forget_run_resets_then_distils_with_mse_to_the_frozen_original(base, monkeypatch):
    calls = []
    original = copy.deepcopy(base).eval()
    real = forget_module.output_mse

    def spy(logits, teacher_logits):
        calls.append(teacher_logits.detach().clone())
        return real(logits, teacher_logits)

    monkeypatch.setattr(forget_module, "output_mse", spy)
    log = []
    cls = methods.get_method("forget")
    runs = []
    for seed in (1, 2, 3, 4):
        calls.clear()
        method = cls(seed=seed, cycles=2, reinit_fraction=0.34, epoch_fraction=1.0, min_steps=0)
        net = copy.deepcopy(base)
        method.run(net, *_counted_loaders(log))
        runs.append(tuple(map(tuple, method.log_["reset"])))
        assert len(method.log_["reset"]) == 2 and all(len(r) == 1 for r in method.log_["reset"])
        assert len(calls) == 2 * 3    # two cycles of three retain batches
    assert set(log) == {"retain"}, "forget reads only the retain images"
    assert len(set(runs)) > 1, "the re-initialised layers must depend on the seed"
    # the targets are the frozen original's logits (BN in eval mode), never the student's
    retain = _loaders()[0]
    with torch.no_grad():
        reference = original(torch.cat([x for x, _ in DataLoader(retain.dataset, batch_size=len(retain.dataset))]))
    for t in calls:
        assert all(any(torch.allclose(row, r, atol=1e-5) for r in reference) for row in t[:3])


def test_forget_output_mse_is_the_mean_squared_logit_difference():
    a, b = torch.randn(4, 10, requires_grad=True), torch.randn(4, 10, requires_grad=True)
    loss = forget_module.output_mse(a, b)
    assert torch.allclose(loss, ((a - b) ** 2).mean())
    loss.backward()
    assert b.grad is None, "the original's logits are a target"
