"""`bad_teacher` (Chundawat et al. 2023) as released: the loss, the incompetent teacher, the mixed data."""

import copy

import pytest
import torch
import torch.nn.functional as F

import methods
import methods.bad_teacher as bt
from methods._train_recipe import Recipe
from tests.methods.toy import fitted_tiny_cnn, random_loaders, snapshot


def _loaders():
    return random_loaders((120, 40, 32), data_seed=5, batch_size=32)


@pytest.fixture(scope="module")
def net():
    return fitted_tiny_cnn(_loaders()[0], epochs=2)


def test_loss_is_the_released_kl_with_mean_over_batch_and_classes():
    torch.manual_seed(0)
    s, c, b = torch.randn(6, 10), torch.randn(6, 10), torch.randn(6, 10)
    flag = torch.tensor([1, 0, 0, 1, 0, 1])
    T = 2.0
    target = torch.stack([F.softmax((b if f else c)[i] / T, 0) for i, f in enumerate(flag)])
    expected = (target * (target.log() - F.log_softmax(s / T, 1))).sum() / target.numel()
    torch.testing.assert_close(bt.bad_teacher_loss(s, c, b, flag, T), expected)


def test_the_incompetent_teacher_never_saw_the_data(net):
    """It depends on the architecture and the run's draw only: two differently trained nets give the same one."""
    other = fitted_tiny_cnn(_loaders()[1], epochs=1)
    a = bt.incompetent_copy(net, torch.Generator().manual_seed(3)).module
    b = bt.incompetent_copy(other, torch.Generator().manual_seed(3)).module
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), f"{n}: the incompetent teacher depends on the trained weights"
    trained = dict(net.state_dict())
    assert not all(torch.equal(p, trained[n]) for n, p in a.state_dict().items() if p.is_floating_point())
    assert not a.training and not any(p.requires_grad for p in a.parameters())


def test_a_run_shows_each_forget_example_the_bad_teacher_and_30_percent_of_retain_the_good_one(net, monkeypatch):
    retain, forget, val = _loaders()
    seen = []
    real = bt.bad_teacher_loss

    def spy(s, c, b, flag, T):
        seen.append(flag.clone())
        return real(s, c, b, flag, T)

    monkeypatch.setattr(bt, "bad_teacher_loss", spy)
    method = methods.get_method("bad_teacher")(seed=0, lr=1e-3)
    method.configure(Recipe(epochs=30, lr=0.1))  # E/30 = 1: one released epoch is one pass
    out = copy.deepcopy(net)
    method.run(out, retain, forget, val)
    flags = torch.cat(seen)
    assert int(flags.sum()) == len(forget.dataset), "every forget example once, flagged for the bad teacher"
    assert int((flags == 0).sum()) == round(0.3 * len(retain.dataset)), "a 30% share of retain, flagged 0"
    assert any(0 < int(f.sum()) < len(f) for f in seen), "forget and retain examples share batches (one shuffle)"
    before, after = snapshot(net), snapshot(out)
    assert any(not torch.equal(before[n], after[n]) for n in before)
