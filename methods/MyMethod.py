"""`my_method`: fine-tune on the retain set, the Kaggle template's baseline.

The competition's `run-unlearn-finetune` notebook and the starting kit unlearn by continuing to
train on the retain set with cross-entropy (SGD, momentum 0.9, weight decay 5e-4, cosine schedule):
forgetting comes only from "catastrophic forgetting" of examples no longer seen. Copy this file to
start your own method.

Deviations from the template: the retain data are visited in an order drawn from the method's own
seed (`reshuffled`), not the loader's, so a run is a function of its seed alone (on Kaggle, with
seed None, every run draws a fresh order, as the template's unseeded loader does); defaults are
sized for the `cpu` preset's efficiency budget (a run must stay under 20% of one retraining; the
starting kit used 5 epochs at lr 0.1 on ResNet-18). Any `--set sam=min rho=...` turns the steps into
SAM steps. Every step is capped per tensor at `max_update` = 0.1% of the tensor's norm
(`_trust.StepCap`, shared by every iterative method): on the cpu preset SGD's steps stay below
0.18% and the cap trims only their peaks, while on the Kaggle ResNet-18 (trained with Adam at 1e-4)
the same SGD at lr 0.02 takes steps of 2-14% of a tensor's norm and falls to 35% retain accuracy in
two epochs; capped, it keeps 97% (`scripts/probe_defaults.py --preset kaggle-cpu -m my_method`).

On the kaggle-cpu preset (bank f2ada233959c, 16 runs; `python main.py -m my_method --preset kaggle-cpu`):
0.0476 [95% CI 0.0364, 0.0632], retain / forget / test accuracy 0.980 / 0.934 / 0.422 (original 1.000 /
1.000 / 0.459), 15.3% of a retraining timed beside it; its notebook's 16 checkpoints score 0.0497.

On the cpu preset (bank 339ce6ad7fae, 16 runs; `python main.py -m my_method`): 0.0206 [95% CI 0.0194,
0.0220], F 0.021, RA 1.002, TA 1.003, 12.9% of a retraining timed beside it (0.0213 before the step cap).
"""
from dataclasses import dataclass

from methods._common import reshuffled
from methods._iterative import TrainParams, build_optimizer, build_scheduler
from methods._loop import batch_cross_entropy, train_epochs
from methods.BaseMethod import BaseMethod, register


@register("my_method")
class MyMethod(BaseMethod):
    """Fine-tune on the retain set with cross-entropy (the Kaggle baseline)."""

    @dataclass
    class Params(TrainParams):
        epochs: int = 2            # passes over the retain set
        lr: float = 0.02           # SGD peak learning rate (cosine-annealed to 0 per step)

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above
    search_space = {"lr": ("log", 0.002, 0.2), "epochs": ("int", 1, 3)}

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        loader = reshuffled(retain_loader, self.generator("cpu"))
        opt = build_optimizer(p, net)
        sched = build_scheduler(p, opt, p.epochs * len(loader))
        self.log_["retain_loss"] = train_epochs(net, loader, batch_cross_entropy, opt, p.epochs, sched)
        net.eval()
