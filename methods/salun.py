"""`salun`: SalUn, random-label unlearning restricted to the weights most salient for the forget set.

Paper: Fan, Liu, Zhang, Wei, Wong, Liu, "SalUn: Empowering Machine Unlearning via Gradient-based Weight
Saliency in Both Image Classification and Generation", ICLR 2024, arXiv 2310.12508; code OPTML-Group/
Unlearn-Saliency @ a6e89fd, `Classification/generate_mask.py` and `Classification/unlearn/RL.py`
(also sharp-unlearn's and RUM's `RL --path <mask>`).

Method.
1. Mask (`_saliency`): with the model in eval mode, sum over the forget loader the gradients of
   −CE(batch), take |·|, and keep the LARGEST ⌊r·P⌋ entries ranked globally over every parameter
   (conv, BN, fc; r = `mask_ratio`, SalUn's `with_0.5.pt`). No optimizer step, weights and BN buffers
   untouched (the RUM and sharp-unlearn copies keep the smallest entries; RUM's also takes SGD steps).
2. Random-label unlearning under the mask, each epoch (`passes`):
   "sequential" (SalUn's CIFAR-10/SVHN branch, default): a pass over F with labels drawn uniformly
       from 0..C−1 (redrawn every epoch, `_relabel.RandomLabels`), then a pass over R with true labels;
   "union" (its CIFAR-100/TinyImageNet branch): one pass over relabelled F ∪ R, shuffled together.
   Steps go through `MaskedOptimizer`: masked-out weights are bit-for-bit unchanged (gradients masked
   before the step, values restored and momentum zeroed after it, which also cancels weight decay;
   SalUn's fix a6e89fd, missing from the RUM/sharp-unlearn copies). With `--set sam=min` both SAM
   passes are masked.
The mask is kept as `self.mask_` ({parameter name: bool tensor}, True = may change) and summarised in
`self.log_` (fraction kept overall and per tensor).

Decisions and deviations:
- BatchNorm running statistics are buffers, not parameters, and are NOT frozen: as in SalUn's code,
  the F and R passes run in train mode and update them (the mask decides which parameters learn; the
  running statistics only track the input distribution, which F and R share, and after the R pass
  they are dominated by retain data as in a retrained model).
- Relabelling on any dataset with C read from the network (RUM's copy relabels only on CIFAR-10/SVHN);
  labels and data order from the method's seed; no step cap, as released (`--set max_update=...` adds
  the kit's).
- Released values: SalUn README (CIFAR-10 ResNet-18) lr 0.013, E 10, r 0.5 (the defaults; RUM README
  lr 0.1, E 10; RUM's high group E 5), on the reference loaders' crop/flip views (`augment`).
- Budget as `ft`: each released epoch is scaled to the preset's retraining (E_preset/30 of a pass over
  F and of one over R, or over F ∪ R; the reference retrains for 30 epochs) and `time_factor` 0.5
  cuts every epoch by one factor to fit the 20% rule (1: the release); labels are redrawn every
  released epoch. Per-preset tuned values: benchmarks/tuned/.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods._common import num_classes
from methods._masked_optimizer import MaskedOptimizer
from methods._relabel import RandomLabels, loader_over, relabelled_union
from methods._released import ReleasedEntry
from methods._saliency import gradient_saliency, saliency_mask
from methods._train_loop import batch_cross_entropy, train_steps
from methods._train_params import TrainParams, build_optimizer, build_scheduler
from methods.BaseMethod import register

PASSES = ("sequential", "union")


def negative_cross_entropy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SalUn's saliency loss: −CE on a forget batch (its sign does not change |∇|)."""
    return -F.cross_entropy(net(x), y)


@register("salun", aliases=("RL",))
class SalUn(ReleasedEntry):
    """SalUn: random-label unlearning of the forget set under a gradient-saliency weight mask (Fan et al. 2024)."""

    origin = "published"

    @dataclass
    class Params(TrainParams):
        epochs: int = 10  # released epochs, each a pass over F (random labels) and R, scaled (docstring)
        lr: float = 0.013  # SGD learning rate (SalUn README; RUM 0.1)
        schedule: str = "constant"  # SalUn/RUM: constant for <= 10 epochs
        mask_ratio: float = 0.5  # fraction of all parameter entries that may change (SalUn's with_0.5)
        passes: str = "sequential"  # sequential: F then R each epoch (CIFAR-10) | union: F ∪ R (CIFAR-100)
        augment: bool = True  # random crop (pad 4) + flip views, as the reference loaders
        time_factor: float = 0.5  # every epoch times this (1: as released, a third of a retraining)

        def __post_init__(self):
            if not 0.0 < self.mask_ratio <= 1.0:
                raise ValueError(f"mask_ratio must be in (0, 1], got {self.mask_ratio}")
            if self.passes not in PASSES:
                raise ValueError(f"passes must be one of {', '.join(PASSES)}, got {self.passes!r}")

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above
    search_space = {"lr": ("log", 0.003, 0.2), "time_factor": ("float", 0.2, 0.6), "mask_ratio": ("float", 0.1, 0.9)}

    @classmethod
    def test_overrides(cls) -> dict:
        """Small settings for the contract test."""
        return {"epochs": 1}

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")  # labels and data order
        self.mask_ = saliency_mask(gradient_saliency(net, forget_loader, negative_cross_entropy), p.mask_ratio)
        relabelled = RandomLabels(forget_loader.dataset, num_classes(net), g)
        if p.passes == "sequential":
            loaders = [loader_over(relabelled, forget_loader, g), retain_loader]
        else:
            loaders = [relabelled_union(relabelled, retain_loader, g)]
        passes = [(self.stream(loader, g), self.steps(1, loader)) for loader in loaders]
        opt = MaskedOptimizer(build_optimizer(p, net), net, self.mask_)
        sched = build_scheduler(p, opt, p.epochs * sum(steps for _, steps in passes))
        losses = []
        for epoch in range(p.epochs):
            if epoch > 0:
                relabelled.redraw(g)  # new labels every epoch
            losses.append(
                [
                    train_steps(net, self.view_batches(stream, steps, g), batch_cross_entropy, opt, sched)
                    for stream, steps in passes
                ]
            )
        self.log_.update(
            {
                "loss": losses,  # per epoch: [forget pass, retain pass]
                "mask_kept": sum(int(m.sum()) for m in self.mask_.values())
                / sum(m.numel() for m in self.mask_.values()),
                "mask_kept_per_tensor": {n: m.float().mean().item() for n, m in self.mask_.items()},
                "capped_steps": getattr(opt.base_optimizer, "capped_steps", 0),
            }
        )
        net.eval()
