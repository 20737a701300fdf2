"""`forget` as its write-up describes it: the re-initialisation pool, the draws, the loss, the cycles.

Spies on the method's module-level names record what a run does; torchvision's ResNet-18 (and a
bottleneck ResNet-50) and the cpu preset's SmallResNet where the layout matters.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet18, resnet50

from data.archs.small_resnet import SmallResNet
from data.archs.tiny_cnn import TinyCNN
from methods import forget
from methods._teacher import Teacher
from methods._train_recipe import Recipe
from methods.forget import Forget, noised_mse, reinit_pool
from tests.methods.toy import random_loaders


def _run(net, seed=0, epochs=30, sizes=(64, 16, 16), loaders=None, **overrides):
    method = Forget(seed=seed, **overrides)
    method.configure(Recipe(epochs=epochs, lr=0.05, batch_size=16))
    method.run(net, *(loaders or random_loaders(sizes, data_seed=0, batch_size=16)))
    return method


def _small():
    torch.manual_seed(0)
    return SmallResNet()


def test_pool_excludes_fc_and_projection_shortcuts():
    pool = reinit_pool(resnet18(num_classes=10))
    assert pool == ["conv1"] + [f"layer{i}.{b}.conv{c}" for i in range(1, 5) for b in range(2) for c in (1, 2)]
    assert reinit_pool(SmallResNet()) == ["stem.0"] + [f"layer{i}.conv{c}" for i in range(1, 4) for c in (1, 2)]
    deep = reinit_pool(resnet50(num_classes=10))  # bottlenecks: their 1x1 main-branch convs stay in the pool
    assert len(deep) == 49 and "layer1.0.conv1" in deep and "layer1.0.conv3" in deep
    assert not any("downsample" in n or n == "fc" for n in deep)


def test_six_draws_with_replacement_per_cycle_from_the_seed(monkeypatch):
    monkeypatch.setattr(forget, "train_steps", lambda *a, **k: 0.0)
    resets = []
    real = forget.reinit_modules
    monkeypatch.setattr(
        forget, "reinit_modules", lambda net, names, g: resets.append(list(names)) or real(net, names, g)
    )
    pool = reinit_pool(_small())
    duplicates = 0
    for seed in range(3):
        resets.clear()
        log = _run(_small(), seed=seed).log_
        g = torch.Generator().manual_seed(seed)  # hand replay: a draw, then reinit_modules' one seed, per cycle
        replay = []
        for _ in range(3):
            replay.append([pool[i] for i in torch.randint(len(pool), (6,), generator=g).tolist()])
            torch.randint(0, 2**62, (1,), generator=g)
        assert log["drawn"] == replay
        assert resets == [sorted(set(d), key=pool.index) for d in replay], "each drawn layer is reset once"
        duplicates += sum(len(set(d)) < 6 for d in replay)
    assert duplicates, "draws are with replacement"
    assert _run(_small(), seed=5).log_["drawn"] == _run(_small(), seed=5).log_["drawn"]


def test_a_cycle_resets_its_layers_with_their_own_initialiser(monkeypatch):
    monkeypatch.setattr(forget, "train_steps", lambda *a, **k: 0.0)
    net = _small()
    with torch.no_grad():
        for q in net.parameters():
            q.fill_(3.0)
    log = _run(net, cycle_epochs="1").log_
    drawn, params = set(log["drawn"][0]), dict(net.named_parameters())
    for name, q in params.items():
        layer = name.rpartition(".")[0]
        assert (layer in drawn) == (not torch.all(q == 3.0).item()), name


def test_noised_mse_matches_a_hand_computation():
    torch.manual_seed(0)
    net = TinyCNN()
    teacher = Teacher(net)
    with torch.no_grad():
        net.fc.weight.add_(0.5)
    x = torch.randn(8, 3, 4, 4)  # small images: the pooling does not average the noise away
    loss = noised_mse(net, teacher, x, 0.5, torch.Generator().manual_seed(4))  # a σ that shows in the outputs
    xn = x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(loss, F.mse_loss(net(xn), teacher(xn)), rtol=1e-6, atol=0)
    assert not torch.allclose(loss, F.mse_loss(net(xn), teacher(x)), rtol=1e-3), "f0 sees the same noised images"
    assert not torch.allclose(loss, F.mse_loss(net(x), teacher(x)), rtol=1e-3), "the images carry the noise"
    loss.backward()
    with torch.no_grad():
        for q in net.parameters():
            q.sub_(0.05 * q.grad)
    assert noised_mse(net, teacher, x, 0.5, torch.Generator().manual_seed(4)) < loss, "minimised, not maximised"


def test_the_loss_reads_retain_images_only_against_the_original(monkeypatch):
    seen = []
    real = forget.noised_mse

    def spy(net, teacher, x, std, g):
        seen.append((x, std, teacher.module.state_dict()))
        return real(net, teacher, x, std, g)

    monkeypatch.setattr(forget, "noised_mse", spy)
    retain, fgt, val = random_loaders((32, 16, 16), data_seed=0, batch_size=16)
    net = _small()
    original = copy.deepcopy(net).state_dict()
    _run(net, loaders=(retain, fgt, val))
    images = {tuple(r.flatten()[:8].tolist()) for r in retain.dataset.tensors[0]}
    assert seen and all(std == 0.01 for _, std, _ in seen)
    assert all(tuple(r.flatten()[:8].tolist()) in images for x, _, _ in seen for r in x)
    assert all(torch.equal(state[k], original[k]) for _, _, state in seen for k in original)

    relabelled = torch.utils.data.TensorDataset(retain.dataset.tensors[0], (retain.dataset.tensors[1] + 3) % 10)
    other = torch.utils.data.DataLoader(relabelled, batch_size=16, shuffle=True)
    a, b = _small(), _small()
    _run(a, seed=1, loaders=(retain, fgt, val)), _run(b, seed=1, loaders=(other, fgt, val))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values())), "labels unused"


@pytest.mark.parametrize(
    "overrides, lrs, cycles",
    [
        ({}, [1e-3, 1e-3, 5e-4, 1e-3, 5e-4], [0, 1, 1, 2, 2]),
        ({"cycle_epochs": "2 1 1 1"}, [1e-3, 5e-4, 1e-3, 1e-3, 1e-3], [0, 0, 1, 2, 3]),
        (
            {"cycle_epochs": "2 1 1 1", "epoch_lrs": "5e-4 1e-3 1e-3 1e-3 1e-3"},
            [5e-4, 1e-3, 1e-3, 1e-3, 1e-3],
            [0, 0, 1, 2, 3],
        ),
    ],
    ids=["1-2-2", "2-1-1-1-cosine", "2-1-1-1-released"],
)
@pytest.mark.parametrize("epochs, n_retain, steps", [(10, 96, 2), (1, 64, 1)], ids=["E10", "one-step"])
def test_cycles_epochs_steps_and_per_cycle_cosine(monkeypatch, overrides, lrs, cycles, epochs, n_retain, steps):
    seen = []
    real = forget.train_steps

    def spy(net, batches, loss_fn, opt, *a, **kw):
        batches = list(batches)
        group = opt.param_groups[0]
        seen.append(
            {
                "n": len(batches),
                "lr": group["lr"],
                "opt": opt,
                "momentum": group["momentum"],
                "wd": group["weight_decay"],
                "sgd": isinstance(opt, torch.optim.SGD),
            }
        )
        return real(net, batches, loss_fn, opt, *a, **kw)

    monkeypatch.setattr(forget, "train_steps", spy)
    torch.manual_seed(0)
    _run(TinyCNN(), epochs=epochs, sizes=(n_retain, 16, 16), **overrides)
    assert [s["n"] for s in seen] == [steps] * 5, "each epoch is round(E/30 · batches) steps"
    assert [s["lr"] for s in seen] == pytest.approx(lrs)
    ids = [id(s["opt"]) for s in seen]
    assert [sorted(set(ids), key=ids.index).index(i) for i in ids] == cycles, "a fresh optimizer per cycle"
    assert all(s["sgd"] and s["momentum"] == 0.9 and s["wd"] == 5e-4 for s in seen)
