"""Shared method helpers: batch unpacking, the logit margin and the entry noise."""
import torch

from data.models import TinyCNN
from methods._common import add_weight_noise_, logit_margin, unpack


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
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
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
