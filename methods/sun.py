"""`sun`: Sun's "RNI", prize rank 7 (private leaderboard 8) of the NeurIPS 2023 Machine Unlearning Challenge.

Reset the classifier, then epochs that train a random draw of parameter tensors plus every BatchNorm
parameter, the draw partly noised with absolute Gaussian noise, then full fine-tuning epochs. Sources: the
team's Kaggle notebook as ported in xcadet/deepunlearn (`munl/unlearning/kgltop7.py`); the competition
report (Triantafillou et al. 2024, arXiv 2406.09073). No code was copied.

Algorithm ("tensor" = one entry of `named_parameters`, weights and biases apart; BatchNorm by module type):
1. Re-initialise the fc (the last nn.Linear) with its own `reset_parameters` (torchvision's default).
2. `epochs` - len(`fine_lrs`) = 5 selective epochs on the retain set, each with a fresh SGD (lr 2e-4,
   momentum 0.9, weight decay 5e-4, constant): draw `drawn_tensors` = 9 of the non-BatchNorm tensors
   without replacement (a tensor drawn in an earlier epoch may be drawn again); from the second epoch on
   (`reset_epochs` = 1), pick `noised_tensors` = 6 of the 9 and add N(0, `noise_std`² = 0.04²) to those
   not drawn in any earlier epoch; train the 9 drawn tensors and every BatchNorm weight and bias with CE,
   all other tensors frozen (requires_grad False; BN running statistics update in train mode).
3. One full fine-tuning epoch per entry of `fine_lrs` (2e-4, 2e-4, 2e-4, 1e-3): CE on every parameter, a
   fresh SGD (momentum 0.9, weight decay 5e-4) at that constant lr.
9 epochs of round(E/30 · |retain batches|) steps each (`ReleasedEntry`). Forget and validation are unread.
As released the run costs 22.3% of a retraining on `kaggle-cpu` (`benchmarks/probes/`), over the 20% rule:
every epoch is cut by `time_factor` = 0.8 (`--set time_factor=1` runs the release): 0.85 (19% nominal)
measured 20.2% in the seed-2 leaderboard (`benchmarks/results/kaggle-cpu-forget-f0.02-s2/`) and was
rejected, so the cut leaves a margin for the clock's noise.

Deviations: BatchNorm is told by module type; the release tests for "bn" in the parameter's name, which on
torchvision's ResNet-18 puts the projection shortcuts' BatchNorm (`downsample.1`) among the drawable,
noisable tensors (28 drawable tensors instead of 22). Each epoch's batches come from the seed's own shuffle.
The one-paragraph summary reads otherwise: it trains only the drawn layers, noises all of them with
unstated σ and calls the first epoch plain; the release trains every BatchNorm parameter too, noises 6
of 9 (skipping tensors drawn before) and trains a draw, unnoised, in the first epoch.
"""

from dataclasses import dataclass

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from methods._optimizers import make_scheduler
from methods._partial import last_linear, only_trainable, random_layers
from methods._reinit import reinit_modules
from methods._released import BudgetParams, ReleasedEntry
from methods._train_loop import batch_cross_entropy, train_steps
from methods._train_params import TrainParams, build_optimizer
from methods.BaseMethod import register


def parse_floats(text: str, name: str) -> list[float]:
    """Space-separated positive numbers ("2e-4 1e-3"); ValueError naming the field otherwise."""
    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        raise ValueError(f"{name} must be space-separated numbers, got {text!r}") from None
    if not all(v > 0 for v in values) or not all(v < float("inf") for v in values):
        raise ValueError(f"{name} must be positive finite numbers, got {text!r}")
    return values


def batchnorm_split(net: torch.nn.Module) -> tuple[list[str], list[str]]:
    """(non-BatchNorm, BatchNorm) parameter names, in named_parameters order, told by the owning module's type."""
    modules = dict(net.named_modules())
    plain, bn = [], []
    for name, _ in net.named_parameters():
        (bn if isinstance(modules[name.rpartition(".")[0]], _BatchNorm) else plain).append(name)
    return plain, bn


@torch.no_grad()
def add_absolute_noise_(net: torch.nn.Module, names, std: float, generator: torch.Generator) -> None:
    """Add N(0, std²) to every entry of the parameters `names` (absolute σ, drawn on the generator's device)."""
    params = dict(net.named_parameters())
    for name in names:
        q = params[name]
        noise = torch.randn(q.shape, generator=generator, device=generator.device, dtype=q.dtype)
        q.add_(noise.to(q.device) * std)


@register("sun", aliases=("Sun",))
class Sun(ReleasedEntry):
    """Sun (NeurIPS 2023, RNI): reset fc; noise and train random tensors plus BN; full fine-tuning."""

    origin = "published"

    @dataclass
    class Params(TrainParams, BudgetParams):
        epochs: int = 9  # all epochs: selective ones, then one full epoch per fine_lrs entry
        reset_epochs: int = 1  # first selective epochs, after the fc reset, without noise
        drawn_tensors: int = 9  # non-BN parameter tensors trained per selective epoch
        noised_tensors: int = 6  # of them noised from epoch reset_epochs + 1 on (0.7 × 9, rounded down)
        noise_std: float = 0.04  # absolute σ of the Gaussian weight noise
        lr: float = 2e-4  # SGD lr of the selective epochs
        fine_lrs: str = "2e-4 2e-4 2e-4 1e-3"  # one full fine-tuning epoch per lr, in order
        schedule: str = "constant"  # within each epoch's fresh optimizer
        momentum: float = 0.9
        weight_decay: float = 5e-4
        time_factor: float = 0.8  # as released 22.3% of a retraining on kaggle-cpu; cut to fit 20% (1: released)

        def __post_init__(self):
            fine = parse_floats(self.fine_lrs, "fine_lrs")
            if not 0 <= self.reset_epochs <= self.epochs - len(fine):
                raise ValueError(
                    f"reset_epochs must be in [0, epochs - len(fine_lrs)] = "
                    f"[0, {self.epochs - len(fine)}], got {self.reset_epochs} (epochs {self.epochs})"
                )
            if self.drawn_tensors < 1 or self.noised_tensors < 0:
                raise ValueError(
                    f"drawn_tensors must be >= 1 and noised_tensors >= 0, got "
                    f"{self.drawn_tensors}, {self.noised_tensors}"
                )
            if self.noise_std < 0:
                raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")

    search_space = {
        "lr": ("log", 5e-5, 1e-3),
        "noise_std": ("log", 0.01, 0.16),
        "drawn_tensors": ("int", 3, 15),
        "noised_tensors": ("int", 2, 9),
    }

    def epoch(self, net, stream, steps: int, lr: float, trained: list[str] | None = None) -> float:
        """`steps` CE steps on `stream`, a fresh optimizer at `lr` over the parameters `trained` (all when None)."""
        p = self.params
        named = dict(net.named_parameters())
        params = list(named.values()) if trained is None else [named[n] for n in trained]
        with only_trainable(net, params):
            opt = build_optimizer(p, net, parameters=params, lr=lr)
            sched = make_scheduler(p.schedule, opt, steps, lr)
            return train_steps(net, self.take(stream, steps), batch_cross_entropy, opt, sched)

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")
        fine_lrs = parse_floats(p.fine_lrs, "fine_lrs")
        self.log_["reset"] = reinit_modules(net, [last_linear(net)], g)
        pool, batchnorm = batchnorm_split(net)
        stream, steps = self.stream(retain_loader, g), self.steps(1, retain_loader)
        self.log_.update(drawn=[], noised=[], loss=[])
        seen: set[str] = set()
        for ep in range(p.epochs - len(fine_lrs)):
            drawn = random_layers(pool, p.drawn_tensors, g)
            noised = []
            if ep >= p.reset_epochs:
                noised = [n for n in random_layers(drawn, p.noised_tensors, g) if n not in seen]
                add_absolute_noise_(net, noised, p.noise_std, g)
            seen.update(drawn)
            self.log_["loss"].append(self.epoch(net, stream, steps, p.lr, drawn + batchnorm))
            self.log_["drawn"].append(drawn)
            self.log_["noised"].append(noised)
        for lr in fine_lrs:
            self.log_["loss"].append(self.epoch(net, stream, steps, lr))
        net.eval()
