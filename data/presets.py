"""Presets: everything that fixes a benchmark (data subset, forget set, architecture, recipe, counts).

Dev phase (the starting kit's CIFAR-10 setting: normalized images, tuple batches of 128):

    full   for GPUs: torchvision ResNet-18 on all 50,000 images, 30 epochs SGD with augmentation
    cpu    default without a GPU: a 78k-parameter ResNet on 10,000 images, ~15-60 s per model on 2 cores
    tiny   for tests: a few hundred images, a tiny CNN, a handful of models; the pipeline in seconds
    airbench  fast banks on a GPU: airbench94's net (data/archs/airbench.py) and its optimizer, 10 epochs
              on all 50,000 images, the same recipe for the original and every retrained model

Test phase, as the organizers trained the models a submission meets (google-deepmind/
unlearning_evaluation `train_lib.py`, `surf.py`): torchvision ResNet-18, float
images in 0-255 (not normalized), Adam lr 1e-4, weight decay 5e-3, cosine schedule, class-weighted
cross-entropy, the best-validation checkpoint (retrained models: from epoch 20 of 30 on; the
original: any epoch), a 2% forget set, dict batches {"image", "age_group"} of 64. CASIA-SURF faces
are not available, so CIFAR-10 stands in for them, and its forget set is drawn at random (the faces'
forget set holds every image of 15 people; CIFAR-10 has no identities). The cosine schedule steps
per batch (the organizers': per epoch over 30 epochs).

    kaggle       GPU scale: all 50,000 images, 30 epochs
    kaggle-cpu   4,000 images, 15 epochs (best from epoch 10): one model costs ~6x a `cpu` model
    kaggle-tiny  for tests: 1,000 images, 3 epochs

The forget set is part of the preset: a random `forget_frac` (or `forget_size`) of the training
subset drawn with `forget_seed`, or every image of class `forget_class` (class-wise forgetting,
the other common protocol). `with_forget` changes it (`--forget-seed`, `--forget-frac`,
`--forget-size`, `--forget-class`); it enters the bank's key through the split. `forget_set` picks the
examples by how memorized they are instead (`--forget-set mem-high|mem-mid|mem-low|mem-mix`, RUM's
protocol, Zhao et al. 2024): the evaluator estimates each training example's memorization with
`mem_models` half-subset models (Feldman & Zhang 2020; `eval/harness/memorization_bank.py`) and forgets
the `forget_frac` (or `forget_size`) most, least, or closest-to-0.5 memorized (kairanzhao/RUM
`main_forget.py`).
"""

from dataclasses import dataclass, replace

from methods._train_recipe import Recipe


@dataclass(frozen=True)
class Preset:
    name: str
    arch: str
    n_train: int | None  # training subset size (None: all of the dataset's training images)
    n_test: int | None  # test+validation images used (None: all, split 50/50)
    forget_frac: float  # fraction of the training subset to forget (random draw)
    recipe: Recipe  # training recipe of the original and the retrained models
    n_retrained: int  # retrained models in the bank
    n_runs: int  # unlearning runs per method
    batch_size: int  # batch size of the loaders handed to methods
    description: str = ""
    dataset: str = "cifar10"  # the loader in data/splits.DATASETS
    num_classes: int = 10
    forget_size: int | None = None  # forget exactly this many images instead of forget_frac
    forget_seed: int = 1  # seed of the random forget draw
    forget_class: int | None = None  # forget every image of this class instead (class-wise forgetting)
    official_files: bool = False  # use the competition's forget_idx.npy and checkpoints from the data root
    normalize: bool = True  # the starting kit's normalization; False: float pixels in 0-255 (Kaggle)
    dict_batches: bool = False  # loaders yield {"image", "age_group"} dicts (Kaggle), else tuples
    forget_set: str = "random"  # random | mem-high | mem-mid | mem-low | mem-mix (by memorization)
    mem_models: int = 16  # half-subset models of the memorization estimate (mem-* forget sets)
    bank: str = "exact"  # exact: retrained without this forget set | subsets: one bank for every random forget set
    bank_size: int | None = None  # models of a subset bank (bank "subsets"); n_retrained is then its rounds

    @property
    def subset_folds(self) -> int:
        """Parts per round of a subset bank: round(1 / p), p the forget fraction (eval/harness/subset_bank.py)."""
        n = self.n_train or CIFAR10_TRAIN
        p = self.forget_size / n if self.forget_size else self.forget_frac
        return int(round(1 / p))

    def with_bank(self, kind: str | None = None, size: int | None = None) -> "Preset":
        """The preset with `--bank exact|subsets` and `--bank-size M` applied (validated); a subset bank of M
        models gives M / folds reference models per forget example, which becomes `n_retrained`."""
        if kind is None and size is None:
            return self
        kind = kind or ("subsets" if size is not None else self.bank)
        if kind not in BANKS:
            raise ValueError(f"--bank must be one of {', '.join(BANKS)}, got {kind!r}")
        if kind == "exact":
            if size is not None:
                raise ValueError("--bank-size sizes a subset bank: use it with --bank subsets")
            return replace(self, bank="exact", bank_size=None)
        if self.forget_class is not None or self.forget_set != "random":
            raise ValueError(
                "--bank subsets serves random forget sets only: a class-wise or memorization-selected forget set "
                "shapes how each of its examples is classified, so it needs its exact bank (--bank exact)"
            )
        size = size or SUBSET_BANK_SIZE.get(self.name, 10 * self.subset_folds)
        folds = self.subset_folds
        if folds < 2:
            raise ValueError("a subset bank needs a forget fraction of at most 1/2")
        if size < 2 * folds or size % folds:
            raise ValueError(
                f"--bank-size must be a multiple of {folds} (one round: a model without each of {folds} parts, "
                f"for this forget fraction) and at least {2 * folds}, got {size}"
            )
        return replace(self, bank="subsets", bank_size=size, n_retrained=size // folds)

    def with_counts(self, runs: int | None = None, retrained: int | None = None) -> "Preset":
        """The preset with --runs / --retrained overrides applied (validated)."""
        for name, v in (("--runs", runs), ("--retrained", retrained)):
            if v is not None and v < 2:
                raise ValueError(f"{name} must be at least 2 (the metric compares distributions), got {v}")
        return replace(self, n_runs=runs or self.n_runs, n_retrained=retrained or self.n_retrained)

    def with_forget(
        self,
        seed: int | None = None,
        frac: float | None = None,
        size: int | None = None,
        klass: int | None = None,
        forget_set: str | None = None,
    ) -> "Preset":
        """The preset with another forget set (validated); None keeps the preset's value."""
        if forget_set is not None and forget_set not in FORGET_SETS:
            raise ValueError(f"--forget-set must be one of {', '.join(FORGET_SETS)}, got {forget_set!r}")
        if klass is not None and forget_set not in (None, "random"):
            raise ValueError(
                "--forget-class forgets a whole class: it cannot be combined with a memorization --forget-set"
            )
        if seed is not None and forget_set not in (None, "random"):
            raise ValueError(
                "--forget-seed draws a random forget set: a memorization --forget-set is chosen by "
                "the estimate, not drawn"
            )
        if klass is not None and (frac is not None or size is not None):
            raise ValueError(
                "--forget-class forgets a whole class: it cannot be combined with --forget-frac or --forget-size"
            )
        if frac is not None and size is not None:
            raise ValueError("give --forget-frac or --forget-size, not both")
        if frac is not None and not 0 < frac < 1:
            raise ValueError(f"--forget-frac must be in (0, 1), got {frac}")
        if size is not None and size < 1:
            raise ValueError(f"--forget-size must be >= 1, got {size}")
        if seed is not None and not 0 <= seed < 2**32:
            raise ValueError(f"--forget-seed must be in [0, 2**32), got {seed}")
        if klass is not None and not 0 <= klass < self.num_classes:
            raise ValueError(f"--forget-class must be in [0, {self.num_classes}), got {klass}")
        out = self
        if seed is not None:
            out = replace(out, forget_seed=seed)
        if frac is not None:
            out = replace(out, forget_frac=frac, forget_size=None, forget_class=None)
        if size is not None:
            out = replace(out, forget_size=size, forget_class=None)
        if klass is not None:
            out = replace(out, forget_class=klass, forget_size=None)
        if forget_set is not None:
            out = replace(out, forget_set=forget_set, forget_class=None if forget_set != "random" else out.forget_class)
        return out

    @property
    def forget_protocol(self) -> str:
        """The forget set in words, e.g. 'random 10% (seed 1)' or 'class 3'."""
        if self.forget_class is not None:
            return f"class {self.forget_class}"
        amount = f"{self.forget_size} images" if self.forget_size else f"{100 * self.forget_frac:g}%"
        if self.forget_set != "random":
            return f"{self.forget_set} {amount} (memorization from {self.mem_models} half-subset models)"
        return f"random {amount} (seed {self.forget_seed})"

    @property
    def default_forget(self) -> bool:
        """Whether the forget protocol is the named preset's own (not changed by `with_forget`)."""
        base = PRESETS.get(self.name)
        return base is None or self.forget_protocol == base.forget_protocol

    @property
    def tag(self) -> str:
        """Folder name of the results: the preset's name, plus the forget protocol when not the default, plus
        `-subsets<M>` when scored against a subset bank of M models."""
        return self._forget_tag + (f"-subsets{self.bank_size}" if self.bank == "subsets" else "")

    @property
    def _forget_tag(self) -> str:
        if self.default_forget:
            return self.name
        if self.forget_class is not None:
            return f"{self.name}-forget-class{self.forget_class}"
        amount = f"n{self.forget_size}" if self.forget_size else f"f{self.forget_frac:g}"
        base = PRESETS.get(self.name)
        if self.forget_set != "random":
            same_amount = base is not None and (self.forget_size, self.forget_frac) == (
                base.forget_size,
                base.forget_frac,
            )
            return f"{self.name}-forget-{self.forget_set}" + ("" if same_amount else f"-{amount}")
        return f"{self.name}-forget-{amount}-s{self.forget_seed}"


FORGET_SETS = ("random", "mem-high", "mem-mid", "mem-low", "mem-mix")
BANKS = ("exact", "subsets")
CIFAR10_TRAIN = 50_000  # training images of CIFAR-10 (a preset with n_train None uses them all)
SUBSET_BANK_SIZE = {"cpu": 160}  # --bank subsets without --bank-size: 16 reference models per example on cpu


def _kaggle_recipe(epochs: int, best_from: int) -> Recipe:
    return Recipe(
        epochs=epochs,
        lr=1e-4,
        batch_size=64,
        optimizer="adam",
        weight_decay=5e-3,
        schedule="cosine",
        class_weighted=True,
        best_from_epoch=best_from,
    )


PRESETS = {
    "full": Preset(
        "full",
        "resnet18",
        None,
        None,
        0.1,
        Recipe(epochs=30, lr=0.1, batch_size=128, schedule="cosine", augment=True),
        n_retrained=32,
        n_runs=32,
        batch_size=128,
        official_files=True,
        mem_models=64,
        description="starting-kit ResNet-18 on all of CIFAR-10 (GPU); raise --retrained/--runs toward 512",
    ),
    "cpu": Preset(
        "cpu",
        "small_resnet",
        10_000,
        None,
        0.1,
        Recipe(epochs=13, lr=0.2, batch_size=128, weight_decay=2e-4, schedule="onecycle", nesterov=True),
        n_retrained=16,
        n_runs=16,
        batch_size=128,
        mem_models=8,
        description="78k-param ResNet on a 10k-image subset; about a minute per model on 2 CPU cores",
    ),
    "tiny": Preset(
        "tiny",
        "tiny_cnn",
        500,
        500,
        0.1,
        Recipe(epochs=6, lr=0.1, batch_size=50, schedule="onecycle"),
        n_retrained=4,
        n_runs=3,
        batch_size=50,
        mem_models=4,
        description="test preset: 500 images, a tiny CNN, 4 retrained models",
    ),
    # airbench's optimizer in PyTorch's terms: it scales lr and weight decay per 1024 examples on a summed loss
    # (lr / (1024 (1 + 1 / (1 - momentum)))); its variant without label smoothing or TTA uses lr 5.0, and
    # airbench94 wd 0.0153: at batch 1000 and momentum 0.85 a mean loss needs lr 5.0 * 1000 / 7851 = 0.64 and
    # a coupled weight decay of 0.0153 * 1000 / 7851 / 0.64 = 3e-3. No label smoothing, Lookahead or TTA.
    "airbench": Preset(
        "airbench",
        "airbench",
        None,
        None,
        0.1,
        Recipe(
            epochs=10,
            lr=0.64,
            batch_size=1000,
            momentum=0.85,
            weight_decay=3e-3,
            schedule="onecycle",
            augment=True,
            nesterov=True,
        ),
        n_retrained=64,
        n_runs=64,
        batch_size=128,
        mem_models=64,
        description="fast GPU bank: airbench94's net and optimizer on all of CIFAR-10, 10 epochs; raise "
        "--retrained/--runs toward 512",
    ),
    "kaggle": Preset(
        "kaggle",
        "resnet18",
        None,
        None,
        0.02,
        _kaggle_recipe(30, 20),
        n_retrained=32,
        n_runs=32,
        batch_size=64,
        normalize=False,
        dict_batches=True,
        mem_models=64,
        description="the organizers' test-phase recipe on all of CIFAR-10 (GPU): ResNet-18, 0-255 inputs, "
        "2% forget; raise --retrained/--runs toward 512",
    ),
    "kaggle-cpu": Preset(
        "kaggle-cpu",
        "resnet18",
        4000,
        2000,
        0.02,
        _kaggle_recipe(15, 10),
        n_retrained=16,
        n_runs=16,
        batch_size=64,
        normalize=False,
        dict_batches=True,
        description="the test-phase recipe on a 4,000-image subset: ResNet-18, 0-255 inputs, 80 forget images, "
        "15 epochs",
    ),
    "kaggle-tiny": Preset(
        "kaggle-tiny",
        "resnet18",
        1000,
        400,
        0.02,
        _kaggle_recipe(3, 1),
        n_retrained=4,
        n_runs=3,
        batch_size=64,
        normalize=False,
        dict_batches=True,
        mem_models=4,
        description="test preset of the test phase: ResNet-18 on 1,000 images in 0-255, 3 epochs",
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called `name`; ValueError listing the known ones otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
