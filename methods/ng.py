"""`ng`: NegGrad+, descent on the retain loss and ascent on the forget loss in one objective.

Method (HaoranTang/sharp-unlearn `unlearn/neggrad.py`, kairanzhao/RUM, SCRUB's
`train_negrad` in meghdadk/SCRUB `thirdparty/repdistiller/helper/loops.py`): every step pairs a retain
batch B_r with the next forget batch B_f and descends L = α·CE(B_r) − (1−α)·CE(B_f), SGD (momentum 0.9,
weight decay 5e-4) at a constant learning rate. From "Towards Unbounded Machine Unlearning" (Kurmanji,
Triantafillou, Hayes, Triantafillou, NeurIPS 2023, arXiv 2302.09880) as a baseline, and the NG row of
Zhao et al. (NeurIPS 2024, arXiv 2406.01257) and Tang & Khanna (arXiv 2506.13715). The pairing and the
loss are `_paired.PairedBatches` and `_paired.neggrad_plus_loss` (shared with `sharp_minmax`).

Deviations and choices:
- The forget stream re-iterates the forget loader with a fresh shuffle on every pass instead of
  `itertools.cycle`, which replays its first pass; both orders come from the method's seed.
- Released values: lr 0.01, E 5 (RUM README), α 0.99 (sharp-unlearn's default; RUM's proxy runs
  0.99 / 0.97 / 0.97), on the reference loaders' crop/flip views of both batches (`augment`).
- Budget as `ft`: each released epoch (|R|/batch steps of two batches) is scaled to the preset's
  retraining (E_preset/30 of it; RUM retrains for 30) and `time_factor` 0.35 cuts every epoch by
  one factor to fit the 20% rule (1: the release, about half a retraining).
- No step cap, as released (`--set max_update=...` adds the kit's); `--set sam=min rho=...` gives
  sharp-unlearn's NG+SAM on the whole objective. Per-preset tuned values: benchmarks/tuned/.
"""

from dataclasses import dataclass

from methods._paired import PairedBatches, neggrad_plus_loss, train_paired
from methods._released import ReleasedEntry
from methods._train_params import TrainParams, build_optimizer, build_scheduler
from methods.BaseMethod import register


@register("ng", aliases=("NG", "NegGrad+"))
class NG(ReleasedEntry):
    """NegGrad+: per step a retain batch and a fresh forget batch, loss α·CE_r − (1−α)·CE_f."""

    origin = "published"

    @dataclass
    class Params(TrainParams):
        epochs: int = 5  # released epochs of |R|/batch paired steps (RUM README), each scaled
        lr: float = 0.01  # SGD learning rate (RUM README)
        alpha: float = 0.99  # retain weight α (sharp-unlearn default; RUM's proxy runs 0.99 / 0.97)
        schedule: str = "constant"  # RUM: MultiStepLR([91, 136]), i.e. constant for a few epochs
        augment: bool = True  # random crop (pad 4) + flip views of both batches, as the reference loaders
        time_factor: float = 0.35  # every epoch times this (1: as released, about half a retraining)

        def __post_init__(self):
            if not 0.0 <= self.alpha <= 1.0:
                raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above
    search_space = {"lr": ("log", 0.003, 0.2), "alpha": ("float", 0.4, 0.99), "time_factor": ("float", 0.1, 0.4)}

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")  # data order and views
        pairs = PairedBatches(retain_loader, forget_loader, g)
        pairs.steps = self.steps(1, retain_loader)
        pairs.views = g if p.augment else None
        opt = build_optimizer(p, net)
        sched = build_scheduler(p, opt, p.epochs * len(pairs))
        self.log_["loss"] = [
            train_paired(net, pairs, lambda m, r, f: neggrad_plus_loss(m, r, f, p.alpha), opt, sched)
            for _ in range(p.epochs)
        ]
        self.log_["capped_steps"] = getattr(opt, "capped_steps", 0)
        net.eval()
