"""An evaluation as independent tasks: one bank model, one memorization model or one unlearning run each.

Each task is a small picklable object that rebuilds what it needs in the process it lands in (the
splits and the bank, once per process: `Context`) and does its unit under that file's lock
(`Bank.ensure_model`, `MemorizationBank.ensure_model`, `runs.ensure_run`), so it can run here, in a
worker process or on a Ray node, twice, or after a kill, and the cache ends the same. A run task
builds the original model first if it is missing (under the same lock as the bank task, so it is
built once) and times the efficiency rule's retraining slices in its own process
(`runs.ReferenceTimer`, one per process and preset, shared by the runs that process does in a row),
so a run's ratio compares it with a retraining under the same load, however many workers share the
machine.

`plan(...)` lists the missing tasks of a `-m` evaluation or a leaderboard; `shard(tasks, i, n)` is
shard i of n of the whole list (`--shard i/n`: a Slurm array or a shell loop; a last call without it
gathers and scores). Memorization models come first and alone: a `mem-*` forget set, and with it
the bank's key, is known only once they all exist.
"""

from dataclasses import dataclass, replace

from data.splits import make_splits
from eval.harness.bank import Bank
from eval.harness.forget_sets import build_splits
from eval.harness.memorization_bank import MemorizationBank
from eval.harness.reference_bank import make_bank
from eval.harness.runs import ReferenceTimer, ensure_run, missing_runs, run_dir_of, run_path
from eval.harness.timing import RetrainClock
from eval.harness.unlearn import run_once
from eval.io import read_npz

_CACHE: dict = {}  # per process: splits, banks and timers by Context


@dataclass(frozen=True)
class Context:
    """What every task of one preset needs to rebuild its data and bank in any process."""

    preset: object
    data_root: str | None = None
    home: str | None = None
    device: str = "cpu"

    def _cached(self, what, make):
        key = (what, self)
        if key not in _CACHE:
            _CACHE[key] = make()
        return _CACHE[key]

    def splits(self):
        """The preset's splits (its memorization models must exist for a `mem-*` forget set)."""
        return self._cached("splits", lambda: build_splits(self.preset, self.data_root, self.home, self.device))

    def bank(self) -> Bank:
        return self._cached(
            "bank", lambda: make_bank(self.preset, self.splits(), self.home, self.data_root, self.device)
        )

    def mem_bank(self) -> MemorizationBank:
        base = lambda: make_splits(replace(self.preset, forget_set="random"), self.data_root)  # noqa: E731
        return self._cached("mem", lambda: MemorizationBank(self.preset, base(), self.home, self.device))

    def timer(self) -> ReferenceTimer:
        return self._cached(
            "timer", lambda: ReferenceTimer(lambda: RetrainClock(self.preset, self.splits(), self.device))
        )


@dataclass(frozen=True)
class MemModelTask:
    ctx: Context
    k: int

    @property
    def label(self) -> str:
        return f"memorization {self.ctx.preset.tag} model_{self.k:03d}"

    def __call__(self):
        self.ctx.mem_bank().ensure_model(self.k)

    def done(self) -> bool:
        return self.ctx.mem_bank().complete(self.k)


@dataclass(frozen=True)
class BankModelTask:
    ctx: Context
    name: str

    @property
    def label(self) -> str:
        return f"bank {self.ctx.preset.tag} {self.name}"

    def __call__(self):
        self.ctx.bank().ensure_model(self.name)

    def done(self) -> bool:
        return self.ctx.bank().complete(self.name)


@dataclass(frozen=True)
class RunTask:
    ctx: Context
    method: str  # registry key
    params: object  # the method's resolved Params
    seed: int  # base seed of the runs' seed tree
    index: int
    dict_batches: bool
    run_dir: str  # the runs' folder (`runs.run_dir_of`), computed once by `plan`: its key hashes code

    @property
    def label(self) -> str:
        return f"run {self.method} {self.index:03d} ({self.ctx.preset.tag})"

    def __call__(self):
        import methods

        cls, ctx = methods.get_method(self.method), self.ctx
        bank, splits = ctx.bank(), ctx.splits()
        bank.ensure_model("original")
        ensure_run(
            self.run_dir,
            self.index,
            lambda i: run_once(cls, self.params, ctx.preset, splits, bank, self.seed, i, self.dict_batches),
            ctx.timer(),
            method=cls.key,
        )

    def done(self) -> bool:
        return read_npz(run_path(self.run_dir, self.index)) is not None


def mem_tasks(ctx: Context, missing_only: bool = True) -> list[MemModelTask]:
    """The (missing) memorization models of a `mem-*` forget set (none for a random or class-wise one)."""
    if ctx.preset.forget_set == "random":
        return []
    mem, k = ctx.mem_bank(), ctx.preset.mem_models
    return [MemModelTask(ctx, i) for i in (mem.missing(k) if missing_only else range(k))]


def plan(ctx: Context, jobs, missing_only: bool = True) -> list:
    """The bank's models, then the runs of each job `(cls, params, seed, dict_batches)`; only the missing ones
    unless `missing_only` is False (the whole list, in a fixed order: what `--shard` slices)."""
    bank, n = ctx.bank(), ctx.preset.n_retrained
    names = bank.missing(n) if missing_only else ["original", *bank.retrained_names(n)]
    tasks = [BankModelTask(ctx, name) for name in names]
    for cls, params, seed, dict_batches in jobs:
        run_dir = run_dir_of(cls, params, ctx.preset, bank, seed, dict_batches)
        todo = missing_runs(run_dir, ctx.preset.n_runs) if missing_only else range(ctx.preset.n_runs)
        tasks += [RunTask(ctx, cls.key, params, seed, i, dict_batches, str(run_dir)) for i in todo]
    return tasks


def is_done(task) -> bool:
    """Whether `task`'s file is already in the cache (complete and readable)."""
    return task.done()


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n; ValueError with the expected form otherwise."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes i/n (shard i of n, counted from 0), e.g. 0/4; got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard i/n needs n >= 1 and 0 <= i < n, got {text!r}")
    return i, n


def shard(tasks: list, i: int, n: int) -> list:
    """Shard i of n of the whole task list (`missing_only=False`, so every shard slices the same list however
    far the others are): every n-th task from the i-th, the done ones dropped. The union over i is every
    task, each in one shard."""
    return [t for t in tasks[i::n] if not is_done(t)]
