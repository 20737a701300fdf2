"""`my_method`: fine-tune on the retain set, the Kaggle template's baseline.

The competition's `run-unlearn-finetune` notebook and the starting kit unlearn by continuing to
train on the retain set with cross-entropy (SGD, momentum 0.9, weight decay 5e-4, cosine schedule):
forgetting comes only from "catastrophic forgetting" of examples no longer seen. Copy this file to
start your own method. Defaults are sized for the `cpu` preset's efficiency budget (a run must stay
under 20% of one retraining); the starting kit used 5 epochs at lr 0.1 on ResNet-18.
"""
from dataclasses import dataclass

from methods._common import device_of, make_optimizer, make_scheduler, retain_ce_epochs
from methods.BaseMethod import BaseMethod, register


@register("my_method")
class MyMethod(BaseMethod):
    """Fine-tune on the retain set with cross-entropy (the Kaggle baseline)."""

    @dataclass
    class Params(BaseMethod.Params):
        epochs: int = 2            # passes over the retain set
        lr: float = 0.02           # SGD peak learning rate (cosine-annealed to 0 per step)
        momentum: float = 0.9
        weight_decay: float = 5e-4

        def __post_init__(self):
            if self.epochs < 1:
                raise ValueError(f"epochs must be >= 1, got {self.epochs}")
            if self.lr <= 0:
                raise ValueError(f"lr must be > 0, got {self.lr}")

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        opt = make_optimizer("sgd", net.parameters(), p.lr, p.momentum, p.weight_decay)
        sched = make_scheduler("cosine", opt, p.epochs * len(retain_loader), p.lr)
        self.log_["final_retain_loss"] = retain_ce_epochs(net, retain_loader, p.epochs, opt, sched,
                                                          generator=self.generator(device_of(net)))
        net.eval()
