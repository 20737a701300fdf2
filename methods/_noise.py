"""Gaussian weight noise, the run-to-run spread the scorer needs, fixed or calibrated. Imports torch and `_common`.

`add_weight_noise_` adds noise of a fixed size relative to each tensor's std. The same σ does very
different damage to different networks: σ = 0.6 raises the retain loss of the `cpu` preset's small
ResNet by about 1.5 nats (batch statistics), that of the Kaggle ResNet-18 by about 3.1, beyond
chance (`scripts/probe_defaults.py` and the methods' docstrings give the numbers). `calibrated_weight_noise_`
fixes the damage instead: it draws one random direction and scales it, by bisection on a few retain
batches, to the σ ≤ `max_scale` at which the retain loss rises by `target_rise`. `entry_noise_` is the
choice between the two that `pdu` and `sibl` expose as `noise_rise` / `init_noise`.
"""

import math

import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from methods._common import device_of, unpack


def _direction(net: torch.nn.Module, generator, masks) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, unit-σ noise scaled by the weight's std) for every conv/linear weight, masked if asked."""
    out = []
    for name, q in net.named_parameters():
        if q.ndim < 2 or not q.requires_grad:
            continue
        gen_device = generator.device if generator is not None else q.device
        noise = torch.randn(q.shape, generator=generator, device=gen_device, dtype=q.dtype).to(q.device)
        if masks is not None:
            noise = noise * masks[name]
        out.append((q, noise * q.detach().std()))
    return out


@torch.no_grad()
def add_weight_noise_(
    net: torch.nn.Module, scale: float, generator: torch.Generator | None = None, masks: dict | None = None
) -> None:
    """Add Gaussian noise of std `scale` x (each tensor's std) to every conv/linear weight, in place.

    Only entries where `masks[name]` is True move when masks are given. The scorer compares the
    distribution of many runs with that of retrained models, so runs need real spread: identical runs
    score 0, and retrained models differ a lot per example.
    """
    if scale <= 0:
        return
    for q, noise in _direction(net, generator, masks):
        q.add_(noise * scale)


@torch.no_grad()
def batch_statistics_loss(net: torch.nn.Module, batches) -> float:
    """Mean cross-entropy over `batches` [(x, y)] with BatchNorm on batch statistics, running ones untouched.

    Training-mode BN is what the repair steps after the noise see: eval mode with the stale running
    statistics of the clean network would overstate the damage (10-100x on the Kaggle ResNet-18).
    """
    buffers = [(b, b.clone()) for m in net.modules() if isinstance(m, _BatchNorm) for b in m.buffers(recurse=False)]
    was_training = net.training
    net.train()
    try:
        return sum(F.cross_entropy(net(x), y).item() for x, y in batches) / max(len(batches), 1)
    finally:
        for b, saved in buffers:
            b.copy_(saved)
        net.train(was_training)


@torch.no_grad()
def calibrated_weight_noise_(
    net: torch.nn.Module,
    loader,
    n_batches: int,
    target_rise: float,
    max_scale: float,
    generator: torch.Generator | None = None,
    masks: dict | None = None,
    iters: int = 8,
) -> dict:
    """Add noise along one random direction, scaled so that the retain loss rises by about `target_rise`.

    The direction is `add_weight_noise_`'s (per-tensor std, masked), drawn once from `generator`; its
    scale σ ∈ (0, max_scale] is found by `iters` bisection steps on log σ over the first `n_batches`
    batches of `loader` (`batch_statistics_loss`). If even `max_scale` raises the loss less, σ =
    max_scale. Costs (iters + 2) · n_batches forward passes. Returns {"sigma", "loss_before", "loss_after"}.
    """
    if max_scale <= 0:
        return {"sigma": 0.0, "loss_before": float("nan"), "loss_after": float("nan")}
    device = device_of(net)
    batches = [unpack(b, device) for _, b in zip(range(n_batches), loader)]
    direction = _direction(net, generator, masks)
    base = [q.detach().clone() for q, _ in direction]

    def loss_at(scale: float) -> float:
        for (q, noise), q0 in zip(direction, base):
            q.copy_(q0 + scale * noise)
        return batch_statistics_loss(net, batches)

    before = loss_at(0.0)
    target = before + target_rise
    hi, lo = math.log(max_scale), math.log(max_scale) - math.log(1e4)
    sigma = max_scale
    after = loss_at(sigma)
    if after > target:  # bisection: the loss rises with σ along one direction (almost surely, on average)
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            if loss_at(math.exp(mid)) > target:
                hi = mid
            else:
                lo = mid
        sigma = math.exp(hi)
        after = loss_at(sigma)
    return {"sigma": sigma, "loss_before": before, "loss_after": after}


def entry_noise_(
    net: torch.nn.Module,
    retain_batches,
    n_batches: int,
    noise_rise: float,
    init_noise: float,
    generator: torch.Generator | None = None,
    masks: dict | None = None,
) -> dict:
    """A method's entry noise: calibrated to a retain-loss rise of `noise_rise` (σ <= init_noise), or, with
    noise_rise 0, the fixed σ = init_noise. Returns at least {"sigma"} for the method's log."""
    if noise_rise > 0:
        return calibrated_weight_noise_(net, retain_batches, n_batches, noise_rise, init_noise, generator, masks)
    add_weight_noise_(net, init_noise, generator, masks)
    return {"sigma": init_noise}
