"""Presets: everything that fixes a benchmark (data subset, forget fraction, architecture, recipe, counts).

    full   competition-faithful, for GPUs: torchvision ResNet-18 on all 50,000 images, 30 epochs
    cpu    default without a GPU: a 78k-parameter ResNet on 10,000 images, ~1 min per model on 2 cores
    tiny   for tests: a few hundred images, a tiny CNN, a handful of models; the pipeline in seconds
"""
from dataclasses import dataclass, replace

from methods._training import Recipe


@dataclass(frozen=True)
class Preset:
    name: str
    arch: str
    n_train: int | None        # training subset size (None: all 50,000)
    n_test: int | None         # test+validation images used (None: all 10,000, split 50/50)
    forget_frac: float         # fraction of the training subset to forget
    recipe: Recipe             # training recipe of the original and the retrained models
    n_retrained: int           # retrained models in the bank
    n_runs: int                # unlearning runs per method
    batch_size: int            # batch size of the loaders handed to methods
    description: str = ""

    def with_counts(self, runs: int | None = None, retrained: int | None = None) -> "Preset":
        """The preset with --runs / --retrained overrides applied (validated)."""
        for name, v in (("--runs", runs), ("--retrained", retrained)):
            if v is not None and v < 2:
                raise ValueError(f"{name} must be at least 2 (the metric compares distributions), got {v}")
        return replace(self, n_runs=runs or self.n_runs, n_retrained=retrained or self.n_retrained)


PRESETS = {
    "full": Preset(
        "full", "resnet18", None, None, 0.1,
        Recipe(epochs=30, lr=0.1, batch_size=128, schedule="cosine", augment=True),
        n_retrained=32, n_runs=32, batch_size=128,
        description="starting-kit ResNet-18 on all of CIFAR-10 (GPU); raise --retrained/--runs toward 512"),
    "cpu": Preset(
        "cpu", "small_resnet", 10_000, None, 0.1,
        Recipe(epochs=13, lr=0.2, batch_size=128, weight_decay=2e-4, schedule="onecycle", nesterov=True),
        n_retrained=16, n_runs=16, batch_size=128,
        description="78k-param ResNet on a 10k-image subset; about a minute per model on 2 CPU cores"),
    "tiny": Preset(
        "tiny", "tiny_cnn", 500, 500, 0.1,
        Recipe(epochs=6, lr=0.1, batch_size=50, schedule="onecycle"),
        n_retrained=4, n_runs=3, batch_size=50,
        description="test preset: 500 images, a tiny CNN, 4 retrained models"),
}


def get_preset(name: str) -> Preset:
    """The preset called `name`; ValueError listing the known ones otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
