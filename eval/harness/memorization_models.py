"""How one memorization model is made: the code the memorization cache's key is computed from.

Model k trains with the preset's recipe on a random half of the training subset, its membership,
initialisation and data order each drawn from its own stream of the seed tree (root MEMORIZATION,
shared with neither the bank nor the runs), and records which training examples it classifies
correctly. A recipe that keeps the best-validation checkpoint selects it on the validation split.
"""

import time

import numpy as np
import torch

from data.models import build_model
from data.splits import make_loader
from eval.harness.bank_models import prepare
from eval.harness.seeds import _streams
from eval.outputs import predict
from methods._train_recipe import train_from_scratch

MEMORIZATION = 3  # spawn-key root of the memorization models (runs 1, bank 2: seeds.py)
MEM_CONSUMERS = ("members", "init", "order")
FRACTION = 0.5  # each model trains on this fraction of the training subset


def mem_streams(k: int) -> dict[str, int]:
    """Seeds of memorization model k: its membership draw, initialisation (and augmentation), data order."""
    return _streams(0, (MEMORIZATION, k), MEM_CONSUMERS)


def members(k: int, n: int) -> np.ndarray:
    """(n,) bool: the training examples model k trains on (exactly ⌊FRACTION·n⌋, from its stream)."""
    chosen = np.random.default_rng(mem_streams(k)["members"]).permutation(n)[: int(FRACTION * n)]
    out = np.zeros(n, bool)
    out[chosen] = True
    return out


def train_mem_model(preset, x: torch.Tensor, y: torch.Tensor, val_x, val_y, k: int, device):
    """Train memorization model k on its half of (x, y); returns (net, members, correct (n,), seconds)."""
    streams, inside = mem_streams(k), members(k, len(y))
    net = prepare(build_model(preset.arch, preset.num_classes), device)
    recipe = preset.recipe
    keep = torch.from_numpy(inside)
    loader = make_loader(x[keep], y[keep], recipe.batch_size, shuffle=True, seed=streams["order"])
    val = make_loader(val_x, val_y, 1000) if recipe.best_from_epoch is not None else None
    t0 = time.perf_counter()
    train_from_scratch(net, loader, recipe, seed=streams["init"], val_loader=val)
    seconds = time.perf_counter() - t0
    correct = (predict(net, x).argmax(1) == y).numpy()
    return net, inside, correct, seconds
