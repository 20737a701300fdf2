"""`seif`: Gaussian noise on the conv weights, then retain fine-tuning with a majority-class-weighted CE.

Follows the NeurIPS 2023 Machine Unlearning Challenge entry "Seif" as the competition report summarises
it (Triantafillou et al. 2024, arXiv 2406.09073; /work/shared/reference/design-methods.md, "NeurIPS 2023
top entries"); details checked against the public re-implementation xcadet/deepunlearn
`munl/unlearning/kgltop3.py` (read, not copied).

Algorithm.
1. Add Gaussian noise N(0, σ²) with σ = `noise` = 0.6 to every conv weight (not BN, not fc), σ relative
   to each tensor's std (`_noise.add_weight_noise_` restricted to conv weights by its masks).
2. `epochs` = 4 epochs of retain fine-tuning on the class-weighted CE (1/b)·Σ_i w_i·CE_i with w_i = 1.0
   for examples of the majority class and `other_weight` for the rest (the entry: 0.05; shipped: 0.3,
   see below), `_losses.cross_entropy` with example_weights: divided by the batch size, not by Σ w, so
   the step size depends on how many majority-class examples the batch holds. The majority class is the
   most frequent label of the retain set, counted in one label pass over the retain loader at entry
   (ties: the smallest label).
3. Before the last epoch, Gaussian noise again with σ = `final_noise` = 0.005 (relative) on the conv weights.

Choices where the description is silent (cpu preset) and deviations:
- σ relative to each conv tensor's std (the project's noise block). The re-implementation adds an
  absolute σ to the parameters of top-level children whose name contains "conv", i.e. only the stem
  conv of a torchvision ResNet-18; the description says the convolutional weights, so all of them here.
- Optimiser: SGD, momentum 0.9, weight decay 5e-4 (as re-implemented), cosine per step over all steps
  (re-implemented: cosine per epoch over the 4 epochs), lr 0.03 instead of 7e-4 (batch 128 here; a step
  of 7e-4 leaves the noise unrepaired in the steps the budget allows).
- Time: a retain epoch costs ~7.5% of a retraining on the cpu preset, so four full ones would be ~30%
  (20% rule): each epoch is `epoch_fraction` = 0.5 of |R|/batch steps (the retain stream continues
  across epochs, so successive epochs see successive data); the 4 epochs and both noise injections are kept.
- DEVIATION, `other_weight` 0.3 instead of the entry's 0.05. The entry's faces data are imbalanced (class 0
  dominates retain and forget sets); CIFAR-10 is balanced, so 0.05 starves nine classes of ten of the
  repair after the noise: on the kaggle-tiny ResNet-18 of the shipped-defaults test retain accuracy fell
  to 0.29 (floor 0.51; 0.23-0.32 at lr 0.001-0.1, 0.38 at σ 0.3), on the cpu preset to 0.65.
  `--set other_weight=0.05` restores the entry's value; the re-implementation used balanced weights.
- Every step is capped per tensor at `max_update` = 1e-3 (`_trust.StepCap`); `--set sam=min` gives SAM steps.

Tuning on the cpu preset (original retain / forget / test 0.970 / 0.978 / 0.613, retrained 0.979 / 0.596 /
0.610). One or two runs each (`scripts/probe_defaults.py --preset cpu -m seif --runs 1 --set ...`): the
entry's values (other_weight 0.05, lr 0.01) 0.649 / 0.629 / 0.516; other_weight 1 0.830 / 0.809 / 0.593;
lr 0.03 0.695 / 0.672 / 0.538; epoch_fraction 1 (~30%) 0.687 / 0.668 / 0.532, with lr 0.03 0.746 / 0.697 /
0.561; other_weight 0.3 0.78 / 0.76 / 0.57; other_weight 0.3 lr 0.03 0.82 / 0.78 / 0.59; other_weight 0.5
lr 0.03 0.84 / 0.79 / 0.59. Shipped-defaults ResNet-18s at other_weight 0.3 lr 0.03: kaggle-tiny retain
0.67-0.69 (floor 0.51), normalized 0.88-0.91 (floor 0.55).
`python main.py -m seif --quiet` (16 runs, the defaults): score 0.0755 [95% CI 0.0692, 0.0809], F 0.094,
RA ratio 0.835, TA ratio 0.961, forget gap +0.182, 15.9% of a retraining timed beside it (16.5% on a rerun).
"""
import itertools
from dataclasses import dataclass

import torch

from methods._common import cycle, num_classes, reshuffled, unpack
from methods._iterative import TrainParams, build_optimizer, build_scheduler
from methods._losses import cross_entropy
from methods._loop import train_steps
from methods._noise import add_weight_noise_
from methods.BaseMethod import BaseMethod, register


def majority_class(loader, n_classes: int) -> int:
    """The most frequent label of `loader` (one pass over its batches; ties: the smallest label)."""
    counts = torch.zeros(n_classes, dtype=torch.long)
    for batch in loader:
        counts += torch.bincount(unpack(batch)[1], minlength=n_classes)[:n_classes]
    return int(counts.argmax())


def conv_masks(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """{name: bool} for `add_weight_noise_`: True on the weights of nn.Conv2d modules, False on other weights."""
    conv = {f"{n}.weight" for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    return {n: torch.full_like(q, n in conv, dtype=torch.bool) for n, q in net.named_parameters() if q.ndim >= 2}


def majority_weighted_ce(logits: torch.Tensor, y: torch.Tensor, majority: int, other_weight: float) -> torch.Tensor:
    """(1/b)·Σ_i w_i·CE_i, w_i = 1 if y_i is the majority class else `other_weight`."""
    weights = torch.where(y == majority, 1.0, other_weight).to(logits.dtype)
    return cross_entropy(logits, y, example_weights=weights)


@register("seif")
class Seif(BaseMethod):
    """Seif (NeurIPS 2023): noise on conv weights (σ 0.6), 4 retain epochs of majority-class-weighted CE, noise 0.005 before the last."""

    @dataclass
    class Params(TrainParams):
        epochs: int = 4                # the entry: 4
        epoch_fraction: float = 0.5    # steps per epoch as a fraction of |R|/batch (the entry: 1; 20% rule)
        lr: float = 0.03               # SGD peak learning rate (re-implementation: 7e-4 at batch 64)
        schedule: str = "cosine"       # per step (re-implementation: cosine per epoch)
        noise: float = 0.6             # σ of the entry noise on conv weights, relative to each tensor's std
        final_noise: float = 0.005     # σ of the noise before the last epoch (relative)
        other_weight: float = 0.3      # CE weight of non-majority-class examples, majority 1.0 (the entry: 0.05)

        def __post_init__(self):
            for name in ("noise", "final_noise", "other_weight"):
                if getattr(self, name) < 0:
                    raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    search_space = {"lr": ("log", 0.002, 0.1), "noise": ("float", 0.2, 1.0), "other_weight": ("log", 0.01, 1.0),
                    "epoch_fraction": ("float", 0.25, 0.6)}

    @classmethod
    def test_overrides(cls) -> dict:
        """Small settings for the contract test."""
        return {"epochs": 2}

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")
        majority = majority_class(retain_loader, num_classes(net))
        masks = conv_masks(net)
        add_weight_noise_(net, p.noise, g, masks)
        loader = reshuffled(retain_loader, g)
        steps = max(1, round(p.epoch_fraction * len(loader)))
        stream = cycle(loader)   # an epoch continues where the last one stopped
        opt = build_optimizer(p, net)
        sched = build_scheduler(p, opt, p.epochs * steps)

        def loss_fn(m, x, y):
            return majority_weighted_ce(m(x), y, majority, p.other_weight)

        losses = []
        for epoch in range(p.epochs):
            if epoch == p.epochs - 1 and epoch > 0:
                add_weight_noise_(net, p.final_noise, g, masks)
            losses.append(train_steps(net, itertools.islice(stream, steps), loss_fn, opt, sched))
        self.log_.update({"majority_class": majority, "retain_loss": losses,
                          "capped_steps": getattr(opt, "capped_steps", 0)})
        net.eval()
