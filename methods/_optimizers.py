"""Optimisers and per-step learning-rate schedules by name. Imports only torch."""

import torch


def make_optimizer(
    name: str, params, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = False
) -> torch.optim.Optimizer:
    """SGD, Adam or AdamW by name; ValueError naming the supported ones otherwise."""
    name = name.lower()
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov and momentum > 0
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; supported: sgd, adam, adamw")


ONECYCLE_PCT = 0.25  # share of a one-cycle schedule spent warming up


def make_scheduler(name: str, optimizer, total_steps: int, max_lr: float):
    """Per-step LR schedule: 'cosine', 'onecycle' or 'constant', for any positive step count.

    One-cycle needs room for its warm-up: torch's OneCycleLR divides by zero at 4 steps and gives
    a first step of lr 0 at 1, so below 5 steps it anneals from the peak like 'cosine'."""
    total_steps = max(1, total_steps)
    if name == "cosine" or (name == "onecycle" and ONECYCLE_PCT * total_steps <= 1):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=ONECYCLE_PCT
        )
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ValueError(f"unknown schedule {name!r}; supported: cosine, onecycle, constant")
