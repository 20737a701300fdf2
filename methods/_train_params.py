"""The options every iterative method shares, with one name per concept, and its optimizer built from them.

`SAMParams` adds SAM/ASAM to any method (`--set sam=min|max rho=0.1 adaptive=true sam_lambda=1`,
sharp-unlearn's `--sam --rho --adaptive --lamb`); `TrainParams` adds the optimisation options
(`epochs`, `lr`, `optimizer`, `schedule`, `momentum`, `weight_decay`) and `max_update`, the
per-tensor step cap of `_trust.StepCap`: off by default, since no published method has it; our own
methods turn it on where a learning rate tuned on one network would diverge on another. A method's
`Params` derives
from one of them and overrides the defaults it ships with; the shared range checks are in
`BaseMethod.COMMON_CHECKS`. `build_optimizer` makes the optimizer those fields describe, wrapped in
SAM when asked, and `build_scheduler` its per-step schedule.
"""

from dataclasses import dataclass

from methods._optimizers import make_optimizer, make_scheduler
from methods._sam import with_sam
from methods._trust import with_step_cap
from methods.BaseMethod import BaseMethod


@dataclass
class SAMParams(BaseMethod.Params):
    sam: str | None = None  # None (plain steps) | "min" (SAM/ASAM) | "max" (sharpness maximisation)
    rho: float = 0.1  # SAM radius (sharp-unlearn's --rho, default 0.1)
    adaptive: bool = False  # ASAM: perturbation scaled by |w| (Kwon et al. 2021)
    sam_lambda: float = 1.0  # g = g0 ± sam_lambda·(g1 − g0) (sharp-unlearn's --lamb)
    max_update: float = 0.0  # per step, each tensor moves at most this fraction of its norm (0: no cap)


@dataclass
class TrainParams(SAMParams):
    epochs: int = 1  # passes over the method's main loader
    lr: float = 0.01  # peak learning rate
    optimizer: str = "sgd"  # sgd | adam | adamw
    schedule: str = "cosine"  # per step: cosine | onecycle | constant
    momentum: float = 0.9  # SGD momentum (ignored by adam/adamw)
    weight_decay: float = 5e-4


def build_optimizer(p, net, parameters=None, lr: float | None = None):
    """The optimizer `p` describes over `parameters` (default: all of `net`'s), SAM-wrapped if `p.sam`,
    its steps capped by `p.max_update` (outermost, so the cap bounds the step SAM finally takes).

    Fields `p` lacks take plain SGD's values (a `SAMParams` method such as `sibl`: SGD, momentum 0.9,
    no weight decay); `lr` overrides `p.lr` (`sibl`'s inner steps use `inner_lr`)."""
    opt = make_optimizer(
        getattr(p, "optimizer", "sgd"),
        list(parameters if parameters is not None else net.parameters()),
        p.lr if lr is None else lr,
        getattr(p, "momentum", 0.9),
        getattr(p, "weight_decay", 0.0),
    )
    return with_step_cap(with_sam(opt, net, p.sam, p.rho, p.adaptive, p.sam_lambda), getattr(p, "max_update", 0.0))


def build_scheduler(p, optimizer, total_steps: int):
    """The per-step schedule `p.schedule` over `total_steps`, peaking at `p.lr`."""
    return make_scheduler(p.schedule, optimizer, total_steps, p.lr)
