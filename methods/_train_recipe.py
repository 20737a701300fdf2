"""The training recipe shared by the reference bank (original and retrained models) and `retrain`.

Lives in `methods/` (not `data/`) so the `retrain` method, and any notebook made from it, carries it.
Two options follow the organizers' test-phase training (google-deepmind/unlearning_evaluation
`train_lib.py`): `class_weighted` (cross-entropy weighted by 1 / class count in the model's own
training data) and `best_from_epoch` (keep the checkpoint with the best validation accuracy among
epochs >= that one, 0-based; None keeps the last epoch).
"""

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from methods._augment import crop_flip
from methods._common import num_classes, unpack
from methods._entry import loader_statistics
from methods._optimizers import make_optimizer, make_scheduler
from methods._reinit import reset_all
from methods._train_loop import train_steps


@dataclass(frozen=True)
class Recipe:
    """How a model is trained from scratch."""

    epochs: int
    lr: float  # peak learning rate
    batch_size: int = 128
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # per step: cosine | onecycle | constant
    augment: bool = False  # random crop (pad 4) + horizontal flip
    nesterov: bool = False
    label_smoothing: float = 0.0
    class_weighted: bool = False  # CE weighted by 1 / class count (the organizers' recipe)
    best_from_epoch: int | None = None  # keep the best-validation checkpoint from this epoch on

    def to_dict(self) -> dict:
        return asdict(self)


def class_weights(loader, n_classes: int, device) -> torch.Tensor:
    """1 / (count of each class in `loader`), 0 for an absent class, shape (n_classes,)."""
    counts = torch.zeros(n_classes)
    for batch in loader:
        counts += torch.bincount(unpack(batch)[1], minlength=n_classes)[:n_classes].float()
    return torch.where(counts > 0, 1.0 / counts.clamp_min(1), torch.zeros(())).to(device)


def loader_accuracy(net: torch.nn.Module, loader) -> float:
    """Accuracy of `net` (eval mode) over `loader`."""
    hits = loader_statistics(net, loader, lambda logits, y: (logits.argmax(1) == y).float())[0]  # (n,)
    return int(hits.sum()) / len(hits)


def recipe_loss(recipe: Recipe, generator: torch.Generator, weight: torch.Tensor | None = None):
    """The recipe's per-batch loss as `loss_fn(net, x, y)`: crop+flip from `generator` if it augments,
    cross-entropy with the class `weight`s and its label smoothing."""

    def loss_fn(model, x, y):
        return F.cross_entropy(
            model(crop_flip(x, generator) if recipe.augment else x),
            y,
            weight=weight,
            label_smoothing=recipe.label_smoothing,
        )

    return loss_fn


def train_from_scratch(net: torch.nn.Module, loader, recipe: Recipe, seed: int | None = None, val_loader=None) -> float:
    """Re-initialise `net` and train it on `loader` with `recipe`; returns the final epoch's mean loss.

    Data order comes from the loader's own generator; `seed` (None: fresh) drives the initialisation
    and, through a second draw of the same stream, the augmentation. With `recipe.best_from_epoch`
    the weights end as those of the epoch (from that one on) with the best accuracy on `val_loader`.
    """
    gen = torch.Generator()
    gen.seed() if seed is None else gen.manual_seed(seed)
    reset_all(net, int(torch.randint(2**62, (1,), generator=gen)))
    device = next(net.parameters()).device
    weight = class_weights(loader, num_classes(net), device) if recipe.class_weighted else None
    opt = make_optimizer(
        recipe.optimizer, net.parameters(), recipe.lr, recipe.momentum, recipe.weight_decay, recipe.nesterov
    )
    sched = make_scheduler(recipe.schedule, opt, recipe.epochs * len(loader), recipe.lr)
    select = recipe.best_from_epoch is not None
    if select and val_loader is None:
        raise ValueError("this recipe keeps the best-validation checkpoint: pass val_loader")
    loss_fn = recipe_loss(recipe, gen, weight)
    best, best_acc, loss = None, -1.0, float("nan")
    for epoch in range(recipe.epochs):
        loss = train_steps(net, loader, loss_fn, opt, sched)
        if select and epoch >= min(recipe.best_from_epoch, recipe.epochs - 1):
            acc = loader_accuracy(net, val_loader)
            if acc > best_acc:
                best, best_acc = copy.deepcopy(net.state_dict()), acc
    if best is not None:
        net.load_state_dict(best)
    net.eval()
    return loss
