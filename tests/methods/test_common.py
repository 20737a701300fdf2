"""Shared method helpers: batch unpacking, reshuffling, the logit margin, the entry noise, the loop and entry state."""

import pytest
import torch

from data.archs.tiny_cnn import TinyCNN
from methods._common import num_classes, reshuffled, unpack
from methods._entry import entry_retain_loss, epsilon_budget, loader_statistics, quantile_targets
from methods._losses import logit_margin
from methods._noise import add_weight_noise_
from tests.methods.toy import random_loaders, snapshot


def test_unpack_tuple_and_dict_agree():
    x, y = torch.rand(4, 3, 32, 32) * 255, torch.tensor([0, 1, 2, 9])
    a = unpack((x, y))
    b = unpack({"image": x, "age_group": y, "age": y * 10})
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and b[1].dtype == torch.long


def test_logit_margin_by_hand():
    z = torch.tensor([[3.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert torch.allclose(logit_margin(z, squared=False), torch.tensor([2.0, 0.0]))
    assert torch.allclose(logit_margin(z), torch.tensor([4.0, 0.0]))


def test_weight_noise_scale_mask_and_generator():
    torch.manual_seed(0)
    net = TinyCNN()
    before = snapshot(net)
    masks = {n: torch.rand(p.shape) < 0.5 for n, p in net.named_parameters()}
    add_weight_noise_(net, 0.5, torch.Generator().manual_seed(1), masks)
    for n, p in net.named_parameters():
        moved = p.detach() != before[n]
        if p.ndim < 2:
            assert not moved.any(), "biases and BN parameters stay"
            continue
        assert not (moved & ~masks[n]).any(), "masked-out entries stay"
        delta = (p.detach() - before[n])[masks[n]]
        assert abs(delta.std().item() / (0.5 * before[n].std().item()) - 1) < 0.25
    again = TinyCNN()
    again.load_state_dict({**net.state_dict(), **{n: before[n] for n in before}})
    add_weight_noise_(again, 0.5, torch.Generator().manual_seed(1), masks)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), again.parameters()))


def test_reshuffled_order_follows_the_generator_only():
    loader = random_loaders((40, 8, 8), data_seed=0, shuffle_seed=0, batch_size=8)[0]

    def first(g):
        return torch.cat([y for _, y in reshuffled(loader, g)])

    a, b = first(torch.Generator().manual_seed(1)), first(torch.Generator().manual_seed(1))
    c = first(torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert sorted(a.tolist()) == sorted(torch.cat([y for _, y in loader]).tolist()), "same examples"


def test_num_classes_from_the_last_linear_layer():
    assert num_classes(TinyCNN(num_classes=7)) == 7


def test_entry_state_helpers():
    torch.manual_seed(0)
    net = TinyCNN().eval()
    _, forget, val = random_loaders((64, 32, 48), data_seed=1, shuffle_seed=0, batch_size=16)
    x, y = torch.randn(40, 3, 32, 32), torch.randint(0, 10, (40,))
    retain = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)  # fixed order
    x, y = x[:16], y[:16]
    expected = torch.nn.functional.cross_entropy(net(x), y).item()
    assert entry_retain_loss(net, retain, 1) == pytest.approx(expected, rel=1e-5)
    assert epsilon_budget(0.3, 0.1, "additive") == pytest.approx(0.4)
    assert epsilon_budget(0.3, 0.1, "absolute") == 0.1
    with pytest.raises(ValueError, match="epsilon_mode"):
        epsilon_budget(0.3, 0.1, "relative")
    stats, xs, ys = loader_statistics(net, forget, lambda z, t: z.max(1).values, keep_batches=True)
    assert stats.shape == (32,) and xs.shape == (32, 3, 32, 32) and torch.equal(stats, net(xs).max(1).values)
    assert loader_statistics(net, val, lambda z, t: z[:, 0], n_batches=2)[0].shape == (32,)
    targets = quantile_targets(torch.tensor([3.0, 1.0, 2.0]), torch.arange(100.0))
    assert targets.argsort().tolist() == [1, 2, 0], "ranks kept"
    assert targets[1] == pytest.approx(torch.quantile(torch.arange(100.0), 1 / 6).item())


def test_train_steps_after_step_and_weighted_mean():
    from methods._train_loop import batch_cross_entropy, train_epochs

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))  # no BN: order-free loss
    loader = random_loaders((40, 8, 8), data_seed=0, shuffle_seed=0, batch_size=16)[0]  # batches 16, 16, 8
    calls = []
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    losses = train_epochs(
        net, loader, batch_cross_entropy, opt, 2, before_epoch=calls.append, after_step=lambda: calls.append("step")
    )
    assert calls == [0, "step", "step", "step", 1, "step", "step", "step"]
    with torch.no_grad():
        per = [(torch.nn.functional.cross_entropy(net(x), y).item(), len(y)) for x, y in loader]
    assert losses[0] == pytest.approx(sum(loss * n for loss, n in per) / 40, rel=1e-5)
