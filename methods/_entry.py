"""What a constrained method measures on the model at entry, before it changes anything.

`sibl` and `pdu` (and any method with a retain-loss budget or an unseen-data target) share these:
the retain loss at entry L0, the budget epsilon built from it, per-example statistics over a loader
(forget or validation images) and rank-matched quantile targets. One set of names everywhere:
`epsilon` with `epsilon_mode` ("additive": epsilon = L0 + epsilon, "absolute": epsilon itself),
`entry_batches` (retain batches for L0) and `val_batches` (validation batches for targets, 0 = all).
All passes run in eval mode (BatchNorm statistics read, never updated). Imports only torch.
"""

import torch
import torch.nn.functional as F

from methods._common import device_of, eval_mode, unpack

EPSILON_MODES = ("additive", "absolute")


@torch.no_grad()
def entry_retain_loss(net: torch.nn.Module, loader, n_batches: int) -> float:
    """Mean cross-entropy of `net` over the first `n_batches` batches of `loader` (eval mode)."""
    device, total, count = device_of(net), 0.0, 0
    with eval_mode(net):
        for i, batch in enumerate(loader):
            if i >= n_batches:
                break
            x, y = unpack(batch, device)
            total += F.cross_entropy(net(x), y, reduction="sum").item()
            count += len(y)
    return total / max(count, 1)


def epsilon_budget(l0: float, epsilon: float, mode: str = "additive") -> float:
    """The retain-loss budget: L0 + epsilon ("additive") or epsilon ("absolute").

    A well-fit model has L0 near 0, so a relative budget (1 + a)·L0 would leave no room.
    """
    if mode == "additive":
        return l0 + epsilon
    if mode == "absolute":
        return epsilon
    raise ValueError(f"epsilon_mode must be one of {', '.join(EPSILON_MODES)}, got {mode!r}")


@torch.no_grad()
def loader_statistics(net: torch.nn.Module, loader, stat_fn, n_batches: int = 0, keep_batches: bool = False):
    """Per-example `stat_fn(logits, y)` over `loader` (its first `n_batches`; 0: all), eval mode.

    Returns (stats (n,), inputs or None, targets or None); with keep_batches the inputs and targets
    are concatenated in the same order (a small forget set kept in memory).
    """
    device, stats, xs, ys = device_of(net), [], [], []
    with eval_mode(net):
        for i, batch in enumerate(loader):
            if n_batches and i >= n_batches:
                break
            x, y = unpack(batch, device)
            stats.append(stat_fn(net(x), y).float())
            if keep_batches:
                xs.append(x)
                ys.append(y)
    if not stats:
        raise ValueError("loader_statistics: the loader yielded no batches")
    if keep_batches:
        return torch.cat(stats), torch.cat(xs), torch.cat(ys)
    return torch.cat(stats), None, None


def quantile_targets(values: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Rank matching: the example of rank r among n `values` gets the (r + 0.5)/n quantile of `reference`."""
    ranks = values.argsort().argsort().float()  # (n,)
    return torch.quantile(reference.float(), (ranks + 0.5) / len(ranks))  # (n,)
