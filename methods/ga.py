"""`ga`: NegGrad, gradient ascent on the forget-set cross-entropy (the GA baseline).

Method (HaoranTang/sharp-unlearn `unlearn/GA.py`, kairanzhao/RUM `unlearn/GA.py`):
iterate over the forget loader only and minimise −CE(F), i.e. ascend the forget loss, for E epochs with
SGD (momentum 0.9, weight decay 5e-4) at a constant learning rate. No paper of its own; it is the
NegGrad / GA row of "What makes unlearning hard and what to do about it" (Zhao et al., NeurIPS 2024,
arXiv 2406.01257) and of "Sharpness-Aware Machine Unlearning" (Tang & Khanna, arXiv 2506.13715).
It is unbounded: nothing holds the retain set, so a long or fast ascent collapses the model.

Released values (RUM README): lr 1e-4, E 5, on the reference loaders' crop/flip views (`augment`).
Budget as `ft`: each released epoch is scaled to the preset's retraining (E_preset/30 of a pass over F;
RUM retrains for 30); five passes over a small forget set fit the 20% rule as released (`time_factor`
1). Very sensitive to lr (Unlearn-Sparse issue #5): the per-preset tuned values are in
benchmarks/tuned/.

Deviations and choices:
- No step cap and no entry noise, as released: GA is unbounded and a long or fast ascent collapses
  the model (a finding, not something to hide). `--set max_update=...` adds the kit's per-tensor cap.
- Run-to-run spread: the forget order and the views come from the method's seed, as in the release.
  `--set init_noise=0.01` adds Gaussian weight noise of 1% of each conv/linear weight's std at entry
  (a kit option, off by default), for a forget set too small for its order to vary.
- Views are drawn once per batch, outside the step, so SAM's two passes see the same images;
  `--set sam=min rho=...` gives sharp-unlearn's GA+SAM (applied to −CE(F); `_sam`).
"""

from dataclasses import dataclass

from methods._noise import add_weight_noise_
from methods._released import ReleasedEntry
from methods._train_loop import batch_cross_entropy, train_steps
from methods._train_params import TrainParams, build_optimizer, build_scheduler
from methods.BaseMethod import register


def ascent_loss(net, x, y):
    """−CE(net(x), y): minimising it ascends the forget loss."""
    return -batch_cross_entropy(net, x, y)


@register("ga", aliases=("GA", "NegGrad"))
class GA(ReleasedEntry):
    """NegGrad: gradient ascent on the forget-set cross-entropy (forget loader only)."""

    origin = "published"

    @dataclass
    class Params(TrainParams):
        epochs: int = 5  # released epochs over the forget set (RUM README), each scaled (docstring)
        lr: float = 1e-4  # SGD learning rate (RUM README)
        schedule: str = "constant"  # RUM: MultiStepLR([91, 136]), i.e. constant for a few epochs
        init_noise: float = 0.0  # entry weight noise, relative to each conv/linear weight's std (a kit option)
        augment: bool = True  # random crop (pad 4) + flip of the forget images, as the reference loaders
        time_factor: float = 1.0  # every epoch times this (1: as released)

        def __post_init__(self):
            if self.init_noise < 0:
                raise ValueError(f"init_noise must be >= 0, got {self.init_noise}")

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above: the released knobs only (the
    #: kit's entry noise is an option a user may add, never part of a published method's record)
    search_space = {"lr": ("log", 1e-4, 2e-2), "epochs": ("int", 1, 8)}

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")  # forget order, entry noise, augmentation
        stream, steps = self.stream(forget_loader, g), self.steps(1, forget_loader)
        add_weight_noise_(net, p.init_noise, g)
        opt = build_optimizer(p, net)
        sched = build_scheduler(p, opt, p.epochs * steps)
        self.log_["forget_loss"] = [
            -train_steps(net, self.view_batches(stream, steps, g), ascent_loss, opt, sched) for _ in range(p.epochs)
        ]
        self.log_["capped_steps"] = getattr(opt, "capped_steps", 0)
        net.eval()
