"""`rl_og`: random-label unlearning, relabelled forget set and retain set trained together (RL_original).

Paper: the random-label baseline of Golatkar, Achille, Soatto, "Eternal Sunshine of the Spotless Net:
Selective Forgetting in Deep Networks", CVPR 2020, arXiv 1911.04933, in the form of HaoranTang/
sharp-unlearn `unlearn/RL_original.py` (= kairanzhao/RUM's), used as a baseline by
SalUn (Fan et al., ICLR 2024, arXiv 2310.12508) and RUM (Zhao et al., NeurIPS 2024, arXiv 2406.01257).

Method, each epoch: every forget example gets a new label drawn uniformly from 0..C−1 (redrawn every
epoch; it may equal the true one), the relabelled forget set F is concatenated with the retain set R,
shuffled, and one CE pass is made over the union in retain-loader batches (`_relabel.relabelled_union`).
No mask (RUM forces mask=None for RL_og). The forget examples' true labels stop being fitted while
R keeps the rest of the function in place.

Deviations: labels are redrawn on any dataset with C read from the network (RUM's released code relabels
only for CIFAR-10/SVHN, training on true labels elsewhere); relabelling is a wrapper over
`forget_loader.dataset` (tuple or Kaggle dict samples) rather than a deep copy of a CIFAR dataset;
labels and data order come from the method's seed; no step cap, as released (`--set max_update=...`
adds the kit's). Released values (RUM README): SGD lr 0.1, momentum 0.9, wd 5e-4, constant
schedule, E 10, on the reference loaders' crop/flip views (`augment`). Budget as `ft`: each released
epoch is scaled to the preset's retraining (E_preset/30 of a pass over F ∪ R; RUM retrains for 30)
and `time_factor` 0.5 cuts every epoch by one factor to fit the 20% rule (1: the release); labels are
redrawn every released epoch. Per-preset tuned values: benchmarks/tuned/.
"""

from dataclasses import dataclass

from methods._common import num_classes
from methods._relabel import RandomLabels, relabelled_union
from methods._released import ReleasedEntry
from methods._train_loop import batch_cross_entropy, train_steps
from methods._train_params import TrainParams, build_optimizer, build_scheduler
from methods.BaseMethod import register


@register("rl_og", aliases=("RL_og",))
class RLOriginal(ReleasedEntry):
    """Random labels on the forget set, redrawn per epoch, trained jointly with the retain set (RL_og)."""

    origin = "published"

    @dataclass
    class Params(TrainParams):
        epochs: int = 10  # released epochs over relabelled F ∪ R (RUM README), each scaled (docstring)
        lr: float = 0.1  # SGD learning rate (RUM README)
        schedule: str = "constant"  # RUM: constant for <= 10 epochs
        augment: bool = True  # random crop (pad 4) + flip views, as the reference loaders
        time_factor: float = 0.5  # every epoch times this (1: as released, a third of a retraining)

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above
    search_space = {"lr": ("log", 0.003, 0.2), "time_factor": ("float", 0.2, 0.6)}

    @classmethod
    def test_overrides(cls) -> dict:
        """Small settings for the contract test."""
        return {"epochs": 1}

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")  # labels and data order
        relabelled = RandomLabels(forget_loader.dataset, num_classes(net), g)
        loader = relabelled_union(relabelled, retain_loader, g)
        stream, steps = self.stream(loader, g), self.steps(1, loader)
        opt = build_optimizer(p, net)
        sched = build_scheduler(p, opt, p.epochs * steps)
        self.log_["loss"] = []
        for e in range(p.epochs):
            if e > 0:
                relabelled.redraw(g)  # new labels every epoch
            self.log_["loss"].append(
                train_steps(net, self.view_batches(stream, steps, g), batch_cross_entropy, opt, sched)
            )
        self.log_["capped_steps"] = getattr(opt, "capped_steps", 0)
        net.eval()
