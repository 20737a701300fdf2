"""`my_method`: fine-tune on the retain set, the Kaggle template's baseline.

The competition's `run-unlearn-finetune` notebook unlearns by continuing to train on the retain set
with cross-entropy for 1 epoch: SGD lr 1e-3, momentum 0.9, weight decay 5e-4, and a cosine schedule
stepped once per epoch over its one epoch, which never lowers the rate (hence `constant` here).
Forgetting comes only from "catastrophic forgetting" of the examples no longer seen. The Kaggle
baseline scored 0.0609 on the private leaderboard. Copy this file to start your own method.

One deviation: the retain data are visited in an order drawn from the method's own seed
(`reshuffled`), so a run is a function of its seed alone (seed None, as on Kaggle, draws a fresh order
each run, as the template's unseeded loader does). `--set sam=min rho=...` turns the steps into SAM
steps and `--set max_update=...` caps them; both are off.
"""

from dataclasses import dataclass

from methods._common import reshuffled
from methods._train_loop import batch_cross_entropy, train_epochs
from methods._train_params import TrainParams, build_optimizer, build_scheduler
from methods.BaseMethod import BaseMethod, register


@register("my_method")
class MyMethod(BaseMethod):
    """Fine-tune on the retain set with cross-entropy (the Kaggle baseline)."""

    origin = "published"

    @dataclass
    class Params(TrainParams):
        epochs: int = 1  # passes over the retain set (the template: 1)
        lr: float = 1e-3  # SGD learning rate (the template: 1e-3)
        schedule: str = "constant"  # the template's per-epoch cosine over one epoch keeps lr constant

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above
    search_space = {"lr": ("log", 1e-4, 0.1), "epochs": ("int", 1, 3)}

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        loader = reshuffled(retain_loader, self.generator("cpu"))
        opt = build_optimizer(p, net)
        sched = build_scheduler(p, opt, p.epochs * len(loader))
        self.log_["retain_loss"] = train_epochs(net, loader, batch_cross_entropy, opt, p.epochs, sched)
        net.eval()
