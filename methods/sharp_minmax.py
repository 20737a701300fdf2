"""`sharp_minmax`: Sharp MinMax, NegGrad+ split over a saliency mask with sharpness min on one part, max on the other.

Paper: Tang & Khanna, "Sharpness-Aware Machine Unlearning", arXiv 2506.13715 (OpenReview BZ8I2tXomt);
code HaoranTang/sharp-unlearn (`unlearn/impl.py#L265-L278`, `unlearn/neggrad.py#L243-L277`, run as
`NG --path <mask> --sam min --separate min max`).

Method. A SalUn mask M (Fan et al., ICLR 2024, arXiv 2310.12508; `_saliency.gradient_saliency` +
`saliency_mask`) marks the `mask_ratio` fraction of weights with the largest |∇ forget loss| (summed over
the forget set, eval-mode BN, no step taken) as the forget part W_F; the rest is W_R. Two independent
optimizers (AdamW, each its own moments, schedule and SAM wrapper) share lr, ρ, λ and ASAM. Every
iteration takes one retain batch B_r and the next forget batch B_f (`_paired.PairedBatches`):
  1. retain step, SAM-min on L_R = α·CE(B_r), changing only W_R (1−M);
  2. forget step, SAM-max on L_F = −(1−α)·CE(B_f), changing only W_F (M): it ascends the forget loss
     while *maximising* sharpness, so W_F deliberately overfits F (the paper's idea).
`sam=None` (or `forget_sam=None`) makes that step a plain one: SU's "split NegGrad" without `--sam`.

Deviations from the released code and choices:
- The mask keeps the LARGEST |∇L_F| entries (SalUn HEAD); the released mask script keeps the smallest
  (it sorts ascending without SalUn's negation).
- Each step is masked fully, for any λ: the released forget step masks only g1, so W_R
  received (1+λ)·g0, and the retain step was clean only at λ = 1. Here each optimizer is
  `MaskedOptimizer(build_optimizer(...))`: both SAM passes' gradients are masked, and after the step the
  entries outside its mask are restored and their AdamW moments zeroed, which also cancels the
  decoupled weight decay there. A MaskedOptimizer restores its frozen entries to a snapshot taken at
  construction; since the two masks are complementary, that would make each step undo the other's
  latest changes, so `masked_step` refreshes the snapshot (`MaskedOptimizer.reference`) from the
  current weights before every step (tested: after a retain step W_F holds the forget step's values).
- Open choice, recorded: ε (the SAM/ASAM perturbation) is computed from the step's OWN masked gradient,
  so it perturbs only that step's weights and its norm is over them; the released code computes g0
  and ε over all weights and masks only g1. A perturbation of the frozen part would only change where
  the masked g1 is read, and the masked-closure form is the shared block's.
- BN running statistics are not masked (buffers, not parameters); both steps run in train mode, as released.
- Time: an iteration is two SAM steps, four forward/backward passes of a batch, so a released epoch
  (|R|/batch iterations) would cost ~45% of a retraining on the cpu preset; an epoch here is
  `epoch_fraction` = 0.3 of it (21 iterations) and E = 1.
- No step cap, as released (`--set max_update=...` adds the kit's, inside the mask).

SU's settings: ASAM, ρ 1.0, λ 1, α 0.99, AdamW (lr and E not published), r ∈ {0.1, 0.3, 0.5}.

SU publishes no lr or E: lr 1e-3 and one 0.3-length epoch are the kit's choice (tuning logs:
benchmarks/history/sharp_minmax.md, earlier banks; per-preset records: benchmarks/tuned/).
"""

import dataclasses
from dataclasses import dataclass

import torch

from methods._common import device_of
from methods._masked_optimizer import MaskedOptimizer
from methods._paired import PairedBatches, forget_term, retain_term
from methods._saliency import gradient_saliency, saliency_mask
from methods._train_loop import batch_cross_entropy, take_step
from methods._train_params import TrainParams, build_optimizer, build_scheduler
from methods.BaseMethod import BaseMethod, register


def masked_optimizer(p, net, masks: dict) -> MaskedOptimizer:
    """`build_optimizer(p, net)` (SAM, step cap) inside a MaskedOptimizer: only `masks`' True entries move."""
    return MaskedOptimizer(build_optimizer(p, net), net, masks)


@torch.no_grad()
def masked_step(optimizer: MaskedOptimizer, loss_closure) -> float:
    """One step of `optimizer` whose frozen entries stay at their values *now* (not at construction).

    The two optimizers freeze complementary entries, so each must keep the other's latest changes:
    the reference a MaskedOptimizer restores is refreshed from the current weights first.
    """
    named = dict(optimizer.net.named_parameters())
    for n, ref in optimizer.reference.items():
        ref.copy_(named[n])
    with torch.enable_grad():
        return take_step(optimizer, loss_closure)


def minmax_iteration(net, retain_opt, forget_opt, retain, forget, alpha: float) -> tuple[float, float]:
    """Retain step on α·CE(B_r) (on 1−M), then forget step on −(1−α)·CE(B_f) (on M); returns both losses."""
    loss_r = masked_step(retain_opt, lambda: retain_term(net, *retain, alpha))
    loss_f = masked_step(forget_opt, lambda: forget_term(net, *forget, alpha))
    return loss_r, loss_f


@register("sharp_minmax", aliases=("SharpMinMax",))
class SharpMinMax(BaseMethod):
    """Sharp MinMax: NegGrad+ split by a saliency mask, SAM-min on retain weights, SAM-max on forget weights."""

    origin = "published"

    @dataclass
    class Params(TrainParams):
        epochs: int = 1  # epochs, each of epoch_fraction·|R|/batch iterations (a retain + a forget step)
        epoch_fraction: float = 0.3  # iterations per epoch as a fraction of |R|/batch (SU: 1)
        lr: float = 1e-3  # both AdamW optimizers (SU: not published; tuned, see above)
        optimizer: str = "adamw"  # SU's "Adam Override"
        schedule: str = "constant"  # SU: MultiStepLR, constant over a few epochs
        alpha: float = 0.99  # NegGrad+ retain weight α (SU default)
        mask_ratio: float = 0.1  # r: fraction of weights (largest |∇ forget loss|) in the forget part M
        sam: str | None = "min"  # retain optimizer's mode (SU's --sam min); None: plain steps
        forget_sam: str | None = "max"  # forget optimizer's mode (SU's --separate min max); None: plain steps
        rho: float = 1.0  # SU README: ASAM with rho 1.0
        adaptive: bool = True  # ASAM
        mask_batches: int | None = None  # forget batches that score the mask (None: the whole forget set)

        def __post_init__(self):
            if not 0.0 <= self.alpha <= 1.0:
                raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
            if not 0.0 < self.mask_ratio < 1.0:
                raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
            if self.forget_sam not in (None, "min", "max"):
                raise ValueError(f"forget_sam must be None, 'min' or 'max', got {self.forget_sam!r}")
            if self.mask_batches is not None and self.mask_batches < 1:
                raise ValueError(f"mask_batches must be >= 1 or None, got {self.mask_batches}")

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above
    search_space = {
        "lr": ("log", 1e-4, 1e-2),
        "alpha": ("float", 0.5, 0.999),
        "mask_ratio": ("float", 0.05, 0.5),
        "epoch_fraction": ("float", 0.1, 0.5),
    }

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        scores = gradient_saliency(
            net, forget_loader, lambda m, x, y: -batch_cross_entropy(m, x, y), max_batches=p.mask_batches
        )
        forget_mask = saliency_mask(scores, p.mask_ratio)  # M: True = forget weights
        retain_opt = masked_optimizer(p, net, {n: ~m for n, m in forget_mask.items()})
        forget_opt = masked_optimizer(dataclasses.replace(p, sam=p.forget_sam), net, forget_mask)
        pairs = PairedBatches(retain_loader, forget_loader, self.generator("cpu"), p.epoch_fraction, device_of(net))
        scheds = [build_scheduler(p, opt, p.epochs * len(pairs)) for opt in (retain_opt, forget_opt)]
        self.log_.update(
            mask_fraction=sum(int(m.sum()) for m in forget_mask.values())
            / sum(m.numel() for m in forget_mask.values()),
            iterations=0,
            retain_loss=[],
            forget_loss=[],
        )
        net.train()
        for _ in range(p.epochs):
            sums = [0.0, 0.0]
            for retain, forget in pairs:
                for i, loss in enumerate(minmax_iteration(net, retain_opt, forget_opt, retain, forget, p.alpha)):
                    sums[i] += loss
                for sched in scheds:
                    sched.step()
                self.log_["iterations"] += 1
            self.log_["retain_loss"].append(sums[0] / len(pairs))
            self.log_["forget_loss"].append(sums[1] / len(pairs))
        net.eval()
