"""Batches, devices and modes: what every method needs to read its loaders.

Imports only torch, so the notebook generator can carry this file whole.
"""

import torch
from torch.utils.data import DataLoader


def unpack(batch, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (inputs, targets) from a tuple/list batch or a Kaggle dict batch {"image", "age_group"}."""
    if isinstance(batch, dict):
        x, y = batch["image"], batch["age_group"]
    else:
        x, y = batch[0], batch[1]
    x = torch.as_tensor(x).float()
    y = torch.as_tensor(y).long()
    if device is not None:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    return x, y


def device_of(net: torch.nn.Module) -> torch.device:
    """The device that holds the model's parameters."""
    return next(net.parameters()).device


def num_classes(net: torch.nn.Module) -> int:
    """Number of classes: the output width of the last linear layer (never hard-coded per dataset)."""
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError(f"cannot tell the number of classes of {type(net).__name__}: it has no nn.Linear")
    return linears[-1].out_features


def cycle(loader):
    """Iterate over `loader` forever, re-creating its iterator (and its shuffle) when exhausted."""
    while True:
        yielded = False
        for batch in loader:
            yielded = True
            yield batch
        if not yielded:
            raise ValueError("cannot cycle over an empty loader")


def reshuffled(loader: DataLoader, generator: torch.Generator) -> DataLoader:
    """A loader over the same dataset and batch size whose order comes from `generator` (a CPU one).

    A method that must draw its own data order from its seed (rather than the loader's) uses this;
    the collate function, workers and drop_last of `loader` are kept.
    """
    if getattr(loader, "batch_size", None) is None:
        raise ValueError("reshuffled() needs a DataLoader built with batch_size (not a batch_sampler)")
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        shuffle=True,
        generator=generator,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        drop_last=loader.drop_last,
        pin_memory=loader.pin_memory,
    )


class eval_mode:
    """Context manager: `net` in eval mode inside (BN uses and keeps its running statistics); flags restored."""

    def __init__(self, net: torch.nn.Module):
        self.net = net

    def __enter__(self):
        self.flags = [(m, m.training) for m in self.net.modules()]
        self.net.eval()
        return self.net

    def __exit__(self, *exc):
        for m, flag in self.flags:
            m.training = flag
        return False
