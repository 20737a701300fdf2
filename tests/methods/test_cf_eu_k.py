"""`cf_k` and `eu_k` (Goel et al.) as released: which layers count, what is frozen, what is re-initialised."""

import copy

import pytest
import torch
from torchvision.models import resnet18

import methods
from methods._partial import last_k_layers
from methods._train_recipe import Recipe
from tests.methods.toy import fitted_tiny_cnn, random_loaders, snapshot

RECIPE = Recipe(epochs=2, lr=0.05, batch_size=32, schedule="onecycle")


def test_layers_count_back_from_the_classifier_as_released():
    net = resnet18(num_classes=10)
    assert last_k_layers(net, 1) == (["fc"], [])
    assert last_k_layers(net, 2) == (["fc", "layer4.1.conv2"], ["layer4.1.bn2"])
    assert last_k_layers(net, 3) == (["fc", "layer4.1.conv2", "layer4.1.conv1"], ["layer4.1.bn2", "layer4.1.bn1"])
    counted, _ = last_k_layers(net, 6)
    assert "layer4.0.downsample.0" in counted, "shortcut convs count"
    assert len(last_k_layers(net, 100)[0]) == 21, "conv1, 16 block convs, 3 shortcut convs and fc"


def _loaders():
    return random_loaders((96, 32, 32), data_seed=2, batch_size=32)


@pytest.fixture(scope="module")
def net():
    return fitted_tiny_cnn(_loaders()[0], epochs=2)


@pytest.mark.parametrize("key", ["cf_k", "eu_k"])
def test_nothing_below_the_last_k_layers_moves(net, key):
    retain, forget, val = _loaders()
    method = methods.get_method(key)(seed=0, k=1, time_factor=1.0)
    method.configure(RECIPE)
    out = copy.deepcopy(net)
    method.run(out, retain, forget, val)
    counted, passed = method.log_["layers"], method.log_["batchnorm"]
    assert counted == ["fc"] or len(counted) == 1
    trained = {f"{m}.{a}" for m in counted + passed for a in ("weight", "bias")}
    before, after = snapshot(net), snapshot(out)
    for n in before:
        if n in trained:
            assert not torch.equal(before[n], after[n]), f"{n} is trained"
        else:
            assert torch.equal(before[n], after[n]), f"{n} is below the last k layers and moved"


def test_eu_k_redraws_the_top_from_kaiming_normal_and_cf_k_starts_from_the_original(net):
    retain, forget, val = _loaders()
    zero = Recipe(epochs=1, lr=0.0, batch_size=32, schedule="constant", momentum=0.0, weight_decay=0.0)
    outs = {}
    for key in ("cf_k", "eu_k"):
        method = methods.get_method(key)(seed=0, k=1)
        method.configure(zero)
        outs[key] = copy.deepcopy(net)
        method.run(outs[key], retain, forget, val)
    before, cf, eu = snapshot(net), snapshot(outs["cf_k"]), snapshot(outs["eu_k"])
    head = [n for n in before if n.endswith("weight")][-1]  # the classifier's weight
    bias = head.replace("weight", "bias")
    assert torch.equal(cf[head], before[head]), "cf_k at lr 0 leaves the original"
    assert not torch.equal(eu[head], before[head])
    expected_std = (2 / before[head].shape[1]) ** 0.5  # kaiming normal, fan_in, gain √2
    assert abs(float(eu[head].std()) / expected_std - 1) < 0.25
    assert torch.equal(eu[bias], torch.zeros_like(eu[bias]))
