"""methods/_hvp.py: exact Hessian-vector products (both modes) and conjugate gradient."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from methods._hvp import conjugate_gradient, eval_mode, flatten, gradient_and_hvp, make_hvp, unflatten


def _tiny_net():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, 2, 1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    )
    net.train()
    for _ in range(3):  # non-trivial running statistics
        net(torch.randn(16, 3, 8, 8))
    return net


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(12, 3, 8, 8, generator=g), torch.randint(0, 5, (12,), generator=g)


def _exact_hessian(net, x, y):
    """Autograd's full Hessian of the eval-mode CE in the flattened parameters, (n, n)."""
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    buffers = dict(net.named_buffers())
    net.eval()

    def f(flat):
        parts, i = {}, 0
        for n, s in zip(names, shapes):
            k = int(torch.Size(s).numel())
            parts[n] = flat[i : i + k].view(s)
            i += k
        return F.cross_entropy(functional_call(net, {**parts, **buffers}, (x,)), y)

    flat = flatten([p.detach() for p in net.parameters()])
    return torch.autograd.functional.hessian(f, flat)


@pytest.mark.parametrize("mode", ["double", "jvp"])
def test_hvp_matches_exact_hessian(mode):
    net = _tiny_net()
    x, y = _data()
    h = _exact_hessian(net, x, y)
    net.train()
    before = {k: v.clone() for k, v in net.named_buffers()}
    hvp = make_hvp(net, lambda m: F.cross_entropy(m(x), y), mode=mode)
    for seed in range(3):
        v = torch.randn(h.shape[0], generator=torch.Generator().manual_seed(seed))
        assert torch.allclose(hvp(v), h @ v, rtol=1e-4, atol=1e-5)
    assert net.training, "train/eval flags are restored"
    for k, v in net.named_buffers():
        assert torch.equal(v, before[k]), f"BN buffer {k} changed during HVPs"


def test_gradient_and_hvp_gradient_is_the_gradient():
    net = _tiny_net()
    x, y = _data()
    with eval_mode(net):
        loss = F.cross_entropy(net(x), y)
    g, hvp = gradient_and_hvp(loss, list(net.parameters()))
    with eval_mode(net):
        ref = torch.autograd.grad(F.cross_entropy(net(x), y), list(net.parameters()))
    assert torch.allclose(g, flatten(ref), atol=1e-6)
    assert [t.shape for t in unflatten(g, list(net.parameters()))] == [p.shape for p in net.parameters()]
    assert hvp(torch.zeros_like(g)).abs().max() == 0


def test_unknown_mode():
    with pytest.raises(ValueError, match="double, jvp"):
        make_hvp(_tiny_net(), lambda m: m(torch.randn(2, 3, 8, 8)).sum(), mode="fd")


def _spd(n, cond=100.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eig = torch.logspace(0, torch.log10(torch.tensor(cond)).item(), n, dtype=torch.float64)
    return q @ torch.diag(eig) @ q.T


@pytest.mark.parametrize("tol", [1e-3, 1e-8])
def test_cg_reaches_tolerance_on_spd(tol):
    a = _spd(40)
    b = torch.randn(40, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x, info = conjugate_gradient(lambda v: a @ v, b, max_iter=200, tol=tol)
    true_rel = float(torch.linalg.vector_norm(b - a @ x) / torch.linalg.vector_norm(b))
    assert info["converged"] and info["rel_residual"] <= tol
    assert true_rel <= 10 * tol  # the recorded residual is the real one
    assert abs(true_rel - info["rel_residual"]) <= max(tol, 1e-10)
    assert 1 <= info["iters"] <= 200 and not info["negative_curvature"]


def test_cg_honours_max_iter_and_reports_residual():
    a = _spd(40, cond=1e4)
    b = torch.ones(40, dtype=torch.float64)
    calls = []
    x, info = conjugate_gradient(lambda v: calls.append(1) or a @ v, b, max_iter=3, tol=1e-12)
    assert info["iters"] == 3 and len(calls) == 3 and not info["converged"]
    assert info["rel_residual"] > 0  # CG minimizes the A-norm error; the residual need not fall monotonically
    true_rel = float(torch.linalg.vector_norm(b - a @ x) / torch.linalg.vector_norm(b))
    assert true_rel == pytest.approx(info["rel_residual"], rel=1e-6)


def test_cg_stops_on_negative_curvature():
    a = -torch.eye(5, dtype=torch.float64)
    x, info = conjugate_gradient(lambda v: a @ v, torch.ones(5, dtype=torch.float64), max_iter=10, tol=1e-6)
    assert info["negative_curvature"] and info["iters"] == 1 and torch.equal(x, torch.zeros(5, dtype=torch.float64))


def test_cg_zero_rhs():
    x, info = conjugate_gradient(lambda v: 2 * v, torch.zeros(4), max_iter=5, tol=1e-3)
    assert info["iters"] == 0 and torch.equal(x, torch.zeros(4))


def test_cg_damped_proximal_system_on_network_hessian():
    """The system sibl solves, (I + beta H) h = g, on a real network Hessian: CG converges."""
    net = _tiny_net()
    x, y = _data()
    with eval_mode(net):
        loss = F.cross_entropy(net(x), y)
    g, hvp = gradient_and_hvp(loss, list(net.parameters()))
    h, info = conjugate_gradient(lambda v: v + 0.1 * hvp(v), g, max_iter=50, tol=1e-5)
    assert info["converged"], info
    assert torch.allclose(h + 0.1 * hvp(h), g, atol=1e-4 * float(g.norm()))
