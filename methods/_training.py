"""The training recipe shared by the reference bank (original and retrained models) and `retrain`.

Lives in `methods/` (not `data/`) so the `retrain` method, and any notebook made from it, carries it.
"""
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from methods._augment import crop_flip
from methods._loop import train_epochs
from methods._optim import make_optimizer, make_scheduler
from methods._reinit import reset_all


@dataclass(frozen=True)
class Recipe:
    """How a model is trained from scratch."""
    epochs: int
    lr: float                    # peak learning rate
    batch_size: int = 128
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"     # per step: cosine | onecycle | constant
    augment: bool = False        # random crop (pad 4) + horizontal flip
    nesterov: bool = False
    label_smoothing: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def train_from_scratch(net: torch.nn.Module, loader, recipe: Recipe, seed: int | None = None) -> float:
    """Re-initialise `net` and train it on `loader` with `recipe`; returns the final epoch's mean loss.

    Data order comes from the loader's own generator; `seed` (None: fresh) drives the initialisation
    and, through a second draw of the same stream, the augmentation.
    """
    gen = torch.Generator()
    gen.seed() if seed is None else gen.manual_seed(seed)
    reset_all(net, int(torch.randint(2 ** 62, (1,), generator=gen)))
    opt = make_optimizer(recipe.optimizer, net.parameters(), recipe.lr, recipe.momentum,
                         recipe.weight_decay, recipe.nesterov)
    sched = make_scheduler(recipe.schedule, opt, recipe.epochs * len(loader), recipe.lr)

    def loss_fn(model, x, y):
        return F.cross_entropy(model(crop_flip(x, gen) if recipe.augment else x), y,
                               label_smoothing=recipe.label_smoothing)
    losses = train_epochs(net, loader, loss_fn, opt, recipe.epochs, sched)
    net.eval()
    return losses[-1]
