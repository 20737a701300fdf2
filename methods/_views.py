"""Augmented views of a loader's batches, drawn from a method's generator (the reference loaders'
random crop and flip, for methods whose released code saw augmented data), and fixed views of images
(a flip, reflect-padded shifts) with a network's statistic averaged over them (`uvt`'s targets).
Imports only torch and project method modules."""

import torch

from methods._augment import crop_flip
from methods._common import unpack


def augmented(loader, generator):
    """`loader`'s batches as (crop_flip(x), y), drawn once per batch (outside any step, so SAM's two
    passes see the same images)."""
    for batch in loader:
        x, y = unpack(batch)
        yield crop_flip(x, generator), y


def views(batches, generator, augment: bool = True):
    """`augmented(batches, generator)` when `augment`, else `batches` unchanged."""
    return augmented(batches, generator) if augment else batches


def shifted(x, dx: int, dy: int):
    """Images x (N, C, H, W) moved by dx pixels right and dy down, the uncovered border filled by reflection."""
    pad = max(abs(dx), abs(dy))
    if pad == 0:
        return x
    h, w = x.shape[-2:]
    p = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    return p[..., pad - dy : pad - dy + h, pad - dx : pad - dx + w]


def flip_and_shifts(shifts, size: int) -> list[tuple[bool, int, int]]:
    """(flip, dx, dy) views: the horizontal flip, then diagonal shifts by ±d for each d in `shifts`, given
    in pixels of a 32-pixel image and scaled to `size` (rounded, at least 1)."""
    out = [(True, 0, 0)]
    for d in shifts:
        px = max(1, round(d * size / 32))
        out += [(False, px, px), (False, -px, -px)]
    return out


@torch.no_grad()
def mean_over_views(net, x, y, stat_fn, views, batch_size: int = 500):
    """Per example, the mean of stat_fn(net(view), y) over `views` ((flip, dx, dy) triples), eval mode.

    `net` is left in eval mode; x and y are on its device. Returns a float tensor (n,)."""
    net.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        stats = [stat_fn(net(shifted(xb.flip(-1) if f else xb, dx, dy)), yb).float() for f, dx, dy in views]
        out.append(torch.stack(stats).mean(0))
    return torch.cat(out)
