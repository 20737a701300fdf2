"""`ft_l1`: fine-tune on the retain set with a decaying L1 weight penalty ("L1-sparse", sharp-unlearn's FT_prune).

Paper: Jia, Liu, Ram, Yao, Liu, Liu, Sharma, Liu, "Model Sparsity Can Simplify Machine Unlearning",
NeurIPS 2023, arXiv 2304.04934 (the ℓ1-sparse unlearning it introduces); code as ported in
HaoranTang/sharp-unlearn `unlearn/FT.py` (`FT_l1`, `FT_prune`) and kairanzhao/RUM `unlearn/FT.py`.

Method. E epochs on the retain set R with loss CE(R batch) + α_e·‖θ‖₁, where ‖θ‖₁ is the plain sum
of |θ| over every parameter (conv, BN and fc), and α_e = α·(1 − e/(E − no_l1_epochs)) for epochs
e < E − no_l1_epochs, 0 after (`l1_weight`): the penalty falls linearly from α to α/(E − no_l1_epochs)
and the last `no_l1_epochs` epochs fine-tune without it. Nothing is pruned (the released code only
reports sparsity). The L1 subgradient α_e·sign(θ) pulls every entry towards 0 at the same rate, so it
moves the weights off the solution the forget set shaped, and the CE term repairs the retain fit.

α. The penalty is an unnormalised sum, so its size in the loss grows with the parameter count
(~3,300 on the cpu preset's 78k-parameter ResNet, ~11.2M parameters on ResNet-18), but its gradient per
entry is α·sign(θ) whatever the model: per step an entry moves lr·α towards 0 (before momentum). The
released defaults (α 0.2 in RUM/SalUn, 0.99 in sharp-unlearn) are not inherited (the
RUM README's tuned value is unpublished): the default here is an explicit α = 5e-4; it is the
shrink per entry per unit of learning rate, so it transfers across model sizes as a rate, not as a
loss value. No step cap, as released (`--set max_update=...` adds the kit's per-tensor cap, which
bounds the L1 pull on networks with small weights such as ResNet-18).

SAM (`--set sam=min rho=...`). The reference adds the L1 term to the second (perturbed) loss only.
The shared loop evaluates the step's loss function once per SAM pass through the optimizer's
closure (`_sam.SAM` calls it exactly twice per step), so the loss function here counts its calls and
leaves the L1 term out of every first pass: the perturbation ε comes from ∇CE alone and the final
gradient is ∇[CE + α_e‖θ‖₁](w + ε) as in the reference (with `sam=max` the L1 term thereby enters
with weight −λ, also as in the reference). Without SAM every step has the L1 term.

Released values (RUM README): lr 0.01, E 10, SGD at a constant rate as in `ft`, on the reference
loaders' crop/flip views (`augment`); the retain order comes from the method's seed. Budget as `ft`:
each released epoch is scaled to the preset's retraining (E_preset/30 of a pass; RUM retrains for 30)
and `time_factor` 0.5 cuts every epoch by one factor to fit the 20% rule (1: the release); α_e keeps
its per-epoch schedule over the E released epochs. Per-preset tuned values: benchmarks/tuned/.
"""

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods._train_params import TrainParams
from methods.BaseMethod import register
from methods.ft import FT


def l1_weight(alpha: float, epoch: int, epochs: int, no_l1_epochs: int = 0) -> float:
    """α_e = α·(1 − e/(E − no_l1_epochs)) for e < E − no_l1_epochs, else 0 (sharp-unlearn FT_l1)."""
    active = epochs - no_l1_epochs
    if epoch >= active:
        return 0.0
    return alpha * (1.0 - epoch / active)


def l1_norm(net: torch.nn.Module) -> torch.Tensor:
    """‖θ‖₁: the sum of |θ| over all parameters of `net` (unnormalised, as released)."""
    return sum(p.abs().sum() for p in net.parameters())


@register("ft_l1", aliases=("FT_prune",))
class FTL1(FT):
    """Fine-tune on the retain set with CE + a linearly decaying L1 penalty on all weights (L1-sparse)."""

    origin = "published"

    @dataclass
    class Params(TrainParams):
        epochs: int = 10  # released epochs over the retain set (RUM README), each scaled (docstring)
        lr: float = 0.01  # SGD learning rate (RUM README)
        schedule: str = "constant"  # RUM: constant for <= 10 epochs
        alpha: float = 5e-4  # α: initial weight of ‖θ‖₁ (released 0.2 / 0.99, not inherited: docstring)
        no_l1_epochs: int = 0  # last epochs without the penalty (released default 0)
        augment: bool = True  # random crop (pad 4) + flip views, as the reference loaders
        time_factor: float = 0.5  # every epoch times this (1: as released, a third of a retraining)

        def __post_init__(self):
            if self.alpha < 0:
                raise ValueError(f"alpha must be >= 0, got {self.alpha}")
            if not 0 <= self.no_l1_epochs <= self.epochs:
                raise ValueError(f"no_l1_epochs must be in [0, epochs={self.epochs}], got {self.no_l1_epochs}")

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above
    search_space = {"lr": ("log", 0.003, 0.2), "time_factor": ("float", 0.2, 0.6), "alpha": ("log", 1e-5, 5e-3)}

    @classmethod
    def test_overrides(cls) -> dict:
        """Small settings for the contract test."""
        return {"epochs": 1}

    def epoch_loss(self, epoch: int):
        """CE + α_e·‖θ‖₁, α_e logged; under SAM the L1 term enters the second pass of each step only (docstring)."""
        p = self.params
        alpha = l1_weight(p.alpha, epoch, p.epochs, p.no_l1_epochs)
        self.log_["alpha"].append(alpha)
        calls = itertools.count()  # SAM evaluates the loss twice per step: L1 in the second only

        def loss_fn(model, x, y):
            ce = F.cross_entropy(model(x), y)
            if p.sam is not None and next(calls) % 2 == 0:
                return ce
            return ce + alpha * l1_norm(model)

        return loss_fn

    def run(self, net, retain_loader, forget_loader, val_loader):
        self.log_["alpha"] = []
        super().run(net, retain_loader, forget_loader, val_loader)
        self.log_["l1_final"] = float(l1_norm(net).detach())
