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
SAM steps.

On the cpu preset (bank 339ce6ad7fae, 16 runs; `python main.py -m my_method`): 0.0213 [95% CI 0.0199,
0.0225], F 0.021, RA 1.004, TA 1.003, 15.2% of a retraining timed beside it.
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

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        loader = reshuffled(retain_loader, self.generator("cpu"))
        opt = build_optimizer(p, net)
        sched = build_scheduler(p, opt, p.epochs * len(loader))
        self.log_["retain_loss"] = train_epochs(net, loader, batch_cross_entropy, opt, p.epochs, sched)
        net.eval()
