"""`seif`: CFW, the NeurIPS 2023 entry "Seif", prize rank 3 (private leaderboard 4).

Sources: the team's Kaggle notebook as ported in xcadet/deepunlearn `munl/unlearning/kgltop3.py` (read,
not copied; the port swaps the class weights for balanced ones and keeps the release's in a comment);
the competition report, Triantafillou et al. 2024, arXiv 2406.09073.

Algorithm (released values).
1. Noise: for every top-level child of the network (named_children) whose name contains "conv" and that
   has a weight, add N(0, σ²) with ABSOLUTE σ = `noise` = 0.6 to that weight (bias untouched). On
   torchvision's ResNet-18 this is only the stem `conv1` (the blocks' convs sit inside `layerN`); σ is far
   above its weights' scale, so the stem is in effect redrawn.
2. `epochs` = 4 epochs of retain fine-tuning, SGD lr 7e-4, momentum 0.9, weight decay 5e-4; epoch k runs
   at lr·½(1 + cos(πk/epochs)) (the release's cosine stepped once per epoch). The loss of a batch is
   mean_i CE_i × mean_i w_i with w = 1.0 for examples of class `major_class` = 0 and `class_weight` =
   0.05 for the others: a learning rate scaled by the batch's share of class 0, not a per-example weight.
3. After epoch `epochs` − 2 (before the last epoch), the same noise with absolute σ = `final_noise` = 0.005.
The release fixes the weights as [1, w, …, w], so class 0 (the faces data's majority age group) weighs 1.0;
on balanced CIFAR-10 that is just the first class. The module selection is the release's, literally: on a
network without a top-level child named "...conv..." (the cpu preset's SmallResNet, whose stem is
`stem.0`; TinyCNN) neither noise touches anything and the entry is plain weighted fine-tuning.
Epochs scale by E/30 of the preset's retraining (`_released`): epoch k is a segment of
`steps(1, retain)` steps at its lr. Deviation: the data order comes from the method's seed.
The one-paragraph summary reads otherwise: noise on all conv weights, and a per-example weighted CE.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods._released import BudgetParams, ReleasedEntry
from methods._train_loop import train_steps
from methods._train_params import SAMParams, build_optimizer
from methods.BaseMethod import register


@torch.no_grad()
def confuse_(net: torch.nn.Module, sigma: float, generator: torch.Generator) -> list[str]:
    """Add N(0, σ²) (absolute σ) to the weight of every top-level child whose name contains "conv";
    returns the names of the children touched (the release's module selection)."""
    touched = []
    for name, module in net.named_children():
        w = getattr(module, "weight", None)
        if "conv" in name and isinstance(w, torch.Tensor):
            w.add_(torch.randn(w.shape, generator=generator).to(w) * sigma)
            touched.append(name)
    return touched


def batch_weighted_ce(logits: torch.Tensor, y: torch.Tensor, major_class: int, class_weight: float) -> torch.Tensor:
    """mean(CE over the batch) × mean(w over the batch), w = 1 for `major_class`, `class_weight` otherwise."""
    w = torch.where(y == major_class, 1.0, class_weight).to(logits.dtype)
    return F.cross_entropy(logits, y) * w.mean()


def cosine_multiplier(epoch: int, epochs: int) -> float:
    """The lr factor of epoch `epoch` (0-based) under a cosine stepped once per epoch over `epochs`."""
    return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


@register("seif")
class Seif(ReleasedEntry):
    """CFW (Seif, NeurIPS 2023): stem-conv noise σ 0.6, 4 epochs of class-0-weighted CE, σ 0.005 before the last."""

    origin = "published"

    @dataclass
    class Params(SAMParams, BudgetParams):
        epochs: int = 4  # retain fine-tuning epochs
        lr: float = 7e-4  # SGD learning rate of the first epoch, cosine per epoch
        momentum: float = 0.9
        weight_decay: float = 5e-4
        noise: float = 0.6  # absolute σ of the noise on the top-level "conv" children
        final_noise: float = 0.005  # absolute σ of the same noise before the last epoch
        class_weight: float = 0.05  # weight of the examples outside `major_class`
        major_class: int = 0  # the class of weight 1.0 (the faces data's majority age group)

        def __post_init__(self):
            for name in ("noise", "final_noise", "class_weight", "major_class"):
                if getattr(self, name) < 0:
                    raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    search_space = {"lr": ("log", 1e-4, 1e-2), "noise": ("float", 0.1, 1.0), "class_weight": ("log", 0.01, 1.0)}

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")
        touched = confuse_(net, p.noise, g)
        opt = build_optimizer(p, net)
        stream, per_epoch = self.stream(retain_loader, g), self.steps(1, retain_loader)

        def loss_fn(m, x, y):
            return batch_weighted_ce(m(x), y, p.major_class, p.class_weight)

        losses = []
        for epoch in range(p.epochs):
            for group in opt.param_groups:
                group["lr"] = p.lr * cosine_multiplier(epoch, p.epochs)
            losses.append(train_steps(net, self.take(stream, per_epoch), loss_fn, opt))
            if epoch == p.epochs - 2:
                confuse_(net, p.final_noise, g)
        self.log_.update({"noised": touched, "steps_per_epoch": per_epoch, "retain_loss": losses})
        net.eval()
