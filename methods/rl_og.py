"""`rl_og`: random-label unlearning, relabelled forget set and retain set trained together (RL_original).

Paper: the random-label baseline of Golatkar, Achille, Soatto, "Eternal Sunshine of the Spotless Net:
Selective Forgetting in Deep Networks", CVPR 2020, arXiv 1911.04933, in the form of HaoranTang/
sharp-unlearn `unlearn/RL_original.py` (= kairanzhao/RUM's; baselines.md §3.8), used as a baseline by
SalUn (Fan et al., ICLR 2024, arXiv 2310.12508) and RUM (Zhao et al., NeurIPS 2024, arXiv 2406.01257).

Method, each epoch: every forget example gets a new label drawn uniformly from 0..C−1 (redrawn every
epoch; it may equal the true one), the relabelled forget set F is concatenated with the retain set R,
shuffled, and one CE pass is made over the union in retain-loader batches (`_relabel.relabelled_union`).
No mask (RUM forces mask=None for RL_og). The forget examples' true labels stop being fitted while
R keeps the rest of the function in place.

Deviations: labels are redrawn on any dataset with C read from the network (§6 defect 5: RUM relabels
only for CIFAR-10/SVHN, training on true labels elsewhere); relabelling is a wrapper over
`forget_loader.dataset` (tuple or Kaggle dict samples) rather than a deep copy of a CIFAR dataset;
labels and data order come from the method's seed; no step cap, as released (`--set max_update=...`
adds the kit's). Published values (RUM README): SGD lr 0.1, momentum 0.9, wd 5e-4, constant
schedule, E 10, ~70% of a retraining on the cpu preset (13 retraining epochs), so E and lr are retuned.
"""
from dataclasses import dataclass

from methods._common import num_classes
from methods._iterative import TrainParams, build_optimizer, build_scheduler
from methods._loop import batch_cross_entropy, train_epochs
from methods._relabel import RandomLabels, relabelled_union
from methods.BaseMethod import BaseMethod, register


@register("rl_og", aliases=("RL_og",))
class RLOriginal(BaseMethod):
    """Random labels on the forget set, redrawn per epoch, trained jointly with the retain set (RL_og)."""

    origin = "published"

    @dataclass
    class Params(TrainParams):
        epochs: int = 2            # passes over relabelled F ∪ R (RUM README: 10; cut for the 20% budget)
        lr: float = 0.05           # SGD learning rate (RUM README: 0.1)
        schedule: str = "constant" # RUM: constant for <= 10 epochs

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above
    search_space = {"lr": ("log", 0.005, 0.2), "epochs": ("int", 1, 3)}

    @classmethod
    def test_overrides(cls) -> dict:
        """Small settings for the contract test."""
        return {"epochs": 1}

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")   # labels and data order
        relabelled = RandomLabels(forget_loader.dataset, num_classes(net), g)
        loader = relabelled_union(relabelled, retain_loader, g)
        opt = build_optimizer(p, net)
        sched = build_scheduler(p, opt, p.epochs * len(loader))
        redraw = lambda e: relabelled.redraw(g) if e > 0 else None   # new labels every epoch
        self.log_["loss"] = train_epochs(net, loader, batch_cross_entropy, opt, p.epochs, sched, before_epoch=redraw)
        self.log_["capped_steps"] = getattr(opt, "capped_steps", 0)
        net.eval()
