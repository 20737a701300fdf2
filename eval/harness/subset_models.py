"""How one model of a subset bank is made: the code the subset bank's cache key is computed from.

A subset bank (`subset_bank.py`) is built in rounds. Round r draws one random partition of the
training subset into `folds` equal parts from its own stream (root SUBSETS, spawn key (SUBSETS, 0, r));
model j of the round trains on every part but the j-th. Each model (index m = r * folds + j) has its
own initialisation and data-order streams (spawn key (SUBSETS, 1, 1 + m)); the original (index 0)
trains on the whole subset in its own order, one original for every forget set. Every model uses the
preset's recipe, as the bank's models do (`bank_models.py`), and records its logits on the whole
training subset and on the test split, so that any forget set can be scored from them later.
"""

import time
from dataclasses import replace

import numpy as np
import torch

from data.models import build_model
from data.splits import make_loader
from eval.harness.bank_models import prepare
from eval.harness.seeds import _streams
from eval.outputs import predict
from methods._train_recipe import train_from_scratch

SUBSETS = 4  # spawn-key root of subset banks (runs 1, bank 2, memorization 3: seeds.py, memorization_models.py)
PARTITION, MODEL = 0, 1  # second spawn-key level: a round's partition, a model's own streams
MODEL_CONSUMERS = ("init", "order")


def model_streams(m: int | None) -> dict[str, int]:
    """Seeds of subset model `m` (None: the original): initialisation (and augmentation), data order."""
    return _streams(0, (SUBSETS, MODEL, 0 if m is None else 1 + m), MODEL_CONSUMERS)


def round_folds(r: int, n: int, folds: int) -> np.ndarray:
    """(n,) int: the part of the training subset each example falls in, in round `r` (sizes differ by at most 1)."""
    seed = _streams(0, (SUBSETS, PARTITION, r), ("partition",))["partition"]
    order = np.random.default_rng(seed).permutation(n)
    fold = np.empty(n, np.int64)
    for j, part in enumerate(np.array_split(order, folds)):
        fold[part] = j
    return fold


def excluded(m: int, n: int, folds: int) -> np.ndarray:
    """(n,) bool: the examples subset model `m` never trains on (part m % folds of round m // folds)."""
    return round_folds(m // folds, n, folds) == m % folds


def train_subset_model(preset, x, y, val_x, val_y, test_x, m: int | None, folds: int, device):
    """Train subset model `m` (None: the original) on (x, y) minus its part; returns (net, outputs).

    outputs: `excluded` (n,) bool, `train_logits` (n, C) and `test_logits` float32, `val_correct` (n_val,)
    bool, `train_time_s`."""
    streams = model_streams(m)
    out = np.zeros(len(y), bool) if m is None else excluded(m, len(y), folds)
    keep = torch.from_numpy(~out)
    recipe = preset.recipe
    if m is None and recipe.best_from_epoch is not None:
        recipe = replace(recipe, best_from_epoch=0)  # the original may keep any epoch, as in bank_models.py
    net = prepare(build_model(preset.arch, preset.num_classes), device)
    loader = make_loader(x[keep], y[keep], recipe.batch_size, shuffle=True, seed=streams["order"])
    val = make_loader(val_x, val_y, 1000) if recipe.best_from_epoch is not None else None
    t0 = time.perf_counter()
    train_from_scratch(net, loader, recipe, seed=streams["init"], val_loader=val)
    seconds = time.perf_counter() - t0
    return net, {
        "excluded": out,
        "train_logits": predict(net, x).numpy(),
        "test_logits": predict(net, test_x).numpy(),
        "val_correct": (predict(net, val_x).argmax(1) == val_y).numpy(),
        "train_time_s": np.float64(seconds),
    }
