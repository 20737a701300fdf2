"""The training recipe shared by the reference bank (original and retrained models) and `retrain`.

Lives in `methods/` (not `data/`) so the `retrain` method, and any notebook made from it, carries it.
"""
from dataclasses import asdict, dataclass

import torch

from methods._common import make_optimizer, make_scheduler, retain_ce_epochs


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


def reset_weights(net: torch.nn.Module, seed: int | None = None) -> None:
    """Re-initialise every layer with its default init, from `seed` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        if seed is None:
            torch.seed()
        else:
            torch.manual_seed(seed)
        for module in net.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()


def train_from_scratch(net: torch.nn.Module, loader, recipe: Recipe, seed: int | None = None) -> float:
    """Reset `net` and train it on `loader` with `recipe`; returns the final epoch's mean loss.

    Data order comes from the loader's own generator; `seed` drives initialisation and augmentation.
    """
    reset_weights(net, seed)
    device = next(net.parameters()).device
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed + 1)
    opt = make_optimizer(recipe.optimizer, net.parameters(), recipe.lr, recipe.momentum,
                         recipe.weight_decay, recipe.nesterov)
    sched = make_scheduler(recipe.schedule, opt, recipe.epochs * len(loader), recipe.lr)
    loss = retain_ce_epochs(net, loader, recipe.epochs, opt, sched, generator=gen,
                            augment=recipe.augment, label_smoothing=recipe.label_smoothing)
    net.eval()
    return loss
