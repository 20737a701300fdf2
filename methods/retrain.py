"""`retrain`: train from scratch on the retain set with the preset's recipe. The upper reference.

Not a valid competition entry (it costs a full retraining, far above the efficiency limit) and
exempt from the efficiency rule: it shows the ceiling of the score at the bank's size. Fields left
at None take the preset's recipe, which the evaluator passes through `configure`; a recipe that
keeps the best-validation checkpoint (the Kaggle presets) selects it on `val_loader`, as the bank does.
"""

from dataclasses import dataclass, replace

from methods._train_recipe import train_from_scratch
from methods.BaseMethod import BaseMethod, register


@register("retrain")
class Retrain(BaseMethod):
    """Retrain from scratch on the retain set (upper reference; not a valid entry)."""

    origin = "reference"

    valid_entry = False

    @dataclass
    class Params(BaseMethod.Params):
        epochs: int | None = None  # None: the preset's recipe
        lr: float | None = None  # None: the preset's recipe

    def configure(self, recipe):
        self.recipe = recipe

    def run(self, net, retain_loader, forget_loader, val_loader):
        recipe = getattr(self, "recipe", None)
        if recipe is None:
            raise ValueError("retrain needs the preset's training recipe: call configure(recipe) first")
        changes = {k: v for k, v in (("epochs", self.params.epochs), ("lr", self.params.lr)) if v is not None}
        self.log_["final_train_loss"] = train_from_scratch(
            net, retain_loader, replace(recipe, **changes), seed=self.params.seed, val_loader=val_loader
        )
        net.eval()
