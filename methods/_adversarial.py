"""FGSM in the images' own pixel range, for the boundary methods (Chen et al., CVPR 2023).

The released attack (TY-LEE-KR/Boundary-Unlearning-Code `adv_generator.py` `FGSM`, and SalUn's port
`boundary_sh.py` `FGSM_perturb`) works in [0, 1] pixels: x_adv = x + ε·sign(∇_x CE(f(x), y)), clamped to
[0, 1] and rounded to 1/255. The kit's networks read normalised images or 0-255 pixels, so the pixel range
is read from the data: `pixel_range(loader)` is each channel's lowest and highest value over the loader,
the image encoding's 0 and 1, and ε, the clamp and the 1/255 grid are taken in that range. Imports only
torch and `_common`.
"""

import torch
import torch.nn.functional as F

from methods._common import eval_mode, unpack


def pixel_range(loader) -> tuple[torch.Tensor, torch.Tensor]:
    """(lowest, highest) value of each input channel over `loader`, shapes (1, C, 1, 1)."""
    lo = hi = None
    for batch in loader:
        x, _ = unpack(batch)
        dims = [d for d in range(x.dim()) if d != 1]
        b_lo, b_hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
        lo = b_lo if lo is None else torch.minimum(lo, b_lo)
        hi = b_hi if hi is None else torch.maximum(hi, b_hi)
    return lo, hi


def fgsm(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bound: float, lo: torch.Tensor, hi: torch.Tensor):
    """One untargeted FGSM step of `bound` (a fraction of the pixel range) on `net` in eval mode, clamped to
    [lo, hi] and rounded to the 1/255 grid of the range; the network's weights and .grad untouched."""
    lo, hi = lo.to(x.device), hi.to(x.device)
    scale = (hi - lo).clamp_min(1e-12)
    x = x.detach().clone().requires_grad_(True)
    with eval_mode(net), torch.enable_grad():
        (grad,) = torch.autograd.grad(F.cross_entropy(net(x), y), [x])
    adv = torch.max(torch.min(x.detach() + bound * scale * grad.sign(), hi), lo)
    return torch.round((adv - lo) / scale * 255) / 255 * scale + lo
