"""`sebastian` ("PRMQ": prune, retrain, mask, quantize), as its team released it.

Sebastian Oleszko's entry to the NeurIPS 2023 Machine Unlearning Challenge, prize rank 4 (private
leaderboard 5). Sources: the team's Kaggle notebook as ported in xcadet/deepunlearn
`munl/unlearning/kgltop4.py` (read, not copied) and the competition report (Triantafillou et al. 2024,
arXiv 2406.09073).

Algorithm (f the network, f0 its frozen copy at entry, `_teacher.Teacher`):
1. Rank every weight AND bias of every nn.Conv2d and nn.Linear together by |value| (global L1) and
   prune the round(0.99·P) smallest: a pruned weight is re-drawn from U(±1/√fan_in) (the layer's own
   default initialiser, `_reinit.reinit_entries`), a pruned bias is left at zero (the release re-draws
   only weights). BatchNorm parameters and statistics are untouched.
2. 3.2 epochs of the retain set (round(3.2·|R|/batch) steps, times E/30) at a constant lr 5e-4, SGD
   with momentum 0.9 and weight decay 5e-4, on
   CE_w(f(x), y) + MSE(H(f(x)), H(f0(x))), H the prediction entropy (`_losses.entropy_matching`) and
   CE_w the cross-entropy with class weights count^-0.1 from the retain set's labels (PyTorch's
   `weight=`: normalised by the batch's summed weights).
3. Round every floating-point parameter and buffer through float16 (the release's `net.half().float()`).
Deviation: the release takes ⌊3.2·batches⌋ + 1 steps; here round(3.2·batches) (`ReleasedEntry.steps`).
The one-paragraph summary ranks only weights and omits the class weights and the float16 round trip.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods._common import device_of, num_classes, unpack
from methods._losses import entropy_matching
from methods._reinit import reinit_entries
from methods._released import BudgetParams, ReleasedEntry
from methods._teacher import Teacher
from methods._train_loop import train_steps
from methods._train_params import TrainParams, build_optimizer, build_scheduler
from methods.BaseMethod import register


def conv_fc_parameter_names(net: torch.nn.Module) -> list[str]:
    """Names of the weight and (when present) bias of every nn.Conv2d and nn.Linear, in module order."""
    names = []
    for name, m in net.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            prefix = f"{name}." if name else ""
            names += [prefix + attr for attr in ("weight", "bias") if getattr(m, attr, None) is not None]
    return names


def smallest_magnitude_mask(net: torch.nn.Module, names, ratio: float) -> dict[str, torch.Tensor]:
    """{name: bool}, True on the round(ratio·P) entries of smallest |value| ranked over all tensors `names`."""
    named = dict(net.named_parameters())
    scores = torch.cat([named[n].detach().abs().flatten().float().cpu() for n in names])
    keep = scores.numel() - round(ratio * scores.numel())
    flat = torch.ones(scores.numel(), dtype=torch.bool)
    if keep > 0:
        flat[torch.topk(scores, keep).indices] = False
    out, start = {}, 0
    for n in names:
        size = named[n].numel()
        out[n] = flat[start : start + size].view_as(named[n])
        start += size
    return out


def prune_and_reinit(net: torch.nn.Module, ratio: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Step 1: re-draw the pruned weights from their layer's initialiser and zero the pruned biases.

    Returns the pruning mask {parameter name: bool}."""
    mask = smallest_magnitude_mask(net, conv_fc_parameter_names(net), ratio)
    reinit_entries(net, {n: m for n, m in mask.items() if n.endswith("weight")}, generator)
    named = dict(net.named_parameters())
    with torch.no_grad():
        for n, m in mask.items():
            if n.endswith("bias"):
                named[n].masked_fill_(m.to(named[n].device), 0.0)
    return mask


def retain_class_weights(loader, n_classes: int, device) -> torch.Tensor:
    """count_c^-0.1 per class from the labels of `loader` (a class absent from it gets weight 1)."""
    counts = torch.zeros(n_classes)
    for batch in loader:
        _, y = unpack(batch)
        counts += torch.bincount(y, minlength=n_classes)[:n_classes].float()
    return counts.clamp(min=1).pow(-0.1).to(device)


def sebastian_loss(
    logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, class_weights: torch.Tensor
) -> torch.Tensor:
    """Class-weighted CE(f(x), y) + MSE(H(f(x)), H(f0(x)))."""
    return F.cross_entropy(logits, y, weight=class_weights) + entropy_matching(logits, teacher_logits)


def float16_round_trip_(net: torch.nn.Module) -> None:
    """Round every floating-point parameter and buffer of `net` to float16 and back, in place."""
    with torch.no_grad():
        for t in [*net.parameters(), *net.buffers()]:
            if t.is_floating_point():
                t.copy_(t.to(torch.float16))


@register("sebastian")
class Sebastian(ReleasedEntry):
    """Sebastian (PRMQ, prize rank 4): re-init the 99% smallest conv+fc entries, CE + entropy matching, float16."""

    origin = "published"

    @dataclass
    class Params(TrainParams, BudgetParams):
        epochs: float = 3.2  # retain epochs (times E/30)
        lr: float = 5e-4  # SGD, momentum 0.9, weight decay 5e-4
        schedule: str = "constant"
        reinit_ratio: float = 0.99  # fraction of conv+fc weights and biases pruned and re-initialised

        def __post_init__(self):
            if not 0.0 <= self.reinit_ratio <= 1.0:
                raise ValueError(f"reinit_ratio must be in [0, 1], got {self.reinit_ratio}")

    search_space = {"lr": ("log", 1e-4, 5e-3), "epochs": ("float", 1.0, 6.0), "reinit_ratio": ("float", 0.8, 0.995)}

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")
        teacher = Teacher(net)
        weights = retain_class_weights(retain_loader, num_classes(net), device_of(net))
        self.mask_ = prune_and_reinit(net, p.reinit_ratio, g)
        steps = self.steps(p.epochs, retain_loader)
        opt = build_optimizer(p, net)
        sched = build_scheduler(p, opt, steps)
        self.log_["retain_loss"] = train_steps(
            net,
            self.take(self.stream(retain_loader, g), steps),
            lambda m, x, y: sebastian_loss(m(x), teacher(x), y, weights),
            opt,
            sched,
        )
        self.log_["steps"] = steps
        net.eval()
        float16_round_trip_(net)
