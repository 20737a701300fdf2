"""`ulf`: unseen-level fine-tuning, a hot retain fine-tune whose forget set is held at unseen-data level.

Source: the kit's own method (origin "ours"), designed for issue 33 from where the best published entry
on `cpu`, the organizers' fine-tune baseline (`my_method`, tuned), loses score. Its constant high
learning rate gives runs the spread the scorer wants (per-example std of the statistic across runs
1.8 on cpu seed 1, retrained models 1.95), but its hardest forget examples stay too confident (mean
statistic +2.4 above the retrained models' in the hardest fifth) and its retain and test accuracies fall
(ratios 0.82 / 0.92). Annealing the rate to 0 restores the accuracies but collapses the spread (0.9) and
brings the memorised forget set back (forget accuracy 0.88 against 0.60). `ulf` keeps most of the hot
phase and adds what it lacks; the measurements are in `benchmarks/ablations/cpu/ulf/`.

Algorithm (f the network, f0 its copy at entry, c(x, y) = log p_y − log Σ_{j≠y} p_j, the scorer's
statistic, `_losses.true_label_confidence`):
  0. reference r = c of f0 on `val_batches` validation batches (eval mode): the confidence a model
     trained with this recipe has on data it never saw, which is what a retrained model has on the
     forget set (`_entry.loader_statistics`).
  1. round(`epochs` · |R|/batch) SGD steps (momentum 0.9, weight decay 5e-4) of CE on retain batches,
     at `lr` for the first 1 − `anneal` of the steps, then linearly down to `final_lr` · lr;
     on every `forget_every`-th step plus `beta` · quantile_hinge(c(f(x_f)), r) on a forget batch:
     the batch's sorted confidences pushed down to r's quantiles, only those above theirs
     (`_losses.quantile_hinge`, unsquared), so forget examples go to unseen-data level and no lower.
  2. calibration: the last linear layer (weight and bias) is scaled by k = std(r) / std(c of f on
     `val_batches` validation batches, a fresh draw of the shuffled loader), clipped to
     [1 / `max_scale`, `max_scale`]. The hot phase leaves f less confident on unseen
     data than f0 (whose recipe ends annealed, as a retrained model's does); scaling the logits changes
     no prediction, only the confidence profile, which is set back to the recipe's.

Choices (ours): the hinge's forward runs in train mode, on its own batch (eval mode at these rates
collapsed the network: cpu seed 1, retain accuracy 0.47 at beta 0.3); its BatchNorm batch statistics
pass through the running averages like any training batch. The reference is measured once on f0 (a
current-model reference with a two-sided loss scored lower: 0.074 against 0.102, seed 1, 8 runs).
Other networks: the hot rate is cpu's; on the Kaggle ResNet-18 (0-255 inputs, an Adam recipe) it drives
the retain accuracy to chance (kaggle-tiny: 0.14). So (a) every step is capped at 1% of each tensor's
norm (`max_update`, `_trust.StepCap`), which on cpu leaves the score where it was (0.112 capped, 0.109
uncapped, seed 1, 8 runs; a 0.2% cap halves the spread there, F 0.057), and (b) when the mean retain CE
of the last `window` steps reaches chance level, ln C (or 1 nat above the entry retain loss
measured on `window` batches, if that is higher), or so does the eval-mode loss of the step's retain batch
(checked every `window` steps: on kaggle-tiny the train-mode loss stayed below chance while the running
BatchNorm statistics left the eval-mode network at 0.17 retain accuracy), or a loss is not finite, the
hot phase restarts from the entry weights at a quarter of the rate, at most `backoffs` times
(`self.log_["lr"]`: the rates tried); so does an attempt whose network, as it will be scored (after the
calibration and `finish`), has an eval-mode accuracy on `window` retain batches (read at entry) below
chance + `keep` · (the entry's accuracy − chance), less two standard errors of that estimate (kaggle-tiny:
`uvt`'s attempts ended at 0.44-0.48 retain accuracy with the loss below chance). On cpu neither check
fires (runs keep about 0.88 retain accuracy against a floor near 0.6), so cpu runs are the same with or
without them. No entry noise or
reset: the spread comes from the hot phase's own data order, drawn from the
run's seed (`reshuffled`), and a per-run random logit temperature added nothing (0.107 vs 0.109).
"""

import copy
import itertools
import math
from dataclasses import dataclass

import torch

from methods._common import cycle, device_of, eval_mode, num_classes, reshuffled, unpack
from methods._entry import entry_retain_loss, loader_statistics
from methods._losses import quantile_hinge, true_label_confidence
from methods._partial import last_linear
from methods._train_loop import batch_cross_entropy, train_steps
from methods._train_params import TrainParams, build_optimizer
from methods.BaseMethod import BaseMethod, register


def hot_then_anneal(steps: int, anneal: float, final: float):
    """LR factor per step: 1 for the first round((1 − anneal)·steps) steps, then linear down to `final`."""
    flat = round((1.0 - anneal) * steps)

    def factor(i: int) -> float:
        if i < flat:
            return 1.0
        return 1.0 - (1.0 - final) * min(1.0, (i - flat) / max(1, steps - flat))

    return factor


@torch.no_grad()
def scale_logits_(net: torch.nn.Module, k: float) -> None:
    """Multiply the last linear layer's weight and bias by k: logits scale by k, predictions do not change."""
    head = net.get_submodule(last_linear(net))
    head.weight.mul_(k)
    if head.bias is not None:
        head.bias.mul_(k)


@torch.no_grad()
def retain_accuracy(net: torch.nn.Module, batches) -> float:
    """Accuracy of `net` in eval mode over (x, y) `batches` (its running BatchNorm statistics: what the scorer sees)."""
    with eval_mode(net):
        hits = sum(int((net(x).argmax(1) == y).sum()) for x, y in batches)
    return hits / max(1, sum(len(y) for _, y in batches))


class Collapsed(Exception):
    """The hot phase drove the retain loss to chance level: restart it from the entry weights, slower."""


@register("ulf")
class ULF(BaseMethod):
    """Ours: hot retain fine-tune, forget confidences held at unseen-data level, confidence recalibrated."""

    @dataclass
    class Params(TrainParams):
        epochs: float = 1.6  # passes over the retain set, >= 1 (fractional: steps = round(epochs·|R|/batch))
        lr: float = 0.078  # the hot rate (my_method's cpu-tuned 0.0778)
        schedule: str = "constant"  # the hot phase; the anneal below is its own
        anneal: float = 0.15  # share of the steps, at the end, annealed linearly
        final_lr: float = 0.25  # ... down to this fraction of lr
        beta: float = 0.3  # weight of the forget hinge
        forget_every: int = 3  # the hinge on every k-th step
        val_batches: int = 10  # validation batches of the reference and the calibration (0: all)
        calibrate: bool = True  # scale the logits to the reference's confidence spread
        max_scale: float = 2.0  # calibration factor clipped to [1 / max_scale, max_scale]
        max_update: float = 0.01  # per-step cap, fraction of each tensor's norm (docstring)
        backoffs: int = 4  # restarts at lr / 4 when the retain loss reaches chance level (docstring)
        window: int = 10  # steps of the running retain loss that the collapse check reads
        keep: float = 0.6  # an attempt must keep this share of the entry's retain accuracy above chance (0: off)

        def __post_init__(self):
            if not 0.0 <= self.anneal <= 1.0 or not 0.0 <= self.final_lr <= 1.0:
                raise ValueError("anneal and final_lr must be in [0, 1]")
            if self.forget_every < 1:
                raise ValueError(f"forget_every must be >= 1, got {self.forget_every}")
            if self.beta < 0 or self.val_batches < 0:
                raise ValueError("beta and val_batches must be >= 0")
            if not 0.0 <= self.keep < 1.0:
                raise ValueError(f"keep must be in [0, 1), got {self.keep}")
            if self.backoffs < 0 or self.window < 1:
                raise ValueError("backoffs must be >= 0 and window >= 1")
            if self.max_scale < 1:
                raise ValueError(f"max_scale must be >= 1, got {self.max_scale}")

    #: tuning ranges (scripts/sweep.py --optuna), next to the defaults above
    search_space = {
        "lr": ("log", 0.03, 0.2),
        "beta": ("log", 0.05, 1.0),
        "anneal": ("float", 0.0, 0.4),
        "final_lr": ("float", 0.0, 1.0),
    }

    @classmethod
    def test_overrides(cls) -> dict:
        return {"val_batches": 1}

    def run(self, net, retain_loader, forget_loader, val_loader):
        p, g = self.params, self.generator("cpu")
        reference = loader_statistics(net, val_loader, true_label_confidence, p.val_batches)[0]
        retain_it = cycle(reshuffled(retain_loader, g))
        forget_it = self.forget_batches(net, forget_loader, reference, g)
        steps = max(1, round(p.epochs * len(retain_loader)))
        # chance level, or 1 nat above the entry loss for a network that starts there
        chance = max(math.log(num_classes(net)), entry_retain_loss(net, retain_loader, p.window) + 1.0)
        # the accuracy floor: `window` retain batches, read at entry and after each attempt (eval mode)
        probe = [unpack(b, device_of(net)) for b in itertools.islice(retain_loader, p.window)] if p.keep else []
        floor = 0.0
        if probe:  # less two standard errors of the probe's estimate: a network at chance never trips it
            floor = 1 / num_classes(net) + p.keep * (retain_accuracy(net, probe) - 1 / num_classes(net))
            floor -= 2 * math.sqrt(floor * (1 - floor) / sum(len(y) for _, y in probe))
        state = {"forget": None, "ce": []}

        def loss_fn(m, x, y):
            loss = batch_cross_entropy(m, x, y)
            state["ce"].append(float(loss.detach()))
            state["batch"] = (x, y)
            if state["forget"] is not None:
                xf, yf, targets = state["forget"]
                loss = loss + p.beta * self.forget_loss(true_label_confidence(m(xf), yf), targets, reference)
            return loss

        def check():  # after every step: a collapse to chance level (or a non-finite loss) aborts the attempt
            recent = state["ce"][-p.window :]
            if not math.isfinite(recent[-1]) or (len(recent) == p.window and sum(recent) / p.window >= chance):
                raise Collapsed
            if len(state["ce"]) % p.window == 0:  # the network the scorer sees: eval mode, running statistics
                with eval_mode(net), torch.no_grad():
                    if not float(batch_cross_entropy(net, *state["batch"])) < chance:
                        raise Collapsed

        def batches():
            for i in range(steps):
                hinge = p.beta > 0 and i % p.forget_every == 0
                state["forget"] = next(forget_it) if hinge else None
                yield next(retain_it)

        entry, lr = copy.deepcopy(net.state_dict()), p.lr
        self.log_["lr"] = []
        for _ in range(p.backoffs + 1):
            self.log_["lr"].append(lr)
            opt = build_optimizer(p, net, lr=lr)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, hot_then_anneal(steps, p.anneal, p.final_lr))
            state["ce"] = []
            try:
                self.log_["loss"] = train_steps(net, batches(), loss_fn, opt, sched, after_step=check)
                self.log_["scale"] = self.calibrate(net, val_loader, reference) if p.calibrate else 1.0
                self.finish(net, g)
                if probe and retain_accuracy(net, probe) < floor:  # the network as it will be scored
                    raise Collapsed
                break
            except Collapsed:
                net.load_state_dict(entry)
                lr /= 4
        else:
            raise RuntimeError(
                f"ulf: the retain loss reached chance level (or the retain accuracy fell below its floor, {floor:.3f}) "
                f"at every rate down to {lr * 4:.3g}"
            )
        self.log_["reference_median"] = float(reference.median())
        net.eval()

    def calibrate(self, net, val_loader, reference) -> float:
        """Scale the head so the validation confidences' std is the reference's (clipped); returns the factor."""
        p = self.params
        current = loader_statistics(net, val_loader, true_label_confidence, p.val_batches)[0]
        k = float((reference.std() / current.std().clamp_min(1e-8)).clamp(1 / p.max_scale, p.max_scale))
        scale_logits_(net, k)
        return k

    # The parts a variant replaces (`uvt`): the forget batches, their loss, and a last edit of the network.
    def forget_batches(self, net, forget_loader, reference, generator):
        """Endless (x, y, targets) forget batches on net's device; `ulf`'s targets are the reference's quantiles."""
        device = device_of(net)
        return ((*unpack(batch, device), None) for batch in cycle(reshuffled(forget_loader, generator)))

    def forget_loss(self, confidences, targets, reference):
        """The batch's confidences pushed down to the reference's quantiles (unsquared `quantile_hinge`)."""
        return quantile_hinge(confidences, reference, squared=False)

    def finish(self, net, generator) -> None:
        """After the calibration: nothing in `ulf`."""
