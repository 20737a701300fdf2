"""One contract test over every registered method, on both batch formats (as torchvision tests every model).

The loaders' order is fixed (seeded) and only `params.seed` varies, so a method that ignores its
seed, and would give identical runs on Kaggle's shared loaders, fails; so does one whose runs differ by
a rounding error (the scorer compares runs' outputs: near-identical runs score as identical ones).
The forget set holds two batches, so a method whose only randomness is its data order (as released)
has an order to draw.
"""

import copy
import json

import pytest
import torch

import methods
from methods._train_recipe import Recipe
from tests.methods.toy import fitted_tiny_cnn, random_loaders

SPREAD = 1e-4  # two seeds' runs must differ by at least this share of how far a run moves the weights
RECIPE = Recipe(epochs=1, lr=0.05, batch_size=32, schedule="onecycle")


def _loaders(dict_batches: bool):
    return random_loaders((96, 64, 32), data_seed=123, shuffle_seed=0, dict_batches=dict_batches)


def _class_wise_loaders(dict_batches: bool):
    """The same examples with every example of class 0 forgotten, for a method defined on whole classes only
    (`class_wise`: on a random forget set it is the identity, as released)."""
    from data.splits import make_loader

    retain, forget, val = random_loaders((96, 64, 32), data_seed=123, shuffle_seed=0)
    parts = [b for loader in (retain, forget) for b in loader]
    x, y = torch.cat([b[0] for b in parts]), torch.cat([b[1] for b in parts])
    out = (y != 0, y == 0)
    val_x, val_y = torch.cat([b[0] for b in val]), torch.cat([b[1] for b in val])
    val_y[:10] = torch.arange(10)  # every class held out at least once
    return tuple(
        make_loader(xs, ys, 32, shuffle=True, seed=i, dict_batches=dict_batches)
        for i, (xs, ys) in enumerate([(x[out[0]], y[out[0]]), (x[out[1]], y[out[1]]), (val_x, val_y)])
    )


def _net():
    return fitted_tiny_cnn(_loaders(False)[0])


def _run(key, dict_batches, seed, net):
    cls = methods.get_method(key)
    overrides = cls.test_overrides() if hasattr(cls, "test_overrides") else {}
    method = cls(seed=seed, **overrides)
    method.configure(RECIPE)
    net = copy.deepcopy(net)
    loaders = _class_wise_loaders(dict_batches) if getattr(cls, "class_wise", False) else _loaders(dict_batches)
    method.run(net, *loaders)
    return net, method


def _flat(net):
    return torch.cat([p.detach().flatten() for p in net.state_dict().values() if p.is_floating_point()])


@pytest.mark.parametrize("dict_batches", [False, True], ids=["tuple", "dict"])
@pytest.mark.parametrize("key", methods.available_methods())
def test_method_contract(key, dict_batches):
    base = _net()
    net, method = _run(key, dict_batches, seed=1, net=base)
    assert not net.training, "run() must leave the model in eval mode"
    w = _flat(net)
    assert torch.isfinite(w).all()
    assert torch.isfinite(net(torch.randn(4, 3, 32, 32))).all()
    json.dumps(method.log_, default=float)  # the log is JSON-serialisable
    if key == "none":
        assert torch.equal(w, _flat(base))
        return
    assert not torch.equal(w, _flat(base)), "the method changed nothing"
    same, _ = _run(key, dict_batches, seed=1, net=base)
    assert torch.allclose(_flat(same), w, atol=1e-6), "same seed must give the same weights on CPU"
    other, _ = _run(key, dict_batches, seed=2, net=base)
    spread, moved = float((_flat(other) - w).norm()), float((w - _flat(base)).norm())
    assert spread >= SPREAD * moved, (
        f"another params.seed, with the loaders' order fixed, must give other weights: the two runs differ by "
        f"{spread:.2e}, {spread / moved:.1e} of the {moved:.2e} the method moved the weights (at least {SPREAD})"
    )


@pytest.mark.parametrize("key", methods.available_methods())
def test_method_module_matches_key(key):
    cls = methods.get_method(key)
    module = cls.__module__.split(".")[-1]
    assert module == key or (key == "my_method" and module == "MyMethod")
    assert cls.summary(), "the class docstring's first line is what --list shows"
