"""`sebastian`: re-initialise the 99% smallest conv and fc weights, fine-tune with CE + entropy matching.

Follows the NeurIPS 2023 Machine Unlearning Challenge entry of Sebastian Oleszko (4th place) as the
competition report summarises it (Triantafillou et al. 2024, arXiv 2406.09073; /work/shared/reference/
design-methods.md, "NeurIPS 2023 top entries"); details checked against the public re-implementation
xcadet/deepunlearn `munl/unlearning/kgltop4.py` (read, not copied).

Algorithm.
1. Rank all conv and fully-connected weights together by |w| (global L1 magnitude) and re-initialise the
   `reinit_ratio` smallest (the entry: 99%; shipped: 80%, see below) (`_reinit.reinit_entries`: each entry from a reset copy of its module,
   U(±1/√fan_in), as the re-implementation draws them); the largest 1% keep their values.
2. Fine-tune on the retain set with CE(f(x_r), y_r) + MSE(H(f(x_r)), H(f0(x_r))), H the prediction
   entropy, f0 the original model (`_teacher.Teacher`, snapshot before step 1; `_losses.entropy_matching`).

Choices where the description is silent (cpu preset) and deviations:
- Biases are not ranked (the description names weights; the re-implementation also prunes the fc bias
  and conv biases, which a ResNet's convs do not have); BN parameters and statistics are untouched.
- Plain CE (the re-implementation weights classes by count^-0.1, nearly flat on balanced CIFAR-10).
- Optimiser: SGD, momentum 0.9, weight decay 5e-4 (as re-implemented), constant lr (as re-implemented),
  lr 0.05 instead of 5e-4 (batch 128 here; with 99% of the weights fresh, 5e-4 repairs nothing in the
  steps the budget allows).
- Time: with the teacher's forward a retain epoch costs ~10% of a retraining on the cpu preset (2 full
  epochs measured 19.8%), so the entry's 3.2 epochs would be ~32% (20% rule): `epochs` = 2 of
  `epoch_fraction` = 0.75 of |R|/batch steps each (the retain stream continues across epochs).
  The re-implementation's final float16 round trip of the weights is not carried.
- DEVIATION, `reinit_ratio` 0.8 instead of 0.99. With 99% fresh, the steps the budget allows cannot
  repair a ResNet-18 on the shipped-defaults test's normalized 1,000-image preset (32 steps at 2 full
  epochs): retain 0.33 (floor 0.55); 3 epochs 0.48; Adam 3e-4 without cap 0.50-0.56; other lr / cap /
  optimizer choices 0.14-0.43; ratio 0.95 0.48-0.51; 0.9 0.56-0.64 at 1.5 epochs (marginal). At 0.8 it is
  0.79-0.82 there and 0.61-0.66 on kaggle-tiny (floor 0.51). `--set reinit_ratio=0.99` is the entry.
- Every step is capped per tensor at `max_update` = 1e-3 (`_trust.StepCap`; 2e-3 dropped kaggle-tiny to
  0.44-0.49); `--set sam=min` gives SAM steps.

Tuning on the cpu preset (original retain / forget / test 0.970 / 0.978 / 0.613, retrained 0.979 / 0.596 /
0.610). One or two runs each (`scripts/probe_defaults.py --preset cpu -m sebastian --set ...`), 2 full
epochs: ratio 0.99, lr 0.05, max_update 1e-3 0.388 / 0.349 / 0.363; max_update 1e-2 0.563 / 0.498 / 0.508;
that with lr 0.1 onecycle 0.572 / 0.519 / 0.516; no cap lr 0.2 onecycle 0.531 / 0.486 / 0.499; ratio 0.9
0.66 / 0.63 / 0.56; 0.9 lr 0.1 max_update 3e-3 0.73 / 0.65 / 0.59; 0.9 max_update 2e-3 0.71 / 0.66 / 0.58.
At epoch_fraction 0.75: ratio 0.8 (the defaults) 0.78 / 0.74 / 0.60.
`python main.py -m sebastian --quiet --set reinit_ratio=0.9 max_update=0.002 epoch_fraction=1` (16 runs):
0.0757 [95% CI 0.0686, 0.0807], F 0.112, RA ratio 0.718, TA ratio 0.944, forget gap +0.042, but 19.8% of a
retraining (too close to the 20% rule) and marginal on the shipped-defaults ResNet-18s.
`python main.py -m sebastian --quiet` (16 runs, the defaults): score 0.0596 [95% CI 0.0534, 0.0673], F 0.076,
RA ratio 0.802, TA ratio 0.975, forget gap +0.163, 14.7% of a retraining timed beside it.
"""
import itertools
from dataclasses import dataclass

import torch

from methods._common import cycle, reshuffled
from methods._iterative import TrainParams, build_optimizer, build_scheduler
from methods._losses import cross_entropy, entropy_matching
from methods._loop import train_steps
from methods._reinit import reinit_entries
from methods._saliency import saliency_mask
from methods._teacher import Teacher
from methods.BaseMethod import BaseMethod, register


def conv_fc_weight_names(net: torch.nn.Module) -> list[str]:
    """Names of the weight of every nn.Conv2d and nn.Linear of `net`, in module order."""
    return [f"{n}.weight" if n else "weight" for n, m in net.named_modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def smallest_magnitude_mask(net: torch.nn.Module, names, ratio: float) -> dict[str, torch.Tensor]:
    """{name: bool}, True on the ⌊ratio·P⌋ entries with the smallest |w| ranked over all tensors `names`."""
    named = dict(net.named_parameters())
    return saliency_mask({n: -named[n].detach().abs() for n in names}, ratio, scope="global")


@register("sebastian")
class Sebastian(BaseMethod):
    """Sebastian (NeurIPS 2023, 4th): re-init the smallest-|w| conv+fc weights (entry 99%, shipped 80%), fine-tune on CE + MSE of entropies."""

    @dataclass
    class Params(TrainParams):
        epochs: int = 2              # retain fine-tuning epochs (the entry: 3.2; 20% rule)
        epoch_fraction: float = 0.75  # steps per epoch as a fraction of |R|/batch (the entry: 1; 20% rule)
        lr: float = 0.05             # SGD learning rate (re-implementation: 5e-4 at batch 64)
        schedule: str = "constant"   # as re-implemented
        reinit_ratio: float = 0.8    # fraction of conv+fc weights re-initialised (the entry: 0.99; see the docstring)
        entropy_weight: float = 1.0  # weight of the entropy-matching term (the entry: 1)

        def __post_init__(self):
            if not 0.0 <= self.reinit_ratio <= 1.0:
                raise ValueError(f"reinit_ratio must be in [0, 1], got {self.reinit_ratio}")
            if self.entropy_weight < 0:
                raise ValueError(f"entropy_weight must be >= 0, got {self.entropy_weight}")

    search_space = {"lr": ("log", 0.01, 0.3), "epoch_fraction": ("float", 0.5, 1.0), "reinit_ratio": ("float", 0.6, 0.995),
                    "entropy_weight": ("log", 0.1, 10.0)}

    @classmethod
    def test_overrides(cls) -> dict:
        """Small settings for the contract test."""
        return {"epochs": 1}

    def loss(self, teacher: Teacher):
        """CE(f(x), y) + entropy_weight · MSE(H(f(x)), H(f0(x))) as a `loss_fn(net, x, y)`."""
        w = self.params.entropy_weight

        def loss_fn(m, x, y):
            z = m(x)
            return cross_entropy(z, y) + w * entropy_matching(z, teacher(x))
        return loss_fn

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")
        teacher = Teacher(net)
        self.mask_ = smallest_magnitude_mask(net, conv_fc_weight_names(net), p.reinit_ratio)
        reinit_fraction = reinit_entries(net, self.mask_, g)
        loader = reshuffled(retain_loader, g)
        steps = max(1, round(p.epoch_fraction * len(loader)))
        stream = cycle(loader)   # an epoch continues where the last one stopped
        opt = build_optimizer(p, net)
        sched = build_scheduler(p, opt, p.epochs * steps)
        loss_fn = self.loss(teacher)
        self.log_.update({
            "reinit_fraction": reinit_fraction,
            "retain_loss": [train_steps(net, itertools.islice(stream, steps), loss_fn, opt, sched)
                            for _ in range(p.epochs)],
            "capped_steps": getattr(opt, "capped_steps", 0)})
        net.eval()
