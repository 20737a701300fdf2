"""The mechanics of `ulf` (ours): hot retain fine-tune, forget hinge to f0's validation confidences, calibration."""

import copy

import pytest
import torch

import methods
import methods.ulf as ulf_module
from methods._common import eval_mode
from methods._entry import loader_statistics
from methods._losses import true_label_confidence
from tests.methods.toy import fitted_tiny_cnn, random_loaders


@pytest.fixture(scope="module")
def setting():
    retain, forget, val = random_loaders((192, 64, 64), data_seed=7)
    return fitted_tiny_cnn(retain, epochs=2), (retain, forget, val)


def _run(net, loaders, **overrides):
    method = methods.get_method("ulf")(seed=3, **{"lr": 0.05, **overrides})
    net = copy.deepcopy(net)
    method.run(net, *loaders)
    return method, net


def _confidences(net, loader):
    return loader_statistics(net, loader, true_label_confidence)[0]


def test_schedule_is_hot_then_linear_down_to_final():
    f = ulf_module.hot_then_anneal(10, 0.4, 0.25)
    assert [f(i) for i in range(6)] == [1.0] * 6
    assert f(6) == 1.0 and f(8) == pytest.approx(0.625) and f(10) == pytest.approx(0.25)
    assert ulf_module.hot_then_anneal(10, 0.0, 0.0)(9) == 1.0, "anneal 0: constant"


def test_scale_logits_scales_logits_and_keeps_predictions(setting):
    base, (_, _, val) = setting
    net = copy.deepcopy(base).eval()
    x = next(iter(val))[0]
    with torch.no_grad():
        before = net(x)
        ulf_module.scale_logits_(net, 1.7)
        after = net(x)
    assert torch.allclose(after, 1.7 * before, atol=1e-5)
    assert torch.equal(after.argmax(1), before.argmax(1))


@pytest.mark.parametrize("every", [1, 3])
def test_hinge_reads_forget_batches_every_kth_step_against_f0_validation(setting, monkeypatch, every):
    base, loaders = setting
    retain, forget, val = loaders
    calls = []
    real = ulf_module.quantile_hinge

    def spy(values, reference, squared=True):
        calls.append((values.detach().clone(), reference.clone(), squared))
        return real(values, reference, squared)

    monkeypatch.setattr(ulf_module, "quantile_hinge", spy)
    method, _ = _run(base, loaders, forget_every=every, epochs=2, val_batches=0)
    steps = 2 * len(retain)
    assert len(calls) == len(range(0, steps, every))
    reference = _confidences(base, val)
    assert all(torch.allclose(r.sort().values, reference.sort().values) and not sq for _, r, sq in calls)
    assert all(len(v) == forget.batch_size for v, _, _ in calls), "the hinge takes whole forget batches"


def test_hinge_lowers_forget_confidence_and_beta_zero_never_reads_forget(setting):
    _, loaders = setting
    retain, forget, val = loaders
    base = fitted_tiny_cnn(forget, epochs=40, momentum=0.9)  # the forget set memorised: above validation level
    assert _confidences(base, forget).median() > _confidences(base, val).median() + 1.0
    _, with_hinge = _run(base, loaders, beta=3.0, forget_every=1, epochs=2, calibrate=False)
    _, without = _run(base, loaders, beta=0.0, epochs=2, calibrate=False)
    assert _confidences(with_hinge, forget).median() < _confidences(without, forget).median() - 0.2

    class Exploding(torch.utils.data.Dataset):
        def __len__(self):
            return len(forget.dataset)

        def __getitem__(self, i):
            raise AssertionError("the forget set was read")

    untouchable = torch.utils.data.DataLoader(Exploding(), batch_size=forget.batch_size)
    methods.get_method("ulf")(seed=3, beta=0.0, epochs=1).run(copy.deepcopy(base), retain, untouchable, val)
    with pytest.raises(AssertionError, match="forget set was read"):
        methods.get_method("ulf")(seed=3, beta=0.1, epochs=1).run(copy.deepcopy(base), retain, untouchable, val)


def test_calibration_matches_the_reference_spread(setting):
    base, loaders = setting
    _, _, val = loaders
    method, net = _run(base, loaders, epochs=1, val_batches=0, max_scale=4.0)
    k = method.log_["scale"]
    assert k != 1.0
    spread = _confidences(net, val).std()
    assert spread == pytest.approx(float(_confidences(base, val).std()), rel=0.1)
    _, uncalibrated = _run(base, loaders, epochs=1, val_batches=0, calibrate=False)
    x = next(iter(val))[0]
    with eval_mode(net), eval_mode(uncalibrated), torch.no_grad():
        assert torch.allclose(net(x), k * uncalibrated(x), atol=1e-4), "same run, logits scaled by k"


def test_runs_differ_by_seed_and_repeat_with_one(setting):
    base, loaders = setting
    _, a = _run(base, loaders, epochs=1)
    _, b = _run(base, loaders, epochs=1)
    c = copy.deepcopy(base)
    methods.get_method("ulf")(seed=4, lr=0.05, epochs=1).run(c, *loaders)
    x = next(iter(loaders[2]))[0]
    with eval_mode(a), eval_mode(b), eval_mode(c), torch.no_grad():
        assert torch.equal(a(x), b(x))
        assert not torch.allclose(a(x), c(x))


def test_bad_values_are_refused():
    for bad in ({"anneal": 1.5}, {"final_lr": -0.1}, {"forget_every": 0}, {"beta": -1.0}, {"max_scale": 0.5}):
        with pytest.raises(ValueError):
            methods.get_method("ulf")(**bad)


def test_a_collapsing_hot_phase_restarts_slower_from_the_entry_weights(setting):
    base, loaders = setting
    calm, _ = _run(base, loaders, epochs=1)
    assert calm.log_["lr"] == [0.05], "the check must not fire at a sane rate"
    method, net = _run(base, loaders, epochs=1, lr=200.0, max_update=0.0, window=2)
    rates = method.log_["lr"]
    assert len(rates) > 1 and rates == [200.0 / 4**i for i in range(len(rates))]
    assert all(torch.isfinite(q).all() for q in net.parameters())
    with pytest.raises(RuntimeError, match="chance level"):
        _run(base, loaders, epochs=1, lr=200.0, max_update=0.0, window=2, backoffs=0)


def test_an_attempt_below_the_accuracy_floor_restarts_and_the_floor_can_be_turned_off(setting, monkeypatch):
    base, loaders = setting
    reads = []

    def fake(net, batches):  # the entry reads 1.0, every attempt 0.3: below chance + 0.5 (1.0 - chance)
        reads.append([y.clone() for _, y in batches])
        return 1.0 if len(reads) == 1 else 0.3

    monkeypatch.setattr(ulf_module, "retain_accuracy", fake)
    with pytest.raises(RuntimeError, match="below its floor"):
        _run(base, loaders, epochs=1, backoffs=2)
    assert len(reads) == 1 + 3, "read at entry and after each of the three attempts"
    assert all(all(torch.equal(a, b) for a, b in zip(r, reads[0])) for r in reads), "the same retain batches"
    reads.clear()
    method, _ = _run(base, loaders, epochs=1, keep=0.0)
    assert reads == [] and method.log_["lr"] == [0.05]
