"""Splits and loaders, as in the starting kit.

- training subset: the preset's `n_train` images drawn with a fixed seed (all 50,000 for `full`);
- forget: the preset's forget protocol over that subset: a random `forget_frac` (or `forget_size`)
  drawn with `forget_seed`, or every image of `forget_class`; for a preset with `official_files`
  and the default protocol, the official `forget_idx.npy` from the data root when present;
  retain = the rest;
- the 10,000 test images split 50/50 into test and validation with `random_split` and
  `torch.Generator().manual_seed(42)`, exactly as the starting kit does;
- normalisation with the starting kit's mean and std.
"""

import hashlib
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset, random_split

from data.cifar10 import DataError, load_cifar10, resolve_root

if TYPE_CHECKING:  # a type only: what a split is made of is the preset's fields, not presets.py's code
    from data.presets import Preset

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
SUBSET_SEED, TEST_SPLIT_SEED = 0, 42
#: dataset name -> loader returning uint8 train_x/test_x (n, 3, 32, 32), int64 labels and `official`
DATASETS = {"cifar10": load_cifar10}


class DictDataset(Dataset):
    """Yields Kaggle-style {"image", "age_group"} items from tensors."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"image": self.x[i], "age_group": self.y[i]}


@dataclass
class Splits:
    """Float tensors of each split, (n, 3, 32, 32), normalised or in 0-255, with int64 labels."""

    retain_x: torch.Tensor
    retain_y: torch.Tensor
    forget_x: torch.Tensor
    forget_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    forget_idx: np.ndarray  # indices into the training subset
    train_idx: np.ndarray  # indices of the training subset into CIFAR-10's 50,000
    official_data: bool
    official_forget: bool
    num_classes: int = 10
    protocol: str = ""  # the forget protocol in words (Preset.forget_protocol)
    normalized: bool = True  # False: float pixels in 0-255 (the Kaggle presets)

    @property
    def train_x(self):
        return torch.cat([self.retain_x, self.forget_x])

    @property
    def train_y(self):
        return torch.cat([self.retain_y, self.forget_y])

    def fingerprint(self) -> str:
        """Hash of the split indices and pixel data: part of the bank's cache key."""
        h = hashlib.sha256(self.protocol.encode())  # the pixels below differ with normalization too
        for a in (
            self.train_idx,
            self.forget_idx,
            self.retain_x.numpy()[:, :, ::4, ::4],
            self.forget_x.numpy()[:, :, ::4, ::4],
            self.test_x.numpy()[:, :, ::4, ::4],
            self.retain_y.numpy(),
            self.forget_y.numpy(),
            self.test_y.numpy(),
            self.val_y.numpy(),
        ):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]


def normalize(x_uint8: np.ndarray, enabled: bool = True) -> torch.Tensor:
    """uint8 (n, 3, 32, 32) -> float32 tensor: normalised as the starting kit does, or 0-255 when not enabled."""
    if not enabled:
        return torch.from_numpy(x_uint8).float()
    x = torch.from_numpy(x_uint8).float().div_(255)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _forget_indices(preset: "Preset", y: np.ndarray, root) -> tuple[np.ndarray, bool]:
    """Indices into the training subset of the forget set, and whether they are the official ones."""
    official_path = root / "forget_idx.npy"
    if preset.official_files and official_path.exists() and preset.default_forget:
        try:
            idx = np.sort(np.load(official_path).astype(np.int64))
        except Exception as exc:
            raise DataError(f"cannot read {official_path}: {exc}") from None
        if idx.min() < 0 or idx.max() >= len(y) or len(np.unique(idx)) != len(idx):
            raise DataError(f"{official_path}: indices must be unique and within [0, {len(y)})")
        return idx, True
    if preset.forget_class is not None:
        idx = np.flatnonzero(y == preset.forget_class)
        if len(idx) == 0 or len(idx) == len(y):
            raise DataError(
                f"--forget-class {preset.forget_class}: the training subset has {len(idx)} of "
                f"{len(y)} images of that class; the forget and retain sets must both be non-empty"
            )
        return idx, False
    n_forget = preset.forget_size or max(1, int(round(preset.forget_frac * len(y))))
    if n_forget >= len(y):
        raise DataError(f"--forget-size {n_forget}: the training subset has only {len(y)} images")
    return np.sort(np.random.default_rng(preset.forget_seed).choice(len(y), n_forget, replace=False)), False


def make_splits(preset: "Preset", data_root=None, download: bool = True) -> Splits:
    """Build the preset's retain / forget / test / validation splits."""
    if preset.dataset not in DATASETS:
        raise DataError(f"unknown dataset {preset.dataset!r}; known: {', '.join(DATASETS)}")
    root = resolve_root(data_root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = DATASETS[preset.dataset](root, download=download)
    for w in caught:  # re-emit once, pointing at the caller
        warnings.warn(str(w.message), stacklevel=2)
    if raw["train_y"].max() >= preset.num_classes or raw["test_y"].max() >= preset.num_classes:
        raise DataError(
            f"{preset.dataset}: labels reach {int(raw['train_y'].max())}, but preset {preset.name!r} "
            f"has {preset.num_classes} classes"
        )
    n_all = len(raw["train_y"])
    if preset.n_train is None or preset.n_train >= n_all:
        train_idx = np.arange(n_all)
    else:
        train_idx = np.sort(np.random.default_rng(SUBSET_SEED).choice(n_all, preset.n_train, replace=False))
    x = raw["train_x"][train_idx]
    y = raw["train_y"][train_idx]
    forget_idx, official_forget = _forget_indices(preset, y, root)
    is_forget = np.zeros(len(y), bool)
    is_forget[forget_idx] = True
    test_half, val_half = random_split(
        range(len(raw["test_y"])), [0.5, 0.5], generator=torch.Generator().manual_seed(TEST_SPLIT_SEED)
    )
    test_i, val_i = np.array(test_half.indices), np.array(val_half.indices)
    if preset.n_test is not None:
        test_i, val_i = test_i[: preset.n_test // 2], val_i[: preset.n_test // 2]
    norm = preset.normalize
    return Splits(
        retain_x=normalize(x[~is_forget], norm),
        retain_y=torch.from_numpy(y[~is_forget]),
        forget_x=normalize(x[is_forget], norm),
        forget_y=torch.from_numpy(y[is_forget]),
        test_x=normalize(raw["test_x"][test_i], norm),
        test_y=torch.from_numpy(raw["test_y"][test_i]),
        val_x=normalize(raw["test_x"][val_i], norm),
        val_y=torch.from_numpy(raw["test_y"][val_i]),
        forget_idx=forget_idx,
        train_idx=train_idx,
        official_data=raw["official"],
        official_forget=official_forget,
        num_classes=preset.num_classes,
        protocol=preset.forget_protocol,
        normalized=norm,
    )


def make_loader(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    shuffle: bool = False,
    seed: int | None = None,
    dict_batches: bool = False,
) -> DataLoader:
    """A DataLoader over tensors yielding (inputs, targets), or {"image", "age_group"} dicts."""
    ds = DictDataset(x, y) if dict_batches else TensorDataset(x, y)
    gen = None
    if shuffle:
        gen = torch.Generator()
        gen.manual_seed(seed) if seed is not None else gen.seed()
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen)
