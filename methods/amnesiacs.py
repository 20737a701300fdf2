"""`amnesiacs`: reset the first conv and the fc layer, distil the original on validation images, then on retain.

Follows the Amnesiacs entry of the NeurIPS 2023 Machine Unlearning Challenge as the competition report
summarises it (Triantafillou et al. 2024, arXiv 2406.09073; /work/shared/reference/design-methods.md,
"NeurIPS 2023 top entries"); the values the description leaves open were compared with the public
re-implementation in xcadet/deepunlearn (`munl/unlearning/kgltop6.py`, from the Kaggle notebook
"unlearning by resetting layers", 7th on the private leaderboard). No code was copied.

Algorithm (f the network, f0 its frozen copy at entry, `_teacher.Teacher`):
1. Re-initialise the first convolution (the first nn.Conv2d in named_modules order: `stem.0` of the
   cpu preset's SmallResNet, `conv1` of ResNet-18) and the fc layer (the last nn.Linear) from their
   own initialisers (`_reinit.reinit_modules`, drawn from the seed); every other weight, BN parameter
   and buffer is untouched by this step.
2. `warmup_epochs` warm-up epochs on the VALIDATION loader only: minimise KL[f0(x_v) ‖ f(x_v)]
   (`_losses.kl_to_teacher`, temperature `kd_T`) at a constant learning rate.
3. `epochs` epochs on the retain set: CE(f(x_r), y_r) + kl_weight · symmetric KL(f(x_r), f0(x_r))
   (`_losses.symmetric_kl`), schedule `schedule` over the phase.
The forget loader is never read. SGD, momentum 0.9, weight decay 5e-4 (published), a fresh optimizer
per phase. Every step is capped per tensor (`_partial.fresh_layer_optimizer`, `_trust`): the two
re-initialised layers at `fresh_max_update` of their norm, every other tensor at `max_update`.

Published (description): 3 warm-up epochs, 3 retain epochs. Re-implementation: SGD lr 9e-4 (warm-up) and
1e-3 (retain, cosine over the epochs), momentum 0.9, weight decay 5e-4, T 5, batch 64; its retain loss
adds a soft cross-entropy and a KL at T 5 to CE, not the description's symmetric KL.

Deviations and choices where the description is silent:
- Time: the cpu preset's validation loader holds 5,000 images (more than half the 9,000 retain images;
  Kaggle's is an eighth of its retain set), so 3 + 3 full epochs cost 55% of a retraining (measured,
  one run: retain / forget / test 0.947 / 0.841 / 0.616). The epoch counts are kept and every epoch of
  both phases is cut to `epoch_fraction` = 0.3 of its loader's batches, but at least `min_steps` = 16
  (`_partial.PartialEpochs`, a fresh random subset each epoch; cpu: 16 validation and 21 retain steps
  per epoch). The floor exists for tiny data sets: the kaggle-tiny test preset has 4 validation and 16
  retain batches, and a handful of steps cannot re-learn a reset layer (retain accuracy 0.12-0.29
  there without the floor at the settings tried, 0.81-0.86 with it at the shipped defaults; the
  shipped-defaults test asks for 0.51). On Kaggle itself (420 retain batches of 64) the floor never
  binds; there 3 + 3 full epochs would fit the 20% rule (estimated, a 30-epoch retraining).
- Two step caps: a learning rate that re-learns a reset layer within ~100 steps on the SGD-trained
  small ResNet (lr 0.2) destroys the Adam-trained ResNet-18 on 0-255 pixels unless the trained layers
  are capped at the kit's 0.001; the reset layers need room (0.05 per step; 0.1 made the warm-up
  diverge on the normalized ResNet-18 of the shipped-defaults test). One cap for all tensors gave
  retain 0.43 (cap 0.01, lr 0.02) to 0.82 (cap 0.05, lr 0.05) on cpu and collapsed kaggle-tiny.
- One learning rate `lr` for both phases (published 9e-4 and 1e-3, nearly equal).
- The symmetric KL has weight `kl_weight` (description: 1) and no temperature; the warm-up KL uses
  `kd_T` = 4 (re-implementation 5) with SCRUB's T² factor: at T 1 the warm-up of the normalized
  ResNet-18 (its original 99.8% confident on retain) was erratic and its retain accuracy fell to 0.5.
- Data order from the method's seed (`_common.reshuffled` of both loaders); BN running statistics are
  updated in both phases (train mode), as in the entry.

Tuning on the cpu preset (retain / forget / test accuracy; original 0.970 / 0.978 / 0.613, retrained
0.979 / 0.596 / 0.610). Single runs with one cap for every tensor: lr 0.02 cap 0.01 0.427 / 0.440 /
0.420 (23.8% with the evaluation); lr 0.05 cap 0.05 0.824 / 0.799 / 0.589 (11.4%); lr 0.1 cap 0.05
0.780 / 0.744 / 0.589; lr 0.1 no cap 0.810 / 0.759 / 0.599; kd_T 4 0.832 / 0.798 / 0.599; Adam lr 1e-3
0.430, 3e-3 0.530 retain. `python main.py -m amnesiacs --quiet` (16 runs) at lr 0.05, max_update 0.001,
fresh_max_update 0.05: 0.0555 [95% CI 0.0414, 0.0649], F 0.088, RA 0.709, TA 0.887, retain / forget /
test 0.694 / 0.677 / 0.541, 15.5% of a retraining; per-run retain accuracy was bimodal (0.42-0.92,
depending on the reset draw). Six runs each (retain accuracies, `eval.harness.unlearn.run_once`):
fresh cap 0.2 or kd_T 4 or max_update 0.003 / 0.01 no better (means 0.62-0.72); lr 0.1 fresh 0.1 mean
0.82; lr 0.2 fresh 0.2 mean 0.89 but kaggle-tiny 0.38-0.44; lr 0.2 fresh 0.1 mean 0.86 (0.73-0.95),
kaggle-tiny 0.63-0.71, but the normalized ResNet-18's test accuracy at the floor (0.255 vs 0.25);
lr 0.5 fresh 0.3 unstable (0.46-0.95). lr 0.2 fresh 0.1: `python main.py -m amnesiacs --quiet` 0.0777
[0.0662, 0.0860], F 0.108, RA 0.784, TA 0.920, 15.3%. lr 0.2 fresh 0.05 kd_T 4: cpu mean 0.88
(0.78-0.94), kaggle-tiny 0.81-0.86, normalized ResNet-18 0.71-0.82 (test 0.31-0.37).

Shipped defaults (lr 0.2, fresh_max_update 0.05, kd_T 4), `python main.py -m amnesiacs --quiet`: 0.0779
[95% CI 0.0684, 0.0860], F 0.107, RA 0.788, TA 0.921, retain / forget / test 0.771 / 0.757 / 0.562,
15.3% of a retraining timed beside the runs (per-run retain accuracy 0.43-0.95: some reset draws of the
16-channel stem recover slowly).
"""
from dataclasses import dataclass

import torch

from methods._common import reshuffled
from methods._iterative import TrainParams, build_scheduler
from methods._losses import cross_entropy, kl_to_teacher, symmetric_kl
from methods._loop import train_epochs
from methods._partial import PartialEpochs, first_conv, fresh_layer_optimizer, last_linear, layer_parameters
from methods._reinit import reinit_modules
from methods._teacher import Teacher
from methods.BaseMethod import BaseMethod, register


def amnesiacs_retain_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor,
                          kl_weight: float) -> torch.Tensor:
    """The retain-phase loss: CE(f(x), y) + kl_weight · symmetric KL(f(x), f0(x)) (teacher side detached)."""
    return cross_entropy(logits, y) + kl_weight * symmetric_kl(logits, teacher_logits.detach())


@register("amnesiacs", aliases=("Amnesiacs",))
class Amnesiacs(BaseMethod):
    """Amnesiacs (NeurIPS 2023): reset first conv + fc, KL warm-up to f0 on validation, then CE + sym. KL on retain."""

    @dataclass
    class Params(TrainParams):
        warmup_epochs: int = 3          # KL warm-up epochs on the validation set (published: 3)
        epochs: int = 3                 # CE + symmetric-KL epochs on the retain set (published: 3)
        epoch_fraction: float = 0.3     # each epoch's share of its loader's batches (published: 1; 20% rule)
        min_steps: int = 16             # but at least this many steps per epoch (tiny data sets; may cycle)
        lr: float = 0.2                 # SGD learning rate of both phases (published: 9e-4 / 1e-3)
        schedule: str = "cosine"        # retain phase (published: cosine); the warm-up is constant
        kd_T: float = 4.0               # warm-up KL temperature (re-implementation: 5)
        kl_weight: float = 1.0          # weight of the symmetric KL in the retain loss (description: 1)
        max_update: float = 0.001       # per-step cap of the trained layers, fraction of each tensor's norm
        fresh_max_update: float = 0.05  # per-step cap of the two re-initialised layers

        def __post_init__(self):
            if self.warmup_epochs < 0:
                raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
            if self.kl_weight < 0:
                raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")

    search_space = {"lr": ("log", 0.02, 0.5), "fresh_max_update": ("log", 0.02, 0.3),
                    "epoch_fraction": ("float", 0.15, 0.4), "kl_weight": ("log", 0.1, 10.0)}

    @staticmethod
    def reset_layers(net: torch.nn.Module, generator: torch.Generator) -> list[str]:
        """Step 1: re-initialise the first nn.Conv2d and the last nn.Linear; returns the names reset."""
        return reinit_modules(net, [first_conv(net), last_linear(net)], generator)

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")
        teacher = Teacher(net)
        self.log_["reset"] = self.reset_layers(net, g)
        fresh = layer_parameters(net, self.log_["reset"])

        val = PartialEpochs(reshuffled(val_loader, g), p.epoch_fraction, p.min_steps)
        opt = fresh_layer_optimizer(p, net, fresh, p.fresh_max_update)
        self.log_["warmup_loss"] = train_epochs(
            net, val, lambda m, x, y: kl_to_teacher(m(x), teacher(x), p.kd_T), opt, p.warmup_epochs)

        retain = PartialEpochs(reshuffled(retain_loader, g), p.epoch_fraction, p.min_steps)
        opt = fresh_layer_optimizer(p, net, fresh, p.fresh_max_update)
        sched = build_scheduler(p, opt, p.epochs * len(retain))
        self.log_["retain_loss"] = train_epochs(
            net, retain, lambda m, x, y: amnesiacs_retain_loss(m(x), teacher(x), y, p.kl_weight),
            opt, p.epochs, sched)
        self.log_["capped_steps"] = getattr(opt, "capped_steps", 0)
        net.eval()
