"""`bad_teacher`: distil the original on retain data and a never-trained network on forget data.

Paper: Chundawat, Tarun, Mandal, Kankanhalli, "Can Bad Teaching Induce Forgetting? Unlearning in Deep
Networks Using an Incompetent Teacher", AAAI 2023, arXiv 2205.08096; code: vikram2000b/bad-teaching-unlearning
(`unlearn.py` `UnlearnerLoss`, `blindspot_unlearner`; the notebook's driver), copied unchanged by
if-loops/selective-synaptic-dampening (`blindspot`, random forgetting included).

Method, as released. The competent teacher is a frozen copy of the original; the incompetent teacher a
freshly initialised network of the same architecture (the architecture's own initialisers, here
`_reinit.reset_all` on a copy, seeded by the run), never trained, in eval mode. One shuffled loader mixes
the whole forget set (flag 1) with a random 30% of the retain set drawn once (flag 0), in batches of
256, without augmentation; the class labels are not used. Each batch minimises
F.kl_div(log_softmax(s/T), f·softmax(b/T) + (1−f)·softmax(c/T)) with PyTorch's default 'mean'
reduction (over batch × classes) and no T² factor, T = 1: the student (the model, in train mode as in
the release) follows the bad teacher on forget examples and the original elsewhere. Adam, lr 1e-4,
one epoch (the driver's values; the function's signature defaults lr 0.01 and 10 epochs are not what
the authors ran).

Budget: one epoch over |F| + 0.3|R| examples, scaled to the preset's retraining like every released
epoch count in the kit (`_released`, E/30; `--set time_factor=...`). No step cap (`--set max_update=...`).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, Subset

from methods._reinit import reset_all
from methods._relabel import FixedLabel, loader_over
from methods._released import ReleasedEntry
from methods._teacher import Teacher
from methods._train_loop import train_steps
from methods._train_params import TrainParams, build_optimizer
from methods.BaseMethod import register


def bad_teacher_loss(student_logits, competent_logits, incompetent_logits, is_forget, temperature: float = 1.0):
    """The release's `UnlearnerLoss`: KL from the per-example teacher (incompetent on forget, competent on
    retain) to the student, at temperature T, with F.kl_div's element-wise 'mean' reduction."""
    f = is_forget.float().unsqueeze(1)
    target = f * F.softmax(incompetent_logits / temperature, 1) + (1 - f) * F.softmax(competent_logits / temperature, 1)
    kl = F.kl_div(F.log_softmax(student_logits / temperature, 1), target, reduction="sum")
    return kl / target.numel()  # the default 'mean' (PyTorch warns that it will change): over batch × classes


def incompetent_copy(net: torch.nn.Module, generator: torch.Generator) -> Teacher:
    """A never-trained network of `net`'s architecture (its own initialisers, seeded from `generator`), frozen."""
    fresh = Teacher(net)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    reset_all(fresh.module, seed)
    return fresh


@register("bad_teacher", aliases=("BadTeacher", "blindspot"))
class BadTeacher(ReleasedEntry):
    """Student follows the original on retain and a random network on forget examples (KL, one epoch of Adam)."""

    origin = "published"

    @dataclass
    class Params(TrainParams):
        epochs: int = 1  # released: one epoch over F ∪ 30% of R, scaled (docstring)
        optimizer: str = "adam"  # release: Adam
        lr: float = 1e-4  # release (driver): 1e-4
        weight_decay: float = 0.0  # Adam's default
        schedule: str = "constant"
        retain_fraction: float = 0.3  # share of R drawn once (release: 0.3)
        batch_size: int = 256  # release: 256
        temperature: float = 1.0  # KL temperature (release: 1)
        time_factor: float = 1.0  # the epoch times this (1: as released)

        def __post_init__(self):
            if not 0.0 < self.retain_fraction <= 1.0:
                raise ValueError(f"retain_fraction must be in (0, 1], got {self.retain_fraction}")
            if self.batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
            if not self.temperature > 0:
                raise ValueError(f"temperature must be > 0, got {self.temperature}")

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above
    search_space = {
        "lr": ("log", 1e-5, 1e-2),
        "epochs": ("int", 1, 3),
        "retain_fraction": ("float", 0.1, 1.0),
    }

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")
        retain = retain_loader.dataset
        kept = torch.randperm(len(retain), generator=g)[: max(1, round(p.retain_fraction * len(retain)))]
        mixed = ConcatDataset([FixedLabel(forget_loader.dataset, 1), FixedLabel(Subset(retain, kept.tolist()), 0)])
        loader = loader_over(mixed, retain_loader, g, batch_size=p.batch_size)
        competent, incompetent = Teacher(net), incompetent_copy(net, g)

        def loss(m, x, flag):
            return bad_teacher_loss(m(x), competent(x), incompetent(x), flag, p.temperature)

        steps = self.steps(p.epochs, loader)
        opt = build_optimizer(p, net)
        net.train()
        self.log_["loss"] = train_steps(net, self.take(self.stream(loader, g), steps), loss, opt)
        self.log_.update(steps=steps, retain_examples=len(kept), forget_examples=len(forget_loader.dataset))
        net.eval()
