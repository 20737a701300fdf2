"""`ct`: Convolution Transpose: every conv kernel transposed in its spatial axes, then CE on the retain set.

The NeurIPS 2023 Machine Unlearning Challenge entry of toshik + marvelworld, "Convolution Transpose",
prize rank 5 (private leaderboard 6), as its team released it: the Kaggle notebook as ported in
xcadet/deepunlearn `munl/unlearning/kgltop5.py` (read, not copied); the competition report is
Triantafillou et al. 2024, arXiv 2406.09073.

Why it works: with symmetric strides and paddings, a network whose conv kernels are all transposed
(W[..., a, b] → W[..., b, a]) computes on an image transposed in its two spatial axes exactly what the
original computed on the image (BatchNorm, ReLU, pooling and the global average pool commute with the
transpose). The learned features survive, but the model now sees every training image as its transpose,
which scrambles per-example memorisation; fine-tuning then adapts it back to upright images.

Algorithm (released values; epochs scaled by E/30, `ReleasedEntry`):
1. every nn.Conv2d weight ← weight.transpose(2, 3) (deterministic; nothing else changes);
2. `epochs` = 3 epochs of cross-entropy on the retain set, SGD lr 1e-3, momentum 0.9, weight decay 5e-4,
   cosine annealing stepped once per epoch (T_max = 3 epochs: lr × 1, 0.75, 0.25).
The data order is drawn from the method's seed, the run's only randomness.
The team's Kaggle submission also mixed in a second algorithm for part of its 512 checkpoints; the port,
and this file, carry only CT. (The one-paragraph summary's list of seven entries leaves CT out.)
"""

import math
from dataclasses import dataclass

import torch
from torch import nn

from methods._released import BudgetParams, ReleasedEntry
from methods._train_loop import batch_cross_entropy, train_steps
from methods._train_params import TrainParams, build_optimizer
from methods.BaseMethod import register


def transpose_conv_kernels(net: nn.Module) -> int:
    """Transpose every nn.Conv2d weight in its two spatial axes, in place; returns how many.

    A square kernel keeps its Parameter (copied in place); a non-square one gets a new Parameter of the
    transposed shape, as the release does for every kernel."""
    count = 0
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                transposed = module.weight.transpose(2, 3).clone()
                if transposed.shape == module.weight.shape:
                    module.weight.copy_(transposed)
                else:
                    module.weight = nn.Parameter(transposed.contiguous())
                count += 1
    return count


def epoch_cosine(epoch: int, epochs: int) -> float:
    """The lr multiplier of epoch `epoch` (0-based) under a cosine annealed once per epoch over `epochs`."""
    return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


@register("ct")
class CT(ReleasedEntry):
    """Convolution Transpose (NeurIPS 2023 prize 5): transpose every conv kernel, then 3 epochs of CE on R."""

    @dataclass
    class Params(TrainParams, BudgetParams):
        epochs: int = 3  # epochs of CE on the retain set
        lr: float = 1e-3  # SGD lr of the first epoch
        schedule: str = "cosine"  # cosine: annealed per epoch (T_max = epochs); constant: none
        momentum: float = 0.9
        weight_decay: float = 5e-4

        def __post_init__(self):
            if self.schedule not in ("cosine", "constant"):
                raise ValueError(f"schedule must be cosine (per epoch) or constant, got {self.schedule!r}")

    search_space = {"lr": ("log", 1e-4, 1e-2), "epochs": ("int", 1, 5), "weight_decay": ("log", 1e-5, 5e-3)}

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")
        self.log_["transposed_convs"] = transpose_conv_kernels(net)
        retain = self.stream(retain_loader, g)
        steps = self.steps(1, retain_loader)  # one released epoch
        opt = build_optimizer(p, net)  # after the transpose: over the current Parameters
        self.log_["retain_loss"] = []
        for epoch in range(p.epochs):
            scale = epoch_cosine(epoch, p.epochs) if p.schedule == "cosine" else 1.0
            for group in opt.param_groups:
                group["lr"] = p.lr * scale
            self.log_["retain_loss"].append(train_steps(net, self.take(retain, steps), batch_cross_entropy, opt))
        net.eval()
