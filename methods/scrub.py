"""`scrub`: SCRUB, max passes on the forget set away from the original model, min passes on the retain set.

Method (meghdadk/SCRUB `large_scale_unlearning.ipynb`, the RUM / sharp-unlearn port
`unlearn/scrub.py`): from "Towards Unbounded Machine Unlearning" (Kurmanji, Triantafillou, Hayes,
Triantafillou, NeurIPS 2023, arXiv 2302.09880). The teacher is a frozen snapshot of the original
(`_teacher.Teacher`). Each epoch: in the first `msteps` epochs only, a max pass over F minimising
−KL(teacher ‖ student) at temperature `kd_T`; then a min pass over R minimising
`ce_weight`·CE + `kl_weight`·KL(teacher ‖ student) (SCRUB's γ and α; the port's γ and β).

Deviations and choices:
- Exactly `msteps` max passes (the RUM/SU port's 0-based `e <= msteps` runs msteps + 1).
- Released values: the large-scale notebook's (SGD lr 5e-4, wd 5e-4, 3 epochs, msteps 2, γ 0.99,
  α 0.001, T 4, lr ×0.1 after epochs 3, 5 and 9, retain batches of the loader, forget batches of 32).
  The RUM README's η 5e-3 with unpublished weights is the port's, not the authors'.
- Budget as `ft`: each pass (max over F, min over R) is scaled to the preset's retraining
  (E_preset/30 of a pass; the notebook's retraining budget is the organizers' 30 epochs), and
  `time_factor` (1: as released) cuts them all by one factor; three scaled epochs fit the 20% rule.
- SCRUB's ×0.1 step decay needs the constant schedule. No step cap, as released (`--set
  max_update=...` adds the kit's); `--set sam=min` gives sharp-unlearn's SCRUB+SAM. Per-preset tuned
  values: benchmarks/tuned/.
"""

import re
from dataclasses import dataclass

from torch.utils.data import DataLoader

from methods._losses import cross_entropy, kl_to_teacher
from methods._released import ReleasedEntry
from methods._teacher import Teacher
from methods._train_loop import train_steps
from methods._train_params import TrainParams, build_optimizer, build_scheduler
from methods.BaseMethod import register


def decay_milestones(value) -> tuple[int, ...]:
    """`lr_decay_epochs` as a sorted tuple of epochs: None, an int, "3 5 9" / "3,5,9", or a sequence of ints."""
    if value is None:
        return ()
    if isinstance(value, bool):
        raise ValueError(f"lr_decay_epochs must be epochs (ints), got {value!r}")
    if isinstance(value, int):
        items = [value]
    elif isinstance(value, str):
        items = [s for s in re.split(r"[\s,;]+", value.strip()) if s]
        if not all(s.isdigit() for s in items):
            raise ValueError(f"lr_decay_epochs must list epochs, e.g. '3 5 9', got {value!r}")
        items = [int(s) for s in items]
    else:
        items = list(value)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise ValueError(f"lr_decay_epochs must be epochs (ints), got {value!r}")
    if any(v < 0 for v in items):
        raise ValueError(f"lr_decay_epochs must be >= 0, got {value!r}")
    return tuple(sorted(items))


@register("scrub", aliases=("SCRUB",))
class SCRUB(ReleasedEntry):
    """SCRUB: max passes on F away from the original (teacher), min passes on R towards it plus CE."""

    origin = "published"

    @dataclass
    class Params(TrainParams):
        epochs: int = 3  # released epochs, each ending with a min pass over R, scaled (docstring)
        msteps: int = 2  # the first msteps epochs start with a max pass over F (large-scale: 2)
        forget_batch_size: int | None = 32  # max-pass batch size (SCRUB large-scale: 32; None: the loader's)
        lr: float = 5e-4  # SCRUB large-scale (the RUM README's port: 5e-3)
        schedule: str = "constant"  # SCRUB: constant, optionally decayed at lr_decay_epochs
        ce_weight: float = 0.99  # CE weight in the min pass (SCRUB's gamma)
        kl_weight: float = 0.001  # KL weight in the min pass (SCRUB's alpha, the RUM/SU port's beta)
        kd_T: float = 4.0  # distillation temperature T
        lr_decay_epochs: int | str | None = "3 5 9"  # lr ×lr_decay_rate after each of these epochs (SCRUB)
        lr_decay_rate: float = 0.1  # SCRUB: 0.1
        time_factor: float = 1.0  # every pass times this (1: as released)

        def __post_init__(self):
            if self.forget_batch_size is not None and self.forget_batch_size < 1:
                raise ValueError(f"forget_batch_size must be >= 1 or None, got {self.forget_batch_size}")
            if self.msteps < 0:
                raise ValueError(f"msteps must be >= 0, got {self.msteps}")
            for name in ("ce_weight", "kl_weight"):
                if getattr(self, name) < 0:
                    raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
            if not 0 < self.lr_decay_rate <= 1:
                raise ValueError(f"lr_decay_rate must be in (0, 1], got {self.lr_decay_rate}")
            if decay_milestones(self.lr_decay_epochs) and self.schedule != "constant":
                raise ValueError("lr_decay_epochs needs schedule=constant (the decay is SCRUB's step schedule)")

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above
    search_space = {
        "lr": ("log", 3e-4, 2e-2),
        "time_factor": ("float", 0.3, 1.0),
        "msteps": ("int", 1, 3),
        "kl_weight": ("log", 1e-3, 1.0),
    }

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")
        forget = (
            forget_loader
            if p.forget_batch_size is None
            else DataLoader(
                forget_loader.dataset,
                batch_size=p.forget_batch_size,
                shuffle=True,
                generator=g,
                collate_fn=forget_loader.collate_fn,
                num_workers=forget_loader.num_workers,
            )
        )
        n_min, n_f = self.steps(1, retain_loader), self.steps(1, forget)  # steps of a min and of a max pass
        retain_stream = self.stream(retain_loader, g)  # a shorter pass continues where the last one stopped
        forget_stream = self.stream(forget, g)
        teacher = Teacher(net)
        milestones = decay_milestones(p.lr_decay_epochs)

        def max_loss(m, x, y):  # ascend KL(teacher ‖ student) on the forget set
            return -kl_to_teacher(m(x), teacher(x), p.kd_T)

        def min_loss(m, x, y):
            z = m(x)
            return p.ce_weight * cross_entropy(z, y) + p.kl_weight * kl_to_teacher(z, teacher(x), p.kd_T)

        n_max = min(p.msteps, p.epochs)
        opt = build_optimizer(p, net)
        sched = None if p.schedule == "constant" else build_scheduler(p, opt, p.epochs * n_min + n_max * n_f)
        log = self.log_
        log.update(max_passes=0, min_passes=0, max_loss=[], min_loss=[], lr=[])
        for epoch in range(p.epochs):
            if milestones:  # SCRUB's adjust_learning_rate: 1-based epoch e decays once per milestone < e
                for group in opt.param_groups:
                    group["lr"] = p.lr * p.lr_decay_rate ** sum(epoch + 1 > m for m in milestones)
            log["lr"].append(opt.param_groups[0]["lr"])
            if epoch < p.msteps:  # exactly msteps max passes (the RUM/SU port runs msteps + 1)
                log["max_loss"].append(train_steps(net, self.take(forget_stream, n_f), max_loss, opt, sched))
                log["max_passes"] += 1
            log["min_loss"].append(train_steps(net, self.take(retain_stream, n_min), min_loss, opt, sched))
            log["min_passes"] += 1
        net.eval()
