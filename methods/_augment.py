"""Data augmentation on batches of tensors. Imports only torch."""

import torch
import torch.nn.functional as F


def crop_flip(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4) -> torch.Tensor:
    """Random crop with `pad` pixels of zero padding plus horizontal flip, vectorised over the batch."""
    n, c, h, w = x.shape
    gen_device = generator.device if generator is not None else "cpu"
    shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device=gen_device).to(x.device)
    flips = (torch.rand(n, generator=generator, device=gen_device) < 0.5).to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad))  # (n, c, h + 2pad, w + 2pad)
    rows = torch.arange(h, device=x.device)[None, :] + shifts[:, :1]  # (n, h)
    cols = torch.arange(w, device=x.device)[None, :] + shifts[:, 1:]  # (n, w)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    idx_r = rows[:, None, :, None].expand(n, c, h, w + 2 * pad)
    out = padded.gather(2, idx_r)  # (n, c, h, w + 2pad)
    idx_c = cols[:, None, None, :].expand(n, c, h, w)
    return out.gather(3, idx_c)  # (n, c, h, w)
