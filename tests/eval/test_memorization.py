"""The memorization estimate and the forget sets it picks (RUM's protocol, Feldman & Zhang's estimator)."""

import dataclasses

import numpy as np
import pytest
import torch

from data.presets import get_preset
from data.splits import Splits
from eval.harness.forget_sets import build_splits, resplit
from eval.harness.memorization_bank import MemorizationBank, training_subset
from eval.memorization import memorization_groups, memorization_scores
from methods._train_recipe import Recipe


def test_scores_match_definition():
    members = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1]], bool)  # (K=4, n=3)
    correct = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 1, 1]], bool)
    mem, n_in, n_out = memorization_scores(members, correct)
    # example 0: in models 0, 1 (both correct), out of 2, 3 (both wrong): 1 - 0
    # example 1: in 0, 2 (correct), out 1 (wrong), 3 (correct): 1 - 0.5;  example 2: never wrong when in, 0 out
    np.testing.assert_allclose(mem, [1.0, 0.5, 1.0])
    np.testing.assert_array_equal(n_in, [2, 2, 2])
    mem, _, _ = memorization_scores(np.ones((3, 2), bool), np.ones((3, 2), bool))
    assert np.isnan(mem).all(), "an example no model left out has no estimate"
    with pytest.raises(ValueError):
        memorization_scores(np.ones((2, 3), bool), np.ones((3, 2), bool))


def test_groups_follow_the_definitions():
    mem = np.array([0.9, -0.2, 0.5, 0.45, 0.0, 0.7, np.nan, 0.1, 0.55])
    assert list(memorization_groups(mem, 3, "high")) == [0, 5, 8]
    assert list(memorization_groups(mem, 3, "low")) == [1, 4, 7]
    assert list(memorization_groups(mem, 3, "mid")) == [2, 3, 8]  # |mem - 0.5| = 0, 0.05, 0.05
    mix = memorization_groups(mem, 3, "mix")
    # a third each: the top of high (0), the closest-to-0.5 not taken (2), the largest of the 3 lowest (7)
    assert list(mix) == [0, 2, 7]
    mix6 = memorization_groups(mem, 6, "mix")
    assert len(set(mix6)) == 6 and 6 not in mix6, "mix has no repeats and never picks a NaN"
    with pytest.raises(ValueError):
        memorization_groups(mem, 9, "high")  # only 8 have an estimate
    with pytest.raises(ValueError):
        memorization_groups(mem, 2, "top")


def test_preset_options_and_tags():
    cpu = get_preset("cpu")
    high = cpu.with_forget(forget_set="mem-high")
    assert high.tag == "cpu-forget-mem-high" and "mem-high 10%" in high.forget_protocol
    assert cpu.with_forget(forget_set="mem-low", size=300).tag == "cpu-forget-mem-low-n300"
    assert cpu.with_forget(forget_set="random").forget_protocol == cpu.forget_protocol
    for bad in (
        {"forget_set": "mem-top"},
        {"forget_set": "mem-high", "klass": 3},
        {"forget_set": "mem-mid", "seed": 4},
    ):
        with pytest.raises(ValueError):
            cpu.with_forget(**bad)


def _synthetic_splits(n=200, planted=10, seed=0):
    """Ten class templates plus noise; the first `planted` examples are atypical: each its own random
    pattern with an arbitrary label, learnable only by a model that trained on it (Feldman's long tail)."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(10, 3, 32, 32, generator=g)
    y = torch.arange(n) % 10
    x = 1.5 * templates[y] + torch.randn(n, 3, 32, 32, generator=g)
    x[:planted] = 3.0 * torch.randn(planted, 3, 32, 32, generator=g)
    xv = 1.5 * templates[torch.arange(40) % 10] + torch.randn(40, 3, 32, 32, generator=g)
    yv = torch.arange(40) % 10
    forget = np.arange(n - 10, n)
    keep = torch.ones(n, dtype=torch.bool)
    keep[forget] = False
    return Splits(
        retain_x=x[keep],
        retain_y=y[keep],
        forget_x=x[~keep],
        forget_y=y[~keep],
        test_x=xv,
        test_y=yv,
        val_x=xv,
        val_y=yv,
        forget_idx=forget,
        train_idx=np.arange(n),
        official_data=False,
        official_forget=False,
        protocol="synthetic",
    )


def test_estimator_recovers_planted_memorized_examples(tmp_path):
    """Atypical examples are classified right only by the models that trained on them: they must get
    the highest memorization, the typical ones about 0."""
    splits = _synthetic_splits()
    preset = dataclasses.replace(
        get_preset("tiny"),
        name="synthetic",
        mem_models=8,
        recipe=Recipe(epochs=40, lr=0.05, batch_size=25, schedule="onecycle"),
    )
    bank = MemorizationBank(preset, splits, home=tmp_path)
    bank.ensure(preset.mem_models)
    table = bank.estimates(preset.mem_models)
    assert (table["n_in"] + table["n_out"] == preset.mem_models).all()
    mem = table["mem"].to_numpy()
    top = set(memorization_groups(mem, 10, "high"))
    assert len(top & set(range(10))) >= 9, (
        f"planted examples' mem {mem[:10].round(2)}, others' mean {mem[10:].mean():.2f}"
    )
    assert mem[:10].mean() > 0.6 and abs(np.nanmean(mem[10:])) < 0.1
    # cached and resumable: a second bank object reuses every model; a deleted output is rebuilt alone
    again = MemorizationBank(preset, splits, home=tmp_path)
    assert again.dir == bank.dir and all(again.complete(k) for k in range(preset.mem_models))
    again._paths(3)[1].unlink()
    assert not again.complete(3)
    again.ensure(preset.mem_models)
    np.testing.assert_array_equal(again.estimates(preset.mem_models)["mem"].to_numpy(), mem)
    path = again.write_estimates(preset.mem_models)
    assert path.read_text().startswith("index,cifar_index,label,mem,n_in,n_out")


def test_resplit_moves_only_examples_between_retain_and_forget():
    splits = _synthetic_splits()
    x, y = training_subset(splits)
    new = resplit(splits, [3, 1, 150], "mine")
    assert new.protocol == "mine" and list(new.forget_idx) == [1, 3, 150]
    assert torch.equal(new.forget_x, x[[1, 3, 150]]) and torch.equal(new.forget_y, y[[1, 3, 150]])
    assert len(new.retain_y) == len(y) - 3 and torch.equal(new.test_x, splits.test_x)
    x2, y2 = training_subset(new)
    assert torch.equal(x2, x) and torch.equal(y2, y)
    for bad in ([], [1, 1], [-1], [len(y)]):
        with pytest.raises(ValueError):
            resplit(splits, bad, "bad")


def test_build_splits_mem_high_on_tiny(data_root, tmp_path):
    preset = get_preset("tiny").with_forget(forget_set="mem-high")
    info = {}
    splits = build_splits(preset, data_root, home=tmp_path, info=info)
    assert len(splits.forget_y) == 50 and info["models"] == 4
    assert info["forget_mem_mean"] > info["all_mem_mean"]
    assert splits.protocol == preset.forget_protocol
    random = build_splits(get_preset("tiny"), data_root, home=tmp_path)
    assert splits.fingerprint() != random.fingerprint()
    assert torch.equal(torch.sort(splits.train_y).values, torch.sort(random.train_y).values)
