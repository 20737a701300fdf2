"""The literature's baselines as released: epochs scaled to the preset's retraining and cut by one
`time_factor` (as the Kaggle entries, `_released`), the released learning rates, and the reference
loaders' crop/flip views drawn from the run's seed.

Each released epoch over a loader of n batches takes round(E/30 · time_factor · n) steps (RUM and the
organizers retrain for 30 epochs); the views change the images a step sees and nothing else.
"""

import copy

import pytest
import torch

import methods
import methods.ft as ft_mod
import methods.ga as ga_mod
import methods.ng as ng_mod
import methods.rl_og as rl_mod
import methods.scrub as scrub_mod
from methods._train_recipe import Recipe
from tests.methods.toy import count_steps, fitted_tiny_cnn, random_loaders

RELEASED = {
    "ft": dict(epochs=10, lr=0.01),
    "ft_l1": dict(epochs=10, lr=0.01),
    "rl_og": dict(epochs=10, lr=0.1),
    "salun": dict(epochs=10, lr=0.013, mask_ratio=0.5),
    "ga": dict(epochs=5, lr=1e-4),
    "ng": dict(epochs=5, lr=0.01, alpha=0.99),
    "scrub": dict(
        epochs=3,
        msteps=2,
        lr=5e-4,
        ce_weight=0.99,
        kl_weight=0.001,
        kd_T=4.0,
        forget_batch_size=32,
        lr_decay_epochs="3 5 9",
    ),
}


@pytest.mark.parametrize("key", sorted(RELEASED))
def test_defaults_are_the_released_values(key):
    params = methods.get_method(key).make_params()
    assert {k: getattr(params, k) for k in RELEASED[key]} == RELEASED[key]
    assert params.max_update == 0.0


def _loaders(n_retain=320, n_forget=64):
    return random_loaders((n_retain, n_forget, 32), data_seed=4, batch_size=32)  # 10 retain, 2 forget batches


def _method(cls, epochs_30, **kw):
    m = cls(seed=0, **kw)
    m.configure(Recipe(epochs=epochs_30, lr=0.1))
    return m


@pytest.mark.parametrize("epochs_30, factor, per_epoch", [(30, 1.0, 10), (15, 1.0, 5), (15, 0.5, 2), (3, 0.5, 1)])
def test_ft_and_rl_og_epochs_follow_e_over_30_times_the_time_factor(monkeypatch, epochs_30, factor, per_epoch):
    for module, cls, n in ((ft_mod, ft_mod.FT, 10), (rl_mod, rl_mod.RLOriginal, 12)):  # rl_og: F ∪ R, 12 batches
        steps = count_steps(monkeypatch, module)
        retain, forget, val = _loaders()
        _method(cls, epochs_30, epochs=3, time_factor=factor).run(fitted_tiny_cnn(retain), retain, forget, val)
        assert steps == [max(1, round(epochs_30 / 30 * factor * n))] * 3, cls.key
        monkeypatch.undo()


def test_ga_scales_its_forget_passes_and_ng_its_paired_epochs(monkeypatch):
    steps = count_steps(monkeypatch, ga_mod)
    retain, forget, val = _loaders(n_forget=256)  # 8 forget batches
    _method(ga_mod.GA, 15, epochs=2).run(fitted_tiny_cnn(retain), retain, forget, val)
    assert steps == [4, 4]
    calls = []
    real = ng_mod.train_paired
    monkeypatch.setattr(
        ng_mod, "train_paired", lambda net, pairs, *a, **k: calls.append(len(pairs)) or real(net, pairs, *a, **k)
    )
    _method(ng_mod.NG, 15, epochs=2, time_factor=0.4).run(fitted_tiny_cnn(retain), retain, forget, val)
    assert calls == [2, 2]  # round(0.5 · 0.4 · 10)


def test_scrub_scales_its_max_and_min_passes(monkeypatch):
    steps = count_steps(monkeypatch, scrub_mod)
    retain, forget, val = _loaders(n_forget=256)  # 10 retain batches, 8 forget batches of 32
    _method(scrub_mod.SCRUB, 15).run(fitted_tiny_cnn(retain), retain, forget, val)
    assert steps == [4, 5, 4, 5, 5]  # max, min, max, min, min


def test_views_are_crops_and_flips_drawn_from_the_seed(monkeypatch):
    """With views every image a step sees is a crop/flip of a retain image, and the same seed sees the
    same views; without them the images are the loader's own."""
    seen = []
    real = ft_mod.batch_cross_entropy
    monkeypatch.setattr(ft_mod, "batch_cross_entropy", lambda net, x, y: seen.append(x.clone()) or real(net, x, y))
    retain, forget, val = _loaders()
    own = {x.numpy().tobytes() for x, _ in retain.dataset}
    net = fitted_tiny_cnn(retain)

    def images(**kw):
        seen.clear()
        ft_mod.FT(seed=3, epochs=1, time_factor=1.0, **kw).run(copy.deepcopy(net), retain, forget, val)
        return torch.cat(seen)

    plain, viewed, again = images(augment=False), images(), images()
    assert {x.numpy().tobytes() for x in plain} <= own
    assert sum(x.numpy().tobytes() in own for x in viewed) < 0.2 * len(viewed)
    assert torch.equal(viewed, again)
