"""The mechanics of `rdq` (ours): forget's reset-and-distil cycles plus a quantile hinge on forget batches."""

import copy

import pytest
import torch

import methods
import methods.rdq as rdq_module
from methods._common import eval_mode
from methods._losses import true_label_confidence
from tests.methods.toy import fitted_tiny_cnn, random_loaders


@pytest.fixture(scope="module")
def setting():
    retain, forget, val = random_loaders((192, 64, 64), data_seed=5)
    return fitted_tiny_cnn(retain, epochs=2), (retain, forget, val)


def _run(net, loaders, **overrides):
    method = methods.get_method("rdq")(seed=1, min_steps=0, epoch_fraction=1.0, **overrides)
    net = copy.deepcopy(net)
    method.run(net, *loaders)
    return method, net


@pytest.mark.parametrize("every", [1, 2, 3])
def test_hinge_on_every_kth_step_on_forget_batches_in_eval_mode_against_f0_validation(setting, monkeypatch, every):
    base, loaders = setting
    _, forget, val = loaders
    calls = []
    real = rdq_module.quantile_hinge

    def spy(values, reference, squared=True):
        calls.append((values.detach().clone(), reference.clone(), squared))
        return real(values, reference, squared)

    seen = []
    real_hinge = rdq_module.forget_hinge

    def hinge_spy(net, x, y, reference):
        bn = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        before = [m.running_mean.clone() for m in bn]
        out = real_hinge(net, x, y, reference)
        seen.append((x, all(torch.equal(a, m.running_mean) for a, m in zip(before, bn)), net.training))
        return out

    monkeypatch.setattr(rdq_module, "quantile_hinge", spy)
    monkeypatch.setattr(rdq_module, "forget_hinge", hinge_spy)
    method, _ = _run(base, loaders, cycles=2, forget_every=every)
    steps = 2 * len(loaders[0])
    assert method.log_["forget_steps"] == len(range(0, steps, every)) == len(calls) == len(seen)
    forget_images = torch.cat([x for x, _ in forget])
    assert all(any(torch.equal(x[0], f) for f in forget_images) for x, _, _ in seen), "the hinge reads forget images"
    assert all(unchanged for _, unchanged, _ in seen), "the forget forward must not move BatchNorm statistics"
    assert all(training for *_, training in seen), "training mode is restored after the eval-mode forward"
    with eval_mode(base), torch.no_grad():
        ref = torch.cat([true_label_confidence(base(x), y) for x, y in val])
    assert all(torch.allclose(r.sort().values, ref.sort().values) and not sq for _, r, sq in calls), (
        "the reference is f0's validation confidences, and the hinge is unsquared"
    )


def test_beta_pulls_forget_confidence_down_and_zero_beta_reads_no_hinge(setting, monkeypatch):
    _, loaders = setting
    _, forget, _ = loaders
    base = fitted_tiny_cnn(forget, epochs=40, momentum=0.9)  # memorises the forget set: the hinge has work

    def forget_confidence(net):
        with eval_mode(net), torch.no_grad():
            return torch.cat([true_label_confidence(net(x), y) for x, y in forget]).mean()

    calls = []
    real = rdq_module.forget_hinge
    monkeypatch.setattr(rdq_module, "forget_hinge", lambda *a: calls.append(1) or real(*a))
    _, plain = _run(base, loaders, beta=0.0)
    assert not calls, "beta 0: the hinge is never computed"
    _, pulled = _run(base, loaders, beta=5.0, forget_every=1, fresh_max_update=0.3, max_update=0.05, lr=0.05)
    assert calls
    assert forget_confidence(pulled) < forget_confidence(plain) - 0.1


def test_runs_differ_by_seed_and_repeat_with_it(setting):
    base, loaders = setting
    (a, net_a), (b, net_b) = (_run(base, loaders), _run(base, loaders))
    assert a.log_["reset"] == b.log_["reset"]
    assert all(torch.equal(p, q) for p, q in zip(net_a.state_dict().values(), net_b.state_dict().values()))
    draws = set()
    for seed in range(6):
        m = methods.get_method("rdq")(seed=seed, min_steps=0, epoch_fraction=0.2)
        m.run(copy.deepcopy(base), *loaders)
        draws.add(tuple(map(tuple, m.log_["reset"])))
    assert len(draws) > 2, "the reset layers come from the run's seed"
