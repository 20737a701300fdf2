"""Released epoch counts (the NeurIPS 2023 entries' and the literature's baselines'), kept in proportion to the
preset's retraining.

Every entry was released for the test phase, whose retraining runs 30 epochs (the organizers'
`train_lib.py`); its epoch counts are fractions of that budget. A preset whose retraining has E
epochs keeps each phase's proportion by scaling its epochs by E/30: `configure` receives the preset's
recipe (the harness and the Kaggle notebook call it), and without one the scale is 1, the release.
`time_factor` then multiplies every phase by one factor, for an entry whose as-released counts exceed
the 20% rule on the kit's clock (1.0: as released). A phase of k epochs takes
round(k · E/30 · time_factor · batches) steps (at least one), drawn from one stream over the loader that
continues across phases, so fractional epochs see successive data. Imports only torch and the kit.
"""

import itertools
from dataclasses import dataclass

from methods._common import cycle, reshuffled
from methods._views import views
from methods.BaseMethod import BaseMethod

RELEASED_RETRAIN_EPOCHS = 30  # the test phase's retraining, for which the entries' epochs were written


@dataclass
class BudgetParams(BaseMethod.Params):
    time_factor: float = 1.0  # every phase's epochs times this (1: as released; < 1: cut to fit 20%)


class ReleasedEntry(BaseMethod):
    """A method whose epoch counts are the released ones, scaled to the preset's retraining (see above)."""

    origin = "published"
    epoch_scale_: float = 1.0  # E / 30, set by `configure`

    def configure(self, recipe) -> None:
        """Scale every phase by the preset's retraining epochs over the test phase's 30."""
        self.epoch_scale_ = recipe.epochs / RELEASED_RETRAIN_EPOCHS

    def steps(self, epochs: float, loader) -> int:
        """Optimizer steps of a phase of `epochs` released epochs over `loader` (at least one)."""
        return max(1, round(epochs * self.epoch_scale_ * self.params.time_factor * len(loader)))

    @staticmethod
    def stream(loader, generator):
        """An endless stream over `loader` in an order drawn from `generator`, reshuffled each pass."""
        return cycle(reshuffled(loader, generator))

    @staticmethod
    def take(stream, n: int):
        """The next `n` batches of `stream`."""
        return itertools.islice(stream, n)

    def view_batches(self, stream, n: int, generator):
        """The next `n` batches of `stream`, each as the crop/flip views of `generator` when `params.augment` is
        on (the released loaders carry the training transform, `_views.views`)."""
        return views(self.take(stream, n), generator, self.params.augment)
