"""`ft`: fine-tune on the retain set with cross-entropy, the RUM / sharp-unlearn FT baseline.

Method (HaoranTang/sharp-unlearn `unlearn/FT.py`, kairanzhao/RUM `unlearn/FT.py`):
minimise CE on the retain set R for E epochs with no forget term; the forget set is forgotten only
through catastrophic forgetting. No paper of its own; it is the FT row of "What makes unlearning hard
and what to do about it" (Zhao et al., NeurIPS 2024, arXiv 2406.01257) and of "Sharpness-Aware Machine
Unlearning" (Tang & Khanna, arXiv 2506.13715), and RUM's algorithm for the mid-memorisation group.

How it differs from `my_method` (the Kaggle template's fine-tuning): RUM's optimiser and schedule,
SGD (momentum 0.9, weight decay 5e-4) at a CONSTANT learning rate (RUM's MultiStepLR milestones 91
and 136 are never reached in ≤ 10 epochs), against the template's per-step cosine annealing to 0;
`rum` calls it by key with per-group overrides (`--set lr=0.1 epochs=10` is RUM's mid group).

Deviations: the retain data are visited in an order drawn from the method's seed (`reshuffled`);
the released FT's optional gradient mask is not carried (SalUn's mask is `salun`'s); no step cap (RUM
has none; `--set max_update=...` adds the kit's, off by default);
`--set sam=min rho=...` gives sharp-unlearn's FT+SAM.

Released values (RUM README): lr 0.01, E 10, on the reference loaders' crop/flip views (`augment`).
Budget: RUM retrains for 30 epochs, so E 10 is a third of a retraining; as for the Kaggle entries
(`_released`), each released epoch is scaled to the preset's retraining (E_preset/30 of a pass)
and `time_factor` 0.5 cuts every epoch by one factor to fit the 20% rule (`--set time_factor=1` is
the release). Per-preset tuned values: benchmarks/tuned/.
"""

from dataclasses import dataclass

from methods._released import ReleasedEntry
from methods._train_loop import batch_cross_entropy, train_steps
from methods._train_params import TrainParams, build_optimizer, build_scheduler
from methods.BaseMethod import register


@register("ft", aliases=("FT",))
class FT(ReleasedEntry):
    """Fine-tune on the retain set with CE at a constant SGD learning rate (RUM's FT baseline)."""

    origin = "published"

    @dataclass
    class Params(TrainParams):
        epochs: int = 10  # released epochs over the retain set (RUM README), each scaled (docstring)
        lr: float = 0.01  # SGD learning rate (RUM README; RUM mid group: 0.1)
        schedule: str = "constant"  # RUM: MultiStepLR([91, 136]), i.e. constant for <= 10 epochs
        augment: bool = True  # random crop (pad 4) + flip views, as the reference loaders
        time_factor: float = 0.5  # every epoch times this (1: as released, a third of a retraining)

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above
    search_space = {"lr": ("log", 0.003, 0.2), "time_factor": ("float", 0.2, 0.6)}

    @classmethod
    def test_overrides(cls) -> dict:
        """Small settings for the contract test."""
        return {"epochs": 1}

    def epoch_loss(self, epoch: int):
        """The loss of epoch `epoch`, `loss(model, x, y)`: cross-entropy (a subclass adds a term, `ft_l1`)."""
        return batch_cross_entropy

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")  # data order and views
        stream, steps = self.stream(retain_loader, g), self.steps(1, retain_loader)
        opt = build_optimizer(p, net)
        sched = build_scheduler(p, opt, p.epochs * steps)
        self.log_["retain_loss"] = [
            train_steps(net, self.view_batches(stream, steps, g), self.epoch_loss(e), opt, sched)
            for e in range(p.epochs)
        ]
        self.log_["capped_steps"] = getattr(opt, "capped_steps", 0)
        net.eval()
