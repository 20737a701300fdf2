"""Every registered method runs on the airbench preset's network (GELU, max-pools, a bias-free head,
logits scaled by 1/9), narrowed so the check takes seconds: the code paths are the width-independent
ones a method meets on `--preset airbench`. One method per family of shared blocks (`tests/families.py`);
`UNLEARN_ALL=1` runs every registered method."""

import copy

import pytest
import torch

import methods
from data.archs.airbench import AirbenchNet
from methods._train_recipe import Recipe
from tests.families import selected
from tests.methods.toy import random_loaders

KEYS = selected(methods.available_methods())
RECIPE = Recipe(epochs=1, lr=0.05, batch_size=32, schedule="onecycle", nesterov=True, momentum=0.85)


@pytest.fixture(scope="module")
def fitted():
    loaders = random_loaders((96, 32, 32), data_seed=7, shuffle_seed=0)
    torch.manual_seed(0)
    net = AirbenchNet(widths=(8, 16, 16))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for _ in range(2):
        for xb, yb in loaders[0]:
            loss = torch.nn.functional.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval(), loaders


@pytest.mark.parametrize("key", KEYS)
def test_method_runs_on_the_airbench_net(key, fitted):
    base, loaders = fitted
    cls = methods.get_method(key)
    method = cls(seed=3, **(cls.test_overrides() if hasattr(cls, "test_overrides") else {}))
    method.configure(RECIPE)
    net = copy.deepcopy(base)
    method.run(net, *loaders)
    state = [v for v in net.state_dict().values() if v.is_floating_point()]
    assert all(torch.isfinite(v).all() for v in state), f"{key}: non-finite weights on the airbench net"
    if key != "none":
        changed = any(not torch.equal(a, b) for a, b in zip(state, base.state_dict().values()))
        assert changed, f"{key} changed nothing"
