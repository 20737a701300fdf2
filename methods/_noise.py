"""Gaussian weight noise, the run-to-run spread the scorer needs. Imports only torch."""
import torch


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
