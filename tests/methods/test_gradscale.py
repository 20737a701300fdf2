"""`_gradscale`: entry-wise gradient scales before a plain step and inside both SAM passes, against steps by hand."""

import copy

import pytest
import torch
import torch.nn.functional as F

from methods._gradscale import GradScaleOptimizer
from methods._sam import SAM


def _sgd_step(net, loss, lr, scales=None):
    """{name: w − lr·s·∇loss} for the parameters of `net` (s = 1 where `scales` has no entry)."""
    named = dict(net.named_parameters())
    grads = torch.autograd.grad(loss, list(named.values()))
    scales = scales or {}
    return {n: (p - lr * scales.get(n, 1.0) * g).detach() for (n, p), g in zip(named.items(), grads)}


def _assert_params(net, expected, atol=1e-6):
    for n, p in net.named_parameters():
        assert torch.allclose(p, expected[n], atol=atol), f"{n}: max diff {(p - expected[n]).abs().max():.2e}"


# ---------------------------------------------------------------------------------------------- _gradscale


def test_gradscale_scales_entrywise_before_a_plain_step():
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    s = torch.rand(3, 4)
    expected = _sgd_step(lin, F.cross_entropy(lin(x), y), 0.5, {"weight": s, "bias": 0.1})
    opt = GradScaleOptimizer(torch.optim.SGD(lin.parameters(), lr=0.5), lin, {"weight": s, "bias": 0.1})

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lin(x), y)
        loss.backward()
        return loss

    opt.step(closure)
    _assert_params(lin, expected)
    with pytest.raises(ValueError, match="unknown"):
        GradScaleOptimizer(torch.optim.SGD(lin.parameters(), lr=0.5), lin, {"nope": 1.0})
    with pytest.raises(ValueError, match="broadcast"):
        GradScaleOptimizer(torch.optim.SGD(lin.parameters(), lr=0.5), lin, {"weight": torch.ones(5)})


def test_gradscale_scales_both_sam_passes():
    """SAM's perturbation uses the scaled g0 and its step the scaled g1 (hand SAM, rho 0.5)."""
    torch.manual_seed(1)
    lin = torch.nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    s = {"weight": torch.rand(3, 4), "bias": torch.tensor(0.1)}
    lr, rho = 0.3, 0.5
    hand = copy.deepcopy(lin)
    g0 = [s[n] * g for n, g in zip(s, torch.autograd.grad(F.cross_entropy(hand(x), y), list(hand.parameters())))]
    norm = torch.sqrt(sum((g**2).sum() for g in g0))
    with torch.no_grad():
        for p, g in zip(hand.parameters(), g0):
            p.add_(rho * g / norm)
    g1 = [s[n] * g for n, g in zip(s, torch.autograd.grad(F.cross_entropy(hand(x), y), list(hand.parameters())))]
    expected = {
        n: (p - rho * g0i / norm - lr * g1i).detach() for (n, p), g0i, g1i in zip(hand.named_parameters(), g0, g1)
    }
    opt = GradScaleOptimizer(SAM(torch.optim.SGD(lin.parameters(), lr=lr), lin, rho=rho), lin, s)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lin(x), y)
        loss.backward()
        return loss

    opt.step(closure)
    _assert_params(lin, expected, atol=1e-5)
