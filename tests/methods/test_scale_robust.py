"""The scale-robust blocks: the per-tensor step cap (`_trust`) and the calibrated entry noise (`_noise`)."""

import copy

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from methods._noise import batch_statistics_loss, calibrated_weight_noise_
from methods._train_params import TrainParams, build_optimizer
from methods._trust import StepCap, cap_update_
from tests.methods.toy import fitted_tiny_cnn, random_loaders


def _sgd_step(net, lr, cap=None):
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    if cap:
        opt = StepCap(opt, cap)
    x, y = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(3)), torch.arange(8) % 10
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
    return opt


def test_a_small_step_passes_bit_for_bit_and_a_large_one_is_capped():
    net = fitted_tiny_cnn(random_loaders((64, 8, 8), 0)[0])
    plain, capped = copy.deepcopy(net), copy.deepcopy(net)
    _sgd_step(plain, 1e-6)
    opt = _sgd_step(capped, 1e-6, cap=0.5)
    assert opt.capped_steps == 0
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), capped.parameters()))

    before = [p.detach().clone() for p in net.parameters()]
    opt = _sgd_step(net, 1e6, cap=1e-3)
    assert opt.capped_steps == 1 and opt.steps == 1
    for p, w in zip(net.parameters(), before):
        ref = w.norm() if w.ndim >= 2 else torch.clamp(w.norm(), min=w.numel() ** 0.5)
        assert float((p - w).detach().norm()) <= 1e-3 * float(ref) * (1 + 1e-4)


def test_a_zero_vector_still_gets_room_and_a_nan_change_is_left_for_the_check():
    bias, before = torch.full((16,), 5.0), torch.zeros(16)
    assert cap_update_([bias], [before], 0.01) == 1
    assert torch.allclose(bias.norm(), torch.tensor(0.01 * 16**0.5))  # √numel as the reference norm
    broken = torch.full((4, 4), float("nan"))
    assert cap_update_([broken], [torch.ones(4, 4)], 0.01) == 0 and torch.isnan(broken).all()


def test_the_step_cap_is_an_option_off_by_default_and_on_where_a_method_sets_it():
    net = torch.nn.Linear(4, 2)
    assert isinstance(build_optimizer(TrainParams(), net), torch.optim.SGD), "no published method has a cap"
    assert isinstance(build_optimizer(TrainParams(max_update=1e-3), net), StepCap)
    from methods.sibl import SIBL

    assert SIBL.defaults()["max_update"] == 1e-3, "ours keep theirs"
    from methods.MyMethod import MyMethod

    with pytest.raises(ValueError, match="max_update"):
        MyMethod.make_params(max_update=-1)


def _bn_buffers(net):
    return [b.clone() for m in net.modules() if isinstance(m, _BatchNorm) for b in m.buffers(recurse=False)]


@pytest.mark.parametrize("rise", [0.05, 0.5])
def test_calibrated_noise_hits_its_loss_rise(rise):
    retain, _, _ = random_loaders((256, 8, 8), 0, batch_size=64)
    net = fitted_tiny_cnn(retain, epochs=3)
    stats = _bn_buffers(net)
    batches = [b for _, b in zip(range(2), retain)]
    clean = batch_statistics_loss(net, batches)
    info = calibrated_weight_noise_(net, batches, 2, rise, max_scale=5.0, generator=torch.Generator().manual_seed(1))
    assert 0 < info["sigma"] <= 5.0
    assert batch_statistics_loss(net, batches) == pytest.approx(clean + rise, rel=0.15, abs=0.02)
    assert all(torch.equal(a, b) for a, b in zip(stats, _bn_buffers(net))), "running statistics must not move"
    assert not net.training


def test_calibrated_noise_stops_at_its_largest_scale_and_differs_by_generator():
    retain, _, _ = random_loaders((128, 8, 8), 0, batch_size=64)
    net = fitted_tiny_cnn(retain)
    batches = list(retain)
    a, b = copy.deepcopy(net), copy.deepcopy(net)
    assert calibrated_weight_noise_(a, batches, 2, 1e6, 0.01, torch.Generator().manual_seed(1))["sigma"] == 0.01
    calibrated_weight_noise_(b, batches, 2, 1e6, 0.01, torch.Generator().manual_seed(2))
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
