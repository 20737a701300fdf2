"""Splits follow the starting kit: fixed forget draw, 50/50 test/val with seed 42, normalisation."""

import numpy as np
import torch
from torch.utils.data import random_split

from data.presets import get_preset
from data.splits import make_loader, make_splits


def test_tiny_splits(tiny_splits):
    s = tiny_splits
    p = get_preset("tiny")
    assert len(s.forget_y) == round(p.forget_frac * p.n_train)
    assert len(s.retain_y) + len(s.forget_y) == p.n_train
    assert len(set(s.forget_idx)) == len(s.forget_idx)
    assert len(s.test_y) == len(s.val_y) == p.n_test // 2


def test_cpu_splits_match_starting_kit(data_root):
    s = make_splits(get_preset("cpu"), data_root)
    assert (len(s.retain_y), len(s.forget_y), len(s.test_y), len(s.val_y)) == (9000, 1000, 5000, 5000)
    # the starting kit's test/val split: random_split([0.5, 0.5]) with manual_seed(42)
    test_half, _ = random_split(range(10000), [0.5, 0.5], generator=torch.Generator().manual_seed(42))
    from data.cifar10 import load_cifar10

    raw = load_cifar10(data_root, download=False)
    assert torch.equal(s.test_y, torch.from_numpy(raw["test_y"][np.array(test_half.indices)]))
    # normalised with the starting kit's statistics: channel means near 0
    assert abs(float(s.retain_x[:, 0].mean())) < 0.2
    assert s.fingerprint() == make_splits(get_preset("cpu"), data_root).fingerprint()


def test_loader_formats(tiny_splits):
    s = tiny_splits
    t = next(iter(make_loader(s.forget_x, s.forget_y, 8)))
    d = next(iter(make_loader(s.forget_x, s.forget_y, 8, dict_batches=True)))
    assert isinstance(t, (list, tuple)) and set(d) == {"image", "age_group"}
    assert torch.equal(t[0], d["image"]) and torch.equal(t[1], d["age_group"])
    a = [b[1] for b in make_loader(s.retain_x, s.retain_y, 50, shuffle=True, seed=3)]
    b = [b[1] for b in make_loader(s.retain_x, s.retain_y, 50, shuffle=True, seed=3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_forget_protocols(tiny_splits, data_root):
    import pytest

    from data.cifar10 import DataError

    p = get_preset("tiny")
    other_seed = make_splits(p.with_forget(seed=2), data_root)
    assert len(other_seed.forget_idx) == len(tiny_splits.forget_idx)
    assert set(other_seed.forget_idx) != set(tiny_splits.forget_idx)
    assert other_seed.fingerprint() != tiny_splits.fingerprint()
    sized = make_splits(p.with_forget(size=17), data_root)
    assert len(sized.forget_y) == 17 and len(sized.retain_y) == p.n_train - 17
    assert len(make_splits(p.with_forget(frac=0.2), data_root).forget_y) == 100
    by_class = make_splits(p.with_forget(klass=3), data_root)
    assert (by_class.forget_y == 3).all() and not (by_class.retain_y == 3).any()
    assert by_class.protocol == "class 3" and p.with_forget(klass=3).tag == "tiny-forget-class3"
    assert p.tag == "tiny" and p.with_forget(seed=1).tag == "tiny", "the default protocol keeps the plain tag"
    with pytest.raises(DataError, match="only 500 images"):
        make_splits(p.with_forget(size=500), data_root)
    with pytest.raises(DataError, match="labels reach 9, but preset 'tiny' has 5 classes"):
        from dataclasses import replace

        make_splits(replace(p, num_classes=5), data_root)
