"""`_pergrad` (per-example and summed gradients) and `wfisher` (the released WoodFisher recursion, the update)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods._hvp import flatten
from methods._pergrad import chunk_for_budget, per_example_dots, per_example_grads, summed_gradient
from methods.wfisher import WFisher, released_woodfisher
from tests.methods.toy import fitted_tiny_cnn, random_loaders


def _bn_net():
    """Conv + BatchNorm + linear with non-trivial running statistics, one frozen parameter, in train mode."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, 2, 1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    )
    for _ in range(3):
        net(torch.randn(16, 3, 8, 8) * 2 + 1)
    net[0].bias.requires_grad_(False)
    return net


def _data(n=10):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 5, (n,), generator=g)


def _loop_grads(net, x, y):
    """Reference: one autograd call per example, eval mode, (n, P) over the parameters that require grad."""
    params = [p for p in net.parameters() if p.requires_grad]
    net.eval()
    rows = [
        flatten(torch.autograd.grad(F.cross_entropy(net(x[i : i + 1]), y[i : i + 1]), params)) for i in range(len(x))
    ]
    net.train()
    return torch.stack(rows)


def test_per_example_grads_equal_an_autograd_loop_in_eval_mode():
    net, (x, y) = _bn_net(), _data()
    stats = [b.clone() for b in net.buffers()]
    (got,) = list(per_example_grads(net, x, y))
    want = _loop_grads(net, x, y)
    assert got.shape == want.shape == (10, sum(p.numel() for p in net.parameters() if p.requires_grad))
    assert torch.allclose(got, want, atol=1e-6, rtol=1e-5)
    assert net.training, "the train/eval flags are restored"
    assert all(torch.equal(a, b) for a, b in zip(stats, net.buffers())), "BN running statistics are read, not updated"


def test_chunks_stream_the_same_gradients_and_dict_form_matches():
    net, (x, y) = _bn_net(), _data()
    (whole,) = list(per_example_grads(net, x, y))
    parts = list(per_example_grads(net, x, y, chunk_size=3))
    assert [len(c) for c in parts] == [3, 3, 3, 1]
    assert torch.allclose(torch.cat(parts), whole, atol=1e-7)
    (as_dict,) = list(per_example_grads(net, x, y, flat=False))
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    assert list(as_dict) == names and "0.bias" not in as_dict
    assert torch.allclose(torch.cat([as_dict[n].flatten(1) for n in names], 1), whole)


def test_per_example_dots_equal_gradients_times_vectors():
    net, (x, y) = _bn_net(), _data()
    (grads,) = list(per_example_grads(net, x, y))
    u = torch.randn(grads.shape[1], 3, generator=torch.Generator().manual_seed(2))
    stats = [b.clone() for b in net.buffers()]
    got = per_example_dots(net, x, y, list(u.T))
    assert got.shape == (10, 3)
    assert torch.allclose(got, grads @ u, atol=1e-5, rtol=1e-4)
    assert net.training and all(torch.equal(a, b) for a, b in zip(stats, net.buffers()))


def test_summed_gradient_is_the_sum_of_per_example_gradients():
    net, (x, y) = _bn_net(), _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)  # 4 + 4 + 2
    total, count = summed_gradient(net, loader)
    assert count == 10
    assert torch.allclose(total, _loop_grads(net, x, y).sum(0), atol=1e-5)
    assert all(p.grad is None for p in net.parameters())


def test_chunk_for_budget():
    net = _bn_net()
    per = 2 * 4 * sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert chunk_for_budget(net, 10 * per / 2**20) == 10
    assert chunk_for_budget(net, 1e-9) == 1


def _released_loop(v, grads, damping):
    """The released `woodfisher()` loop, literally (SU:unlearn/Wfisher.py#L63-L84), on the rows of `grads`."""
    k, o = v.clone(), None
    for g in grads:
        if o is None:
            o = g.clone()
        else:
            t = torch.dot(o, g)
            k -= (torch.dot(k, g) / (damping + t)) * o
            o -= (t / (damping + t)) * o
    return k


def _recursion(v, grads, damping, chunks=None):
    """`released_woodfisher` fed as `wfisher` feeds it: g_1 and the (g·v, g·g_1) of the later rows, in chunks."""
    dots = grads[1:] @ torch.stack([v, grads[0]], 1)  # (n - 1, 2)
    return released_woodfisher(v, grads[0], dots.split(chunks or [len(dots)]), damping)


@pytest.mark.parametrize("chunks", [[6], [1, 5], [3, 1, 2], [1, 1, 1, 1, 1, 1]])
def test_released_recursion_matches_the_literal_loop(chunks):
    g = torch.Generator().manual_seed(0)
    grads = torch.randn(7, 50, generator=g, dtype=torch.float64) * 3
    v = torch.randn(50, generator=g, dtype=torch.float64)
    damping = 20.0  # small, so every step matters
    k, log = _recursion(v, grads, damping, chunks)
    assert torch.allclose(k, _released_loop(v, grads, damping), rtol=1e-10, atol=1e-12)
    assert log["examples"] == 7


def test_released_recursion_is_not_woodbury_it_moves_k_along_g1_only():
    """The documented finding: k - v stays parallel to the first gradient, unlike the exact inverse."""
    g = torch.Generator().manual_seed(1)
    grads = torch.randn(6, 8, generator=g, dtype=torch.float64)
    v = torch.randn(8, generator=g, dtype=torch.float64)
    damping = 2.0
    k = _released_loop(v, grads, damping)
    d = k - v
    assert d.norm() > 1e-3
    assert torch.allclose(
        d - (d @ grads[0]) / (grads[0] @ grads[0]) * grads[0], torch.zeros(8, dtype=torch.float64), atol=1e-12
    )
    exact = torch.linalg.solve(torch.eye(8, dtype=torch.float64) + grads[1:].T @ grads[1:] / damping, v)
    assert not torch.allclose(k, exact, rtol=1e-2)


def test_released_recursion_with_one_example_returns_v():
    v, first = torch.ones(4), torch.randn(4)
    k, log = released_woodfisher(v, first, [], 10.0)
    assert torch.equal(k, v) and log["examples"] == 1  # g_1 alone never updates k


# ---------------------------------------------------------------------------------------------
# run()


def _loaders(dict_batches=False):
    return random_loaders((96, 32, 32), data_seed=5, dict_batches=dict_batches)


@pytest.fixture(scope="module")
def net():
    return fitted_tiny_cnn(_loaders()[0], epochs=2)


def _run(net, dict_batches=False, **overrides):
    method = WFisher(**{"seed": 0, "n_examples": 40, **overrides})
    out = copy.deepcopy(net)
    method.run(out, *_loaders(dict_batches))
    return out, method.log_


def _flat(net):
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_run_is_the_influence_update(net):
    """θ + α·k with k from the recursion over 40 random retain examples; eval mode; seeds matter."""
    alpha = 0.5
    out, log = _run(net, alpha=alpha, max_update=0.0)
    assert not out.training
    assert log["examples"] == 40
    assert torch.allclose((_flat(out) - _flat(net)).norm(), torch.tensor(alpha * log["k_norm"]), rtol=1e-4)
    again, _ = _run(net, alpha=alpha, max_update=0.0)
    assert torch.equal(_flat(again), _flat(out))
    other, _ = _run(net, alpha=alpha, max_update=0.0, seed=1)
    assert not torch.allclose(_flat(other), _flat(out))
    dicts, _ = _run(net, dict_batches=True, alpha=alpha, max_update=0.0)
    assert torch.allclose(_flat(dicts), _flat(out), atol=1e-6)


def test_views_give_runs_their_spread_even_when_the_recursion_takes_all_of_r(net):
    """n_examples >= |R|: every run walks the same examples; without the released loaders' views runs
    differ only along g_1, with them by a fair fraction of the update (the scorer needs the spread)."""

    def spread(**kw):
        a, log = _run(net, n_examples=1000, **kw)
        b, _ = _run(net, n_examples=1000, seed=1, **kw)
        return float((_flat(a) - _flat(b)).norm() / log["update_norm"])

    plain, viewed = spread(augment=False), spread()
    assert viewed > 0.05 and viewed > 10 * plain


def test_views_are_crop_flip_drawn_from_the_generator(net, monkeypatch):
    import methods.wfisher as wf

    plain, _ = _run(net, augment=False)
    monkeypatch.setattr(wf, "crop_flip", lambda x, g: x)
    monkeypatch.setattr(wf, "views", lambda loader, g, on=True: loader)
    identity, _ = _run(net)
    assert torch.equal(_flat(identity), _flat(plain))


def test_jvp_and_vmap_dots_give_the_same_run(net):
    a, log_a = _run(net, dots="jvp")
    b, log_b = _run(net, dots="vmap", chunk_mb=0.05)
    assert log_b["chunk"] < 40  # streamed in several chunks
    assert log_a["c"] == pytest.approx(log_b["c"], rel=1e-4, abs=1e-9)
    assert torch.allclose(_flat(a), _flat(b), atol=1e-6)


def test_weight_noise_is_drawn_from_the_seed(net):
    clean, _ = _run(net)
    noisy, _ = _run(net, weight_noise=0.05)
    again, _ = _run(net, weight_noise=0.05)
    assert not torch.allclose(_flat(noisy), _flat(clean)) and torch.equal(_flat(noisy), _flat(again))


def test_update_raises_the_forget_loss(net):
    out, _ = _run(net, alpha=5.0, max_update=0.0)
    _, forget, _ = _loaders()

    def loss(m):
        return sum(F.cross_entropy(m(x), y, reduction="sum").item() for x, y in forget)

    assert loss(out) > loss(net)


def test_mask_leaves_unselected_weights_bit_identical(net):
    out, _ = _run(net, mask_ratio=0.3, max_update=0.0)
    before, after = _flat(net), _flat(out)
    changed = (before != after).float().mean().item()
    assert 0 < changed <= 0.3 + 1e-3


def test_max_update_caps_each_tensor(net):
    cap = 1e-3
    out, log = _run(net, alpha=50.0, max_update=cap)
    assert log["capped_tensors"] > 0
    for p, q in zip(net.parameters(), out.parameters()):
        ref = p.norm() if p.ndim >= 2 else torch.clamp(p.norm(), min=p.numel() ** 0.5)
        assert (q - p).norm() <= cap * ref * (1 + 1e-4)


def test_params_are_checked():
    for bad in (
        dict(alpha=0.0),
        dict(damping=-1.0),
        dict(n_examples=0),
        dict(mask_ratio=0.0),
        dict(chunk_mb=0.0),
        dict(dots="loop"),
        dict(weight_noise=-0.1),
    ):
        with pytest.raises(ValueError):
            WFisher(**bad)
