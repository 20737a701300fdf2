"""`_partial`: layers chosen by type, training only some of them, partial epochs, per-group step caps.

Toy setting of tests/methods/toy.py (TinyCNN, random loaders); layer selection is also checked on the
cpu preset's SmallResNet and torchvision's ResNet-18, whose layers have other names.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision.models import resnet18

from data.archs.airbench import AirbenchNet
from data.archs.small_resnet import SmallResNet
from data.archs.tiny_cnn import TinyCNN
from methods._partial import (
    PartialEpochs,
    first_conv,
    fresh_layer_optimizer,
    last_linear,
    layer_masks,
    layer_parameters,
    only_trainable,
    random_layers,
    weight_layers,
)
from methods._train_params import TrainParams
from tests.methods.toy import fitted_tiny_cnn, random_loaders


def _loaders():
    return random_loaders((96, 32, 64), data_seed=7, shuffle_seed=0)


@pytest.fixture(scope="module")
def base():
    return fitted_tiny_cnn(_loaders()[0])


# ---------------------------------------------------------------------------------------------
# _partial: layers by type, on four architectures


@pytest.mark.parametrize(
    "net, conv, fc, n_layers",
    [
        (TinyCNN(), "features.0", "fc", 3),
        (SmallResNet(), "stem.0", "fc", 10),
        (resnet18(num_classes=10), "conv1", "fc", 21),
        (AirbenchNet(), "whiten.0", "fc", 8),
    ],
    ids=["tiny_cnn", "small_resnet", "resnet18", "airbench"],
)
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
    assert random_layers(names, 4, torch.Generator().manual_seed(3)) == random_layers(
        names, 4, torch.Generator().manual_seed(3)
    )


def test_only_trainable_freezes_the_rest_and_restores_flags(base):
    net = copy.deepcopy(base)
    params = layer_parameters(net, ["fc"])
    assert params == [net.fc.weight, net.fc.bias]
    with only_trainable(net, params):
        assert [p.requires_grad for p in net.parameters()] == [id(p) in map(id, params) for p in net.parameters()]
    assert all(p.requires_grad for p in net.parameters())
    masks = layer_masks(net, ["features.0"])
    assert bool(masks["features.0.weight"].all()) and not any(
        bool(m.any()) for k, m in masks.items() if not k.startswith("features.0.")
    )


def test_partial_epochs_cut_each_pass_and_reshuffle():
    loader = _loaders()[0]  # 96 images, batches of 32
    part = PartialEpochs(loader, 0.5)
    assert len(part) == 2 and len(list(part)) == 2
    first = [torch.cat([x for x, _ in part]) for _ in range(2)]
    assert not torch.equal(first[0], first[1]), "every pass must be a fresh pass over the loader"
    assert len(PartialEpochs(loader, 1e-6)) == 1
    longer = PartialEpochs(loader, 0.5, min_steps=7)  # a tiny data set: several fresh passes
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
            assert 0.01 < moved <= 0.05 * (1 + 1e-4), (n, moved)  # the fresh cap, not the trained one
        else:
            assert moved <= 1e-3 * (1 + 1e-4), (n, moved)
