"""methods/_masks.py: every sparsity method gives the intended density and structure."""

import copy

import pytest
import torch

from data.archs.small_resnet import SmallResNet
from data.archs.tiny_cnn import TinyCNN
from methods._masks import METHODS, changed_fraction, cubic_sparsity, make_mask, mask_density, restore_masked_
from tests.methods.toy import snapshot


def _net():
    torch.manual_seed(0)
    return SmallResNet()


def _weights(net):
    return {n: p for n, p in net.named_parameters() if p.ndim >= 2}


def _grads(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(p.shape, generator=g) for n, p in net.named_parameters()}


def _mask(net, method, s, **kw):
    if method == "movement":
        kw.setdefault("grads", _grads(net))
    if method in ("random", "magnitude_sampling"):
        kw.setdefault("generator", torch.Generator().manual_seed(0))
    if method == "gradual":
        kw.setdefault("step", 10)
        kw.setdefault("total_steps", 10)
    return make_mask(net, method, s, **kw)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("s", [0.5, 0.9, 0.95])
def test_density_and_shapes(method, s):
    net = _net()
    before = copy.deepcopy(net.state_dict())
    masks = _mask(net, method, s)
    assert set(masks) == {n for n, _ in net.named_parameters()}
    for n, p in net.named_parameters():
        assert masks[n].shape == p.shape and masks[n].dtype == torch.bool
        if p.ndim < 2:
            assert masks[n].all(), "biases and BN parameters are free by default"
    d = mask_density(masks, net)
    tol = 0.02 if method == "magnitude_sampling" else 0.01
    if method != "structured":  # structured rounds per tensor in whole units (checked below)
        assert d == pytest.approx(1 - s, abs=tol), (method, s, d)
    for k, v in before.items():  # building a mask never changes the weights
        assert torch.equal(v, net.state_dict()[k])


@pytest.mark.parametrize("method", ["layerwise_magnitude", "random", "movement", "gradual"])
def test_per_tensor_exact_count(method):
    net, s = _net(), 0.9
    masks = _mask(net, method, s)
    for n, w in _weights(net).items():
        assert int(masks[n].sum()) == max(1, round((1 - s) * w.numel())), n


def test_layerwise_magnitude_keeps_largest():
    net = _net()
    masks = _mask(net, "layerwise_magnitude", 0.9)
    for n, w in _weights(net).items():
        kept, dropped = w.abs()[masks[n]], w.abs()[~masks[n]]
        assert kept.min() >= dropped.max()


def test_magnitude_sampling_is_one_global_threshold():
    net = _net()
    masks = _mask(net, "magnitude_sampling", 0.9)
    kept = torch.cat([w.abs()[masks[n]] for n, w in _weights(net).items()])
    dropped = torch.cat([w.abs()[~masks[n]] for n, w in _weights(net).items()])
    assert kept.min() >= dropped.max()
    per_layer = [float(masks[n].float().mean()) for n in _weights(net)]
    assert max(per_layer) - min(per_layer) > 0.05, "a global threshold gives unequal per-layer densities"


def test_random_uses_the_generator():
    net = _net()
    a = make_mask(net, "random", 0.9, generator=torch.Generator().manual_seed(1))
    b = make_mask(net, "random", 0.9, generator=torch.Generator().manual_seed(1))
    c = make_mask(net, "random", 0.9, generator=torch.Generator().manual_seed(2))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)


@pytest.mark.parametrize("s", [0.5, 0.9])
def test_structured_keeps_whole_filters_and_rows(s):
    net = _net()
    masks = _mask(net, "structured", s)
    for n, w in _weights(net).items():
        units = masks[n].flatten(1)  # (out, rest)
        assert (units.all(1) | ~units.any(1)).all(), f"{n}: partial filter/row"
        kept = int(units.all(1).sum())
        assert kept == max(1, round((1 - s) * w.shape[0])), n
        score = w.abs().flatten(1).mean(1)
        assert score[units.all(1)].min() >= score[~units.any(1)].max() if kept < w.shape[0] else True
    conv = [n for n, w in _weights(net).items() if w.ndim == 4]
    assert conv and all(not masks[n].all() for n in conv), "conv weights are masked, not skipped"
    assert int(masks["fc.weight"].flatten(1).all(1).sum()) == max(1, round((1 - s) * 10))


def test_gradual_schedule_and_nesting():
    assert cubic_sparsity(0, 10, 0.9) == 0.0
    assert cubic_sparsity(10, 10, 0.9) == pytest.approx(0.9)
    assert cubic_sparsity(20, 10, 0.9) == pytest.approx(0.9)
    values = [cubic_sparsity(t, 10, 0.9, 0.5) for t in range(11)]
    assert values[0] == 0.5 and all(a <= b for a, b in zip(values, values[1:]))
    net = _net()
    prev = None
    densities = []
    for t in range(1, 11):
        masks = make_mask(net, "gradual", 0.9, step=t, total_steps=10, prev_mask=prev)
        if prev is not None:
            assert all(bool((masks[n] <= prev[n]).all()) for n in masks), "the mask only shrinks"
        densities.append(mask_density(masks, net))
        prev = masks
    assert densities[0] > 0.2, "not a fixed mask: dense-ish early"
    assert densities[-1] == pytest.approx(0.1, abs=0.01)
    assert all(a >= b for a, b in zip(densities, densities[1:]))


def test_movement_scores_weight_times_forget_gradient():
    net = _net()
    grads = _grads(net)
    n, w = "layer2.conv1.weight", dict(net.named_parameters())["layer2.conv1.weight"]
    grads[n] = torch.zeros_like(w)
    grads[n].view(-1)[7] = 1e6  # one entry dominates |w g|
    masks = make_mask(net, "movement", 0.99, grads=grads)
    assert masks[n].view(-1)[7], "the top-|w g| entry is selected"
    magnitude = make_mask(net, "layerwise_magnitude", 0.99)
    assert any(not torch.equal(masks[k], magnitude[k]) for k in masks), "movement is not magnitude"
    with pytest.raises(ValueError, match="movement"):
        make_mask(net, "movement", 0.9)


@pytest.mark.parametrize("method", METHODS)
def test_include_1d_masks_biases_and_bn(method):
    net = _net()
    masks = _mask(net, method, 0.5, include_1d=True)
    one_d = [n for n, p in net.named_parameters() if p.ndim == 1]
    assert one_d and any(not masks[n].all() for n in one_d)
    assert mask_density(masks, net, include_1d=True) == pytest.approx(0.5, abs=0.05)


def test_frozen_parameters_never_selected():
    net = TinyCNN()
    net.fc.weight.requires_grad_(False)
    masks = make_mask(net, "layerwise_magnitude", 0.5)
    assert not masks["fc.weight"].any()


def test_bad_arguments():
    net = TinyCNN()
    with pytest.raises(ValueError, match="supported"):
        make_mask(net, "magnitude", 0.9)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        make_mask(net, "random", 1.0)


def test_restore_and_changed_fraction():
    net = _net()
    ref = snapshot(net)
    masks = _mask(net, "layerwise_magnitude", 0.9)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    assert changed_fraction(net, ref) == 1.0
    restore_masked_(net, masks, ref)
    for n, p in net.named_parameters():
        assert torch.equal(p[~masks[n]], ref[n][~masks[n]])
    assert changed_fraction(net, ref) == pytest.approx(mask_density(masks, net))
