"""The mechanics of `uvt` (ours): per-example forget targets from unseen views, per-run head bias noise.
The views themselves (`methods/_views.py`) are tested in tests/methods/test_views.py."""

import copy

import pytest
import torch

import methods
import methods.uvt as uvt_module
from methods._common import eval_mode
from methods._entry import loader_statistics, quantile_targets
from methods._losses import true_label_confidence
from methods._partial import last_linear
from methods._views import flip_and_shifts, mean_over_views
from tests.methods.toy import fitted_tiny_cnn, random_loaders, snapshot


@pytest.fixture(scope="module")
def setting():
    retain, forget, val = random_loaders((192, 64, 64), data_seed=7)
    return fitted_tiny_cnn(retain, epochs=2), (retain, forget, val)


def _run(net, loaders, **overrides):
    method = methods.get_method("uvt")(seed=3, **{"lr": 0.05, **overrides})
    net = copy.deepcopy(net)
    method.run(net, *loaders)
    return method, net


def _confidences(net, loader):
    return loader_statistics(net, loader, true_label_confidence)[0]


def _spy_targets(monkeypatch):
    calls, real = [], uvt_module.UVT.forget_loss

    def spy(self, confidences, targets, reference):
        calls.append(targets.detach().clone())
        return real(self, confidences, targets, reference)

    monkeypatch.setattr(uvt_module.UVT, "forget_loss", spy)
    return calls


@pytest.mark.parametrize("level", ["views", "val"])
def test_targets_are_the_views_or_the_reference_at_their_ranks(setting, monkeypatch, level):
    base, loaders = setting
    _, forget, val = loaders
    calls = _spy_targets(monkeypatch)
    method, _ = _run(base, loaders, level=level, forget_every=1, epochs=1, val_batches=0)
    _, x, y = loader_statistics(base, forget, true_label_confidence, keep_batches=True)
    views = mean_over_views(base, x, y, true_label_confidence, flip_and_shifts([1, 2, 4], x.shape[-1]))
    want = views if level == "views" else quantile_targets(views, _confidences(base, val))
    assert method.log_["target_mean"] == pytest.approx(float(want.mean()), abs=1e-5)
    per_pass = -(-len(y) // forget.batch_size)
    seen = torch.cat(calls[:per_pass])
    assert len(seen) == len(y), "one pass draws every forget example once"
    assert torch.allclose(seen.sort().values, want.sort().values, atol=1e-5)


@pytest.mark.parametrize("visits, every", [(1.0, 3), (3.0, 1), (0.5, 6)])
def test_the_hinge_visits_each_forget_example_about_visits_times(setting, monkeypatch, visits, every):
    base, loaders = setting
    retain, forget, _ = loaders
    calls = _spy_targets(monkeypatch)
    method, _ = _run(base, loaders, epochs=1, visits=visits, forget_every=5)  # forget_every is derived
    steps = len(retain)  # 6 batches of 32; 64 forget examples in batches of 32
    assert method.log_["forget_every"] == every and len(calls) == len(range(0, steps, every))
    assert method.params.forget_every == 5, "the caller's params are left as they were"


def test_hinge_is_per_example_and_one_sided():
    method = methods.get_method("uvt")()
    c, t = torch.tensor([3.0, -1.0, 0.5]), torch.tensor([1.0, 0.0, 0.5])
    assert float(method.forget_loss(c, t, None)) == pytest.approx(2.0 / 3)


def test_hinge_lowers_forget_confidence(setting):
    _, loaders = setting
    _, forget, _ = loaders
    base = fitted_tiny_cnn(forget, epochs=40, momentum=0.9)
    common = {"forget_every": 1, "epochs": 2, "calibrate": False, "bias_noise": 0.0}
    _, with_hinge = _run(base, loaders, beta=3.0, **common)
    _, without = _run(base, loaders, beta=0.0, **common)
    assert _confidences(with_hinge, forget).median() < _confidences(without, forget).median() - 0.2


def test_bias_noise_moves_only_the_head_bias_and_differs_by_seed(setting):
    base, loaders = setting
    _, quiet = _run(base, loaders, epochs=1, bias_noise=0.0)
    _, noisy = _run(base, loaders, epochs=1, bias_noise=0.5)
    head = last_linear(base)
    a, b = snapshot(quiet), snapshot(noisy)
    changed = [n for n in a if not torch.equal(a[n], b[n])]
    assert changed == [f"{head}.bias"]
    assert 0.1 < float((b[f"{head}.bias"] - a[f"{head}.bias"]).std()) < 1.5
    other = copy.deepcopy(base)
    methods.get_method("uvt")(seed=4, lr=0.05, epochs=1).run(other, *loaders)
    x = next(iter(loaders[2]))[0]
    with eval_mode(noisy), eval_mode(other), torch.no_grad():
        assert not torch.allclose(noisy(x), other(x))


def test_runs_repeat_with_one_seed(setting):
    base, loaders = setting
    _, a = _run(base, loaders, epochs=1)
    _, b = _run(base, loaders, epochs=1)
    x = next(iter(loaders[2]))[0]
    with eval_mode(a), eval_mode(b), torch.no_grad():
        assert torch.equal(a(x), b(x))


@pytest.mark.parametrize(
    "bad", [{"level": "test"}, {"bias_noise": -0.1}, {"shifts": "1,x"}, {"shifts": "0"}, {"visits": 0.0}]
)
def test_bad_values_are_refused(bad):
    with pytest.raises(ValueError):
        methods.get_method("uvt")(**bad)
