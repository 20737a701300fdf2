"""Helpers shared by several methods: batch unpacking, losses, optimizers, loader cycling.

Imports only torch, so the notebook generator can carry this file whole.
"""
import torch
import torch.nn.functional as F


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


def cycle(loader):
    """Iterate over `loader` forever, re-creating its iterator (and its shuffle) when exhausted."""
    while True:
        yielded = False
        for batch in loader:
            yielded = True
            yield batch
        if not yielded:
            raise ValueError("cannot cycle over an empty loader")


def logit_margin(logits: torch.Tensor, squared: bool = True) -> torch.Tensor:
    """Per-example logit margin m(z) = max_c z_c - mean_c z_c (squared by default), shape (batch,).

    m >= 0 and m = 0 iff all logits are equal; its gradient does not vanish on confident outputs
    (PDU, Entesari et al. 2025). Take `.mean()` for the batch loss.
    """
    m = logits.max(dim=1).values - logits.mean(dim=1)  # (batch,)
    return m.square() if squared else m


def make_optimizer(name: str, params, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4,
                   nesterov: bool = False) -> torch.optim.Optimizer:
    """SGD, Adam or AdamW by name; ValueError naming the supported ones otherwise."""
    name = name.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=nesterov and momentum > 0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; supported: sgd, adam, adamw")


def make_scheduler(name: str, optimizer, total_steps: int, max_lr: float):
    """Per-step LR schedule: 'cosine', 'onecycle' or 'constant'."""
    total_steps = max(1, total_steps)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps,
                                                   pct_start=0.25)
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ValueError(f"unknown schedule {name!r}; supported: cosine, onecycle, constant")


def retain_ce_epochs(net, loader, epochs: int, optimizer, scheduler=None, generator=None,
                     augment: bool = False, label_smoothing: float = 0.0) -> float:
    """Train `net` with cross-entropy for `epochs` passes over `loader`; return the last epoch's mean loss.

    The LR schedule, if any, steps once per batch.
    """
    device = device_of(net)
    net.train()
    mean_loss = float("nan")
    for _ in range(epochs):
        total, count = 0.0, 0
        for batch in loader:
            x, y = unpack(batch, device)
            if augment:
                x = crop_flip(x, generator)
            loss = F.cross_entropy(net(x), y, label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += loss.item() * len(y)
            count += len(y)
        mean_loss = total / max(count, 1)
    return mean_loss


def crop_flip(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4) -> torch.Tensor:
    """Random crop with `pad` pixels of zero padding plus horizontal flip, vectorised over the batch."""
    n, c, h, w = x.shape
    gen_device = generator.device if generator is not None else "cpu"
    shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device=gen_device).to(x.device)
    flips = (torch.rand(n, generator=generator, device=gen_device) < 0.5).to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad))  # (n, c, h + 2pad, w + 2pad)
    rows = (torch.arange(h, device=x.device)[None, :] + shifts[:, :1])  # (n, h)
    cols = (torch.arange(w, device=x.device)[None, :] + shifts[:, 1:])  # (n, w)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    idx_r = rows[:, None, :, None].expand(n, c, h, w + 2 * pad)
    out = padded.gather(2, idx_r)  # (n, c, h, w + 2pad)
    idx_c = cols[:, None, None, :].expand(n, c, h, w)
    return out.gather(3, idx_c)  # (n, c, h, w)


@torch.no_grad()
def add_weight_noise_(net: torch.nn.Module, scale: float, generator: torch.Generator | None = None,
                      masks: dict | None = None) -> None:
    """Add Gaussian noise of std `scale` x (each tensor's std) to every conv/linear weight, in place.

    Only entries where `masks[name]` is True move when masks are given. The scorer compares the
    distribution of many runs with that of retrained models, so runs need real spread: identical runs
    score 0, and retrained models differ a lot per example.
    """
    if scale <= 0:
        return
    for name, q in net.named_parameters():
        if q.ndim < 2 or not q.requires_grad:
            continue
        gen_device = generator.device if generator is not None else q.device
        noise = torch.randn(q.shape, generator=generator, device=gen_device, dtype=q.dtype).to(q.device)
        if masks is not None:
            noise = noise * masks[name]
        q.add_(noise * (scale * q.std()))
