"""What every evaluation shares: the preset (with its counts and forget set), the seed, the metric, the folders and
where the tasks run (`Options`), checked before any work; and the `Console` an evaluation reports through."""

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from data.presets import get_preset
from eval.harness import report
from eval.harness.bank import artifacts_home
from eval.harness.seeds import SEED_LIMIT
from eval.io import check_writable
from eval.scoring import METRICS

from .errors import UsageError

DEVICES = ("auto", "cpu", "cuda")
ULIRA_MIN_MODELS = 3  # eval.ulira fits a Gaussian per group leaving one model out


def _ignore(line: str) -> None:
    pass


def _identity(it, **kw):
    return it


@dataclass(frozen=True)
class Console:
    """Where a long evaluation says what it is doing: `info` lines (main.py: stdout), `warn` lines (stderr) and
    `progress`, an iterable wrapper (tqdm or the identity). The default says nothing."""

    info: Callable[[str], None] = _ignore
    warn: Callable[[str], None] = _ignore
    progress: Callable = _identity

    def on_wait(self) -> None:
        """Another process holds the lock of a model or run needed here (it waits, then reuses the result)."""
        self.warn(report.WAITING)


QUIET = Console()


@dataclass(frozen=True)
class ScaleOut:
    """Where the missing bank models and runs are computed before scoring: in this process (the default),
    `workers` local processes, or on Ray (`ray`: 'auto', 'local' or an address) with the resources per task."""

    workers: int | None = None
    ray: str | None = None
    cpus_per_task: float = 1
    gpus_per_task: float = 0

    @property
    def active(self) -> bool:
        return bool(self.workers or self.ray)

    def check(self, used: bool) -> None:
        """UsageError on a bad value; the resources per task are checked only where tasks run (`used`)."""
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {self.workers}")
        if not used:
            return
        if self.workers and self.ray:
            raise UsageError("--workers and --ray are exclusive: Ray schedules its own workers")
        if self.cpus_per_task <= 0 or self.gpus_per_task < 0:
            raise UsageError("--cpus-per-task must be > 0 and --gpus-per-task >= 0")


@dataclass(frozen=True)
class Options:
    """How and where an evaluation runs; every field is main.py's flag of the same name, with its default.

    `preset` None picks `full` with a GPU and `cpu` without (a rehearsal: `kaggle` / `kaggle-cpu`); `runs`,
    `retrained` and the `forget_*` fields change the preset (each forget set has its own bank); `seed` is
    the base of the runs' seed tree."""

    preset: str | None = None
    runs: int | None = None
    retrained: int | None = None
    forget_seed: int | None = None
    forget_frac: float | None = None
    forget_size: int | None = None
    forget_class: int | None = None
    forget_set: str | None = None
    bank: str | None = None
    bank_size: int | None = None
    seed: int = 0
    metric: str = "official"
    bootstrap: int = 20
    dict_batches: bool = False
    device: str = "auto"
    data_root: str | None = None
    home: str | None = None
    results_dir: str = "results"
    scale_out: ScaleOut = field(default_factory=ScaleOut)

    def check(self, tasks: bool = False) -> None:
        """UsageError on a value no evaluation accepts (`tasks`: the caller computes or lists tasks)."""
        if not 0 <= self.seed < SEED_LIMIT:
            raise UsageError(f"--seed must be in [0, 2**63), got {self.seed}")
        if self.bootstrap < 0:
            raise UsageError("--bootstrap must be >= 0")
        if self.metric not in METRICS:
            raise UsageError(f"--metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if self.device not in DEVICES:
            raise UsageError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        self.scale_out.check(used=tasks or self.scale_out.active)

    def with_forget_seed(self, seed: int) -> "Options":
        return replace(self, forget_seed=seed)

    def batches(self, preset) -> bool:
        """Whether the methods get Kaggle-style dict batches (always on the kaggle* presets)."""
        return self.dict_batches or preset.dict_batches


DEFAULTS = Options()


def resolve(options: Options, defaults=("full", "cpu")):
    """(device, preset): the device `options` asks for and its preset with the counts and forget set applied;
    `defaults`: the preset with and without a GPU when `options.preset` is None."""
    if options.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    gpu = torch.cuda.is_available()
    device = ("cuda" if gpu else "cpu") if options.device == "auto" else options.device
    try:
        preset = get_preset(options.preset or (defaults[0] if device == "cuda" else defaults[1]))
        preset = preset.with_counts(options.runs, options.retrained)
        preset = preset.with_forget(
            options.forget_seed, options.forget_frac, options.forget_size, options.forget_class, options.forget_set
        )
        preset = preset.with_bank(options.bank, options.bank_size)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    fewest = min(preset.n_runs, preset.n_retrained)
    if options.metric == "ulira" and fewest < ULIRA_MIN_MODELS:
        raise UsageError(
            f"--metric ulira fits each group leaving one model out: it needs --runs and --retrained of at least "
            f"{ULIRA_MIN_MODELS}, got {preset.n_runs} runs and {preset.n_retrained} retrained models"
        )
    return device, preset


def check_outputs(*folders) -> None:
    """UsageError before any work if an output folder (path, what) is a file or cannot be written."""
    for folder, what in folders:
        try:
            check_writable(folder, what)
        except OSError as exc:
            raise UsageError(str(exc)) from None


def check_home(options: Options, *more) -> None:
    """The artifacts folder (--home) and `more` output folders, writable."""
    check_outputs((artifacts_home(options.home), "artifacts folder (--home)"), *more)
