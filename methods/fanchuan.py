"""`fanchuan`: forget outputs pulled to uniform, then 8 rounds of forget-vs-retain contrast, each repaired on R.

The NeurIPS 2023 Machine Unlearning Challenge entry "Fanchuan", prize rank 1 (private leaderboard 2), as
its team released it: the Kaggle notebook as ported in xcadet/deepunlearn `munl/unlearning/kgltop1.py`
(read, not copied); the competition report is Triantafillou et al. 2024, arXiv 2406.09073.

Algorithm (released values; every phase's epochs scaled by E/30, `ReleasedEntry`):
1. One epoch over the forget set, one SGD step per batch (lr 0.005, momentum 0.9, no weight decay,
   constant) on the cross-entropy to the uniform target, i.e. KL(uniform ‖ f(x_u)) (`kl_from_uniform`).
2. `epochs` = 8 rounds of
   a. one epoch over the forget set, each forget batch paired with a batch of 256 from a fresh shuffle
      of the retain set, one SGD step (lr 3e-4 cosine-annealed per step to 1e-6 over all rounds' steps, momentum
      0.9, no weight decay) MINIMISING L = −mean_{i,j} log softmax_j(⟨z_u,i, z_r,j⟩ / T), T = 1.15, z the
      logits, the retain side detached (`_losses.dot_contrastive`); L ≥ log m, m the retain batch size;
   b. one full epoch of cross-entropy on the retain set in batches of 256 (SGD lr 0.004, momentum 0.9,
      weight decay 1e-2, no schedule).
The retain rounds and the pairing draw retain batches of `retain_batch_size` = 256, as released (the port
writes the retain lr as 0.001·256/64), whatever the loaders' batch. Deviation: the data orders come from
the method's seed.
The one-paragraph summary reads KL(f ‖ uniform) and gradient ascent on the contrastive loss; the release's
stage-1 loss is KL(uniform ‖ f), and it minimises the contrastive loss.
"""

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from methods._common import device_of, unpack
from methods._losses import dot_contrastive
from methods._released import BudgetParams, ReleasedEntry
from methods._train_loop import batch_cross_entropy, take_step, train_steps
from methods._train_params import TrainParams, build_optimizer, build_scheduler
from methods.BaseMethod import register


def kl_from_uniform(logits: torch.Tensor) -> torch.Tensor:
    """Batch mean of KL(uniform ‖ softmax(z)) = −mean_c log p_c − log C: the cross-entropy to the uniform
    target less its constant (the released stage-1 loss, KLDivLoss of log-probabilities against 1/C)."""
    return -F.log_softmax(logits, dim=1).mean() - math.log(logits.shape[1])


def uniform_pass(net: torch.nn.Module, batches, optimizer) -> float:
    """Stage 1: one step per forget batch on KL(uniform ‖ f(x)); returns the mean loss."""
    return train_steps(net, batches, lambda m, x, y: kl_from_uniform(m(x)), optimizer)


def contrastive_round(net: torch.nn.Module, pairs, optimizer, scheduler, temperature: float) -> list[float]:
    """One step per (forget batch, retain batch) of `pairs`, in train mode, minimising
    `dot_contrastive(f(x_u), f(x_r).detach(), T)`; the schedule steps per pair. Returns each step's loss."""
    device = device_of(net)
    net.train()
    losses = []
    for forget, retain in pairs:
        x_u, _ = unpack(forget, device)
        x_r, _ = unpack(retain, device)

        def loss():
            z_u = net(x_u)
            with torch.no_grad():
                z_r = net(x_r)  # a target: no gradient through the retain side
            return dot_contrastive(z_u, z_r, temperature)

        losses.append(take_step(optimizer, loss))
        scheduler.step()
    return losses


def rebatched(loader: DataLoader, batch_size: int) -> DataLoader:
    """A loader over `loader`'s dataset in batches of `batch_size` (its collate function and workers kept)."""
    return DataLoader(
        loader.dataset,
        batch_size=batch_size,
        shuffle=True,
        collate_fn=loader.collate_fn,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
    )


def retain_round(net: torch.nn.Module, batches, optimizer, scheduler=None) -> float:
    """Stage 2b: cross-entropy on retain batches; returns the mean loss."""
    return train_steps(net, batches, batch_cross_entropy, optimizer, scheduler)


@register("fanchuan")
class Fanchuan(ReleasedEntry):
    """Fanchuan (NeurIPS 2023 prize 1): forget outputs to uniform, then 8 rounds of F-vs-R contrast + a retain epoch."""

    @dataclass
    class Params(TrainParams, BudgetParams):
        epochs: int = 8  # rounds of [contrast on F, one epoch of CE on R]
        lr: float = 0.004  # retain-round SGD lr
        schedule: str = "constant"  # retain rounds (per step)
        momentum: float = 0.9  # SGD momentum of all three phases
        weight_decay: float = 1e-2  # retain rounds only (stage 1 and the contrast rounds have none)
        uniform_lr: float = 0.005  # stage-1 SGD lr, constant
        forget_lr: float = 3e-4  # contrast-round SGD lr, cosine-annealed per step over all rounds
        forget_lr_min: float = 1e-6  # the cosine's floor (eta_min)
        temperature: float = 1.15  # contrastive temperature T
        retain_batch_size: int = 256  # retain batches of the retain rounds and the pairing

        def __post_init__(self):
            for name in ("uniform_lr", "forget_lr", "temperature"):
                if not getattr(self, name) > 0:
                    raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
            if self.retain_batch_size < 1:
                raise ValueError(f"retain_batch_size must be >= 1, got {self.retain_batch_size}")
            if not self.forget_lr_min >= 0:
                raise ValueError(f"forget_lr_min must be >= 0, got {self.forget_lr_min}")

    search_space = {
        "lr": ("log", 1e-3, 0.03),
        "forget_lr": ("log", 1e-4, 3e-3),
        "uniform_lr": ("log", 1e-3, 0.03),
        "temperature": ("log", 0.5, 4.0),
    }

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")
        retain_loader = rebatched(retain_loader, p.retain_batch_size)
        forget = self.stream(forget_loader, g)  # stage 1 and every round: successive forget epochs
        retain = self.stream(retain_loader, g)  # the retain rounds
        forget_steps, retain_steps = self.steps(1, forget_loader), self.steps(1, retain_loader)
        no_decay = dataclasses.replace(p, weight_decay=0.0)  # stage 1 and the contrast rounds
        uniform_opt = build_optimizer(no_decay, net, lr=p.uniform_lr)
        forget_opt = build_optimizer(no_decay, net, lr=p.forget_lr)
        forget_sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            forget_opt, T_max=p.epochs * forget_steps, eta_min=p.forget_lr_min
        )
        retain_opt = build_optimizer(p, net)
        retain_sched = build_scheduler(p, retain_opt, p.epochs * retain_steps)
        log = self.log_
        log["uniform_loss"] = uniform_pass(net, self.take(forget, forget_steps), uniform_opt)
        log.update(contrastive_loss=[], retain_loss=[])
        for _ in range(p.epochs):
            pairing = self.stream(retain_loader, g)  # a fresh shuffle of R for each round's pairs
            losses = contrastive_round(
                net, zip(self.take(forget, forget_steps), pairing), forget_opt, forget_sched, p.temperature
            )
            log["contrastive_loss"].append(sum(losses) / len(losses))
            log["retain_loss"].append(retain_round(net, self.take(retain, retain_steps), retain_opt, retain_sched))
        net.eval()
