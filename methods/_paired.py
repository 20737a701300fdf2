"""Retain batches paired with forget batches, and the NegGrad+ loss on such a pair.

NegGrad+ (sharp-unlearn `unlearn/neggrad.py`, SCRUB's `train_negrad`) and Sharp MinMax (`sharp_minmax`)
step over `zip(retain_loader, cycle(forget_loader))`: one retain batch with the next forget batch, so an
epoch is |R|/batch steps and the forget set is seen |R|/|F| times per epoch.
`itertools.cycle` stores its first pass and replays it, so the forget batches would repeat in the
same order; `PairedBatches` instead re-iterates the forget loader (`_common.cycle`), reshuffled from
the method's generator on every pass, and draws the retain order from it too (`reshuffled`).
`neggrad_plus_loss` is L = α·CE(B_r) − (1−α)·CE(B_f), two forwards (each batch its own BN
statistics, as released); `retain_term` and `forget_term` are its two halves, which Sharp MinMax
steps on separately. `train_paired` is `_train_loop.train_steps` for pair losses. Imports only torch and
project method modules.
"""

import torch

from methods._augment import crop_flip
from methods._common import cycle, device_of, reshuffled, unpack
from methods._train_loop import batch_cross_entropy, take_step


class PairedBatches:
    """`PairedBatches(retain_loader, forget_loader, generator, epoch_fraction=1.0)`: iterating gives one
    epoch of ((x_r, y_r), (x_f, y_f)) pairs on `device` (default: the loaders' tensors as they are).

    An epoch has round(epoch_fraction · |R|/batch) pairs, at least one (1.0: one pass over the retain
    loader, as released; less to fit a time budget). Both streams persist across epochs and re-iterate
    (reshuffle) their loader when exhausted, so at 1.0 every epoch is exactly one pass over R, and a
    shorter epoch takes the next batches of the current pass. `views`, a generator: both batches of
    every pair become random crop (pad 4) + flip views drawn from it (the reference loaders').
    """

    def __init__(
        self, retain_loader, forget_loader, generator: torch.Generator, epoch_fraction: float = 1.0, device=None
    ):
        if not 0.0 < epoch_fraction <= 1.0:
            raise ValueError(f"epoch_fraction must be in (0, 1], got {epoch_fraction}")
        retain = reshuffled(retain_loader, generator)
        self.steps = max(1, round(epoch_fraction * len(retain)))
        self.device = device
        self.views = None
        self._retain = cycle(retain)
        self._forget = cycle(reshuffled(forget_loader, generator))

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            (xr, yr), (xf, yf) = unpack(next(self._retain), self.device), unpack(next(self._forget), self.device)
            if self.views is not None:
                xr, xf = crop_flip(xr, self.views), crop_flip(xf, self.views)
            yield (xr, yr), (xf, yf)


def retain_term(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """α·CE(net(x), y) on a retain batch."""
    return alpha * batch_cross_entropy(net, x, y)


def forget_term(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """−(1−α)·CE(net(x), y) on a forget batch (gradient ascent on the forget loss)."""
    return -(1.0 - alpha) * batch_cross_entropy(net, x, y)


def neggrad_plus_loss(net: torch.nn.Module, retain, forget, alpha: float) -> torch.Tensor:
    """NegGrad+: α·CE(B_r) − (1−α)·CE(B_f) for retain = (x_r, y_r), forget = (x_f, y_f)."""
    return retain_term(net, *retain, alpha) + forget_term(net, *forget, alpha)


def train_paired(net: torch.nn.Module, pairs: PairedBatches, loss_fn, optimizer, scheduler=None) -> float:
    """One step per pair of `pairs` on `loss_fn(net, retain, forget)`, in train mode, through the
    optimizer's closure (SAM and masks apply); the schedule steps per pair. Returns the mean loss."""
    if pairs.device is None:
        pairs.device = device_of(net)
    net.train()
    total = 0.0
    for retain, forget in pairs:
        total += take_step(optimizer, lambda: loss_fn(net, retain, forget))
        if scheduler is not None:
            scheduler.step()
    return total / max(len(pairs), 1)
