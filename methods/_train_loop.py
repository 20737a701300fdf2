"""The training loop every iterative method shares: optimizer steps over batches with a loss function.

A step goes through the optimizer's closure (`optimizer.step(closure)`), so a SAM wrapper can take
its two passes and a mask wrapper can mask both, without the loop knowing either. `loss_fn(net, x, y)`
returns the scalar loss of one batch; `unpack` reads tuple and Kaggle dict batches alike.
Imports only torch and the kit's batch helpers.
"""

import torch
import torch.nn.functional as F

from methods._common import device_of, unpack


def batch_cross_entropy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The plainest `loss_fn`: cross-entropy of `net` on one batch (fine-tuning on the retain set)."""
    return F.cross_entropy(net(x), y)


def take_step(optimizer: torch.optim.Optimizer, loss_closure) -> float:
    """One optimizer step on the loss that `loss_closure()` computes; returns that loss (first pass)."""

    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_closure()
        loss.backward()
        return loss

    return float(optimizer.step(closure).detach())


def train_steps(net: torch.nn.Module, batches, loss_fn, optimizer, scheduler=None, *, after_step=None) -> float:
    """One step per batch of `batches` (any iterable: a loader, `itertools.islice(cycle(loader), k)`).

    The network is in train mode; the schedule, if any, steps once per batch and `after_step()` runs
    after every step (a proximal or projection step). Returns the mean loss, weighted by batch size.
    """
    device = device_of(net)
    net.train()
    total, count = 0.0, 0
    for batch in batches:
        x, y = unpack(batch, device)
        total += take_step(optimizer, lambda: loss_fn(net, x, y)) * len(y)
        count += len(y)
        if scheduler is not None:
            scheduler.step()
        if after_step is not None:
            after_step()
    return total / max(count, 1)


def train_epochs(
    net: torch.nn.Module, loader, loss_fn, optimizer, epochs: int, scheduler=None, *, before_epoch=None, after_step=None
) -> list[float]:
    """`epochs` passes of `train_steps` over `loader`; returns each epoch's mean loss.

    `before_epoch(e)` runs before epoch e (0-based): noise, a loss weight that changes per epoch.
    """
    losses = []
    for epoch in range(epochs):
        if before_epoch is not None:
            before_epoch(epoch)
        losses.append(train_steps(net, loader, loss_fn, optimizer, scheduler, after_step=after_step))
    return losses
