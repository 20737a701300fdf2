"""The architecture registry (data/archs/, one module each) and the airbench preset's net."""

import pytest
import torch

from data.archs.airbench import AirbenchNet
from data.models import arch_module, architectures, build_model
from data.presets import PRESETS


def test_every_preset_names_a_registered_architecture():
    assert set(architectures()) >= {"airbench", "resnet18", "small_resnet", "tiny_cnn"}
    assert {p.arch for p in PRESETS.values()} <= set(architectures())


def test_an_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown architecture 'vgg'.*airbench, resnet18, small_resnet, tiny_cnn"):
        build_model("vgg", 10)
    assert arch_module("airbench") == "data.archs.airbench"


@pytest.mark.parametrize("arch", ["airbench", "resnet18", "small_resnet", "tiny_cnn"])
def test_each_architecture_maps_32x32_images_to_logits_with_every_parameter_trainable(arch):
    torch.manual_seed(0)
    net = build_model(arch, 7)
    out = net(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 7) and torch.isfinite(out).all()
    assert all(p.requires_grad for p in net.parameters()), "methods must be able to change every weight"
    head = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert head.out_features == 7, "the head is the last nn.Linear (methods find it that way)"


def test_airbench_net_has_airbench94s_shape():
    net = AirbenchNet()
    assert sum(p.numel() for p in net.parameters()) == 1_972_792
    assert [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)] == [24, 64, 64, 256, 256, 256, 256]
    assert net.fc.bias is None
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(net(x), net.fc(torch.flatten(net.pool(net.layers(net.whiten(x))), 1)) / 9)


def test_the_airbench_preset_trains_every_bank_model_with_one_recipe():
    p = PRESETS["airbench"]
    assert (p.arch, p.n_train, p.recipe.optimizer, p.recipe.nesterov, p.recipe.augment) == (
        "airbench",
        None,
        "sgd",
        True,
        True,
    )
    assert p.recipe.best_from_epoch is None, "the original and the retrained models keep their last epoch alike"
