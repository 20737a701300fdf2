"""The efficiency rule's reference, timed side by side with the method.

The competition rejects a method slower than ~20% of one retraining. A retraining time recorded
when the bank was built says little about now: on a shared machine the same model took 20 s to
280 s to train depending on load. `RetrainClock.estimate()` times a short slice of the preset's own
retraining (its architecture, recipe, batch size and augmentation, on the retain set) in this
process, right now, and scales it to a whole retraining (epochs x batches per epoch). The runner
times one slice before the first run and one after each run, so each run is compared with the
mean of the slices on either side of it: load that affects both affects both alike.
"""

import itertools
import time

import torch

from data.models import build_model
from data.splits import make_loader
from eval.harness.bank_models import prepare
from methods._common import cycle
from methods._optimizers import make_optimizer
from methods._train_loop import train_steps
from methods._train_recipe import class_weights, recipe_loss

SLICE_STEPS = 12  # timed optimizer steps per slice
WARMUP_STEPS = 2  # untimed steps first (allocations, lazy init)


class RetrainClock:
    """Estimates the wall time of one retraining of `preset` from short slices of it."""

    def __init__(self, preset, splits, device, steps: int = SLICE_STEPS, warmup: int = WARMUP_STEPS):
        self.recipe, self.device, self.steps, self.warmup = preset.recipe, torch.device(device), steps, warmup
        self.net = prepare(build_model(preset.arch, preset.num_classes), device)
        loader = make_loader(splits.retain_x, splits.retain_y, self.recipe.batch_size, shuffle=True, seed=0)
        self.steps_per_retrain = self.recipe.epochs * len(loader)
        self.batches = cycle(loader)
        self.opt = make_optimizer(
            self.recipe.optimizer,
            self.net.parameters(),
            self.recipe.lr * 0.01,
            self.recipe.momentum,
            self.recipe.weight_decay,
            self.recipe.nesterov,
        )
        weight = class_weights(loader, preset.num_classes, device) if self.recipe.class_weighted else None
        self._loss = recipe_loss(self.recipe, torch.Generator().manual_seed(0), weight)  # the bank's own loss

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def estimate(self) -> float:
        """Seconds one whole retraining would take now (a slice of `steps` steps, scaled)."""
        train_steps(self.net, itertools.islice(self.batches, self.warmup), self._loss, self.opt)
        self._sync()
        t0 = time.perf_counter()
        train_steps(self.net, itertools.islice(self.batches, self.steps), self._loss, self.opt)
        self._sync()
        return (time.perf_counter() - t0) / self.steps * self.steps_per_retrain
