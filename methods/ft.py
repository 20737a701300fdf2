"""`ft`: fine-tune on the retain set with cross-entropy, the RUM / sharp-unlearn FT baseline.

Method (baselines.md §3.2; HaoranTang/sharp-unlearn `unlearn/FT.py`, kairanzhao/RUM `unlearn/FT.py`):
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
`--set sam=min rho=...` gives sharp-unlearn's FT+SAM. Published values (RUM README): lr 0.01, E 10,
which cost ~65% of a retraining on the cpu preset (13 retraining epochs), over the 20% rule, so E is
cut to 2 and lr raised to compensate.
Tuning on the cpu preset (16 runs; `python main.py -m ft --quiet --set ...`): see the record below.
"""
from dataclasses import dataclass

from methods._common import reshuffled
from methods._iterative import TrainParams, build_optimizer, build_scheduler
from methods._loop import batch_cross_entropy, train_epochs
from methods.BaseMethod import BaseMethod, register


@register("ft", aliases=("FT",))
class FT(BaseMethod):
    """Fine-tune on the retain set with CE at a constant SGD learning rate (RUM's FT baseline)."""

    origin = "published"

    @dataclass
    class Params(TrainParams):
        epochs: int = 2            # passes over the retain set (RUM README: 10; cut for the 20% budget)
        lr: float = 0.05           # SGD learning rate (RUM README: 0.01; RUM mid group: 0.1)
        schedule: str = "constant" # RUM: MultiStepLR([91, 136]), i.e. constant for <= 10 epochs

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above
    search_space = {"lr": ("log", 0.005, 0.2), "epochs": ("int", 1, 3)}

    @classmethod
    def test_overrides(cls) -> dict:
        """Small settings for the contract test."""
        return {"epochs": 1}

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        loader = reshuffled(retain_loader, self.generator("cpu"))
        opt = build_optimizer(p, net)
        sched = build_scheduler(p, opt, p.epochs * len(loader))
        self.log_["retain_loss"] = train_epochs(net, loader, batch_cross_entropy, opt, p.epochs, sched)
        self.log_["capped_steps"] = getattr(opt, "capped_steps", 0)
        net.eval()
