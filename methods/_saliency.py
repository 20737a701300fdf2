"""Gradient saliency and the SalUn weight-saliency mask (SalUn, Fan et al., ICLR 2024, arXiv 2310.12508).

Follows `Classification/generate_mask.py` at OPTML-Group/Unlearn-Saliency HEAD:
with the model in eval mode, sum the batch gradients of the forget loss (SalUn: −CE on the forget
set, passed in by the caller), take |·|, and keep the top ⌊r·P⌋ entries ranked globally over all
parameters. Deviations and decisions: no optimizer step and no .grad is touched (RUM's copy of the
script takes SGD steps while it accumulates), so weights and BN buffers stay bit-identical; the mask
keeps the LARGEST scores (the released RUM and sharp-unlearn copies sort ascending without SalUn's
negation and keep the smallest); a per-tensor scope and a sum-of-|g| reduction are offered as options.
Imports only torch and project method modules.
"""

import math

import torch

from methods._common import device_of, unpack
from methods._masks import top_k_mask


def gradient_saliency(
    net: torch.nn.Module, loader, loss_fn, *, max_batches: int | None = None, reduce: str = "abs_of_sum"
) -> dict[str, torch.Tensor]:
    """{parameter name: saliency} over the parameters that require grad, from `loss_fn(net, x, y)`.

    reduce "abs_of_sum": |Σ_batches ∇loss| (SalUn); "sum_of_abs": Σ_batches |∇loss|. The network runs
    in eval mode (BN statistics read, never updated) and its train/eval flags are restored; gradients
    come from torch.autograd.grad, so .grad and the weights are left as they were.
    """
    if reduce not in ("abs_of_sum", "sum_of_abs"):
        raise ValueError(f"reduce must be 'abs_of_sum' or 'sum_of_abs', got {reduce!r}")
    named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    acc = {n: torch.zeros_like(p, dtype=torch.promote_types(p.dtype, torch.float32)) for n, p in named}
    if not named:
        return acc
    device = device_of(net)
    flags = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        with torch.enable_grad():
            for i, batch in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    break
                x, y = unpack(batch, device)
                grads = torch.autograd.grad(loss_fn(net, x, y), [p for _, p in named], allow_unused=True)
                for (n, _), g in zip(named, grads):
                    if g is not None:
                        acc[n] += g.abs() if reduce == "sum_of_abs" else g
    finally:
        for m, flag in flags:
            m.training = flag
    return {n: a.abs() for n, a in acc.items()} if reduce == "abs_of_sum" else acc


def _saliency_keep(n: int, ratio: float) -> int:
    """⌊ratio·n⌋ (with a float-rounding guard), at least 1 when ratio > 0."""
    k = min(n, math.floor(ratio * n + 1e-9))
    return max(k, 1 if ratio > 0 and n > 0 else 0)


def saliency_mask(
    scores: dict[str, torch.Tensor], ratio: float, *, scope: str = "global", include=None, excluded_value: bool = False
) -> dict[str, torch.Tensor]:
    """{name: bool tensor}, True on the LARGEST `ratio` fraction of the score entries.

    scope "global" ranks all entries of the included tensors together and keeps ⌊ratio·P⌋ (SalUn);
    "layer" keeps ⌊ratio·n⌋ per tensor. At least one entry is kept when ratio > 0; ratio 1 keeps all,
    0 none. `include(name, tensor) -> bool` picks the tensors that take part; the others get a mask
    filled with `excluded_value`. Ties are broken by torch.topk. Note: the released RUM and
    sharp-unlearn mask scripts sort ascending without SalUn's negation and so keep the SMALLEST scores.
    """
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    if not 0.0 <= float(ratio) <= 1.0:
        raise ValueError(f"ratio must be a fraction in [0, 1], got {ratio!r}")
    chosen = [n for n, s in scores.items() if include is None or include(n, s)]
    masks = {n: torch.full_like(s, excluded_value, dtype=torch.bool) for n, s in scores.items() if n not in chosen}
    if scope == "layer":
        for n in chosen:
            s = scores[n].detach()
            k = _saliency_keep(s.numel(), ratio)
            masks[n] = top_k_mask(s, k) if k > 0 else torch.zeros_like(s, dtype=torch.bool)
    elif chosen:
        home = scores[chosen[0]].device
        flat = torch.cat([scores[n].detach().flatten().to(home, torch.float32) for n in chosen])  # (P,)
        k = _saliency_keep(flat.numel(), ratio)
        keep = top_k_mask(flat, k) if k > 0 else torch.zeros_like(flat, dtype=torch.bool)  # (P,)
        for n, part in zip(chosen, keep.split([scores[n].numel() for n in chosen])):
            masks[n] = part.view_as(scores[n]).to(scores[n].device)
    return {n: masks[n] for n in scores}
