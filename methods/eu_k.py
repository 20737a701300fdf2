"""`eu_k`: exact unlearning of the top, re-initialise the last k layers and retrain them on the retain set.

Paper: Goel, Prabhu, Sanyal, Lim, Torr, Kumaraguru, "Towards Adversarial Evaluation of Machine Unlearning"
(arXiv 2201.06640); code: shash42/Evaluating-Inexact-Unlearning (`src/methods.py` `retrain_lastK`,
`resetFinalResnet`; `src/models.py` `_reinit`).

Method, as released: `cf_k` (the same layers, data, recipe and train-mode BatchNorm) after re-initialising the
k counted Conv2d/Linear layers with kaiming_normal_ at its defaults (fan_in, gain √2) and zero biases, the
release's `_reinit` rather than the architecture's own initialisers; the BatchNorm layers passed on the way
are trained but neither reset nor re-estimated. If k covers the whole network this is retraining from a
kaiming draw. EU-k trains as long as the original (62 of 62 epochs on CIFAR-10), `fraction` 1 of the preset's
retraining epochs: several times the 20% rule on every preset. `time_factor` 0.2 cuts that training by one
factor (measured ratio in the preset's record); `--set time_factor=1` is the release.
"""

from dataclasses import dataclass

from methods.BaseMethod import register
from methods.cf_k import CatastrophicForgettingK


@register("eu_k", aliases=("EU-k", "EUk"))
class ExactUnlearningK(CatastrophicForgettingK):
    """Re-initialise the last k Conv/Linear layers (kaiming normal), then train them on R with the original's recipe."""

    reinitialise = True

    @dataclass
    class Params(CatastrophicForgettingK.Params):
        fraction: float = 1.0  # of the original's epochs (release: EU-k trains as long as the original)
        time_factor: float = 0.2  # cut to fit the 20% rule (1: as released)

    #: tuning ranges: training the top costs about half a retraining step per step (k 5 at 0.59: 31%)
    search_space = {"k": ("int", 1, 8), "time_factor": ("float", 0.05, 0.4)}
