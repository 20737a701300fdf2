"""A method's R runs against a bank: cached, resumable, locked, and timed beside a retraining slice.

Every finished run is saved atomically as `run_XXX.npz` under the bank's folder, in a folder named
by the run key (`unlearn.run_key`), so an interrupted evaluation resumes and an unchanged method is
never run twice; a damaged run file is redone. Each run is built under its own file lock, so two
processes share the work instead of both doing it. Before the first run that has to be computed,
and after every run, a slice of the preset's retraining is timed (`timing.RetrainClock`); each run
stores its own time and the mean of the two estimates around it (`reference_retrain_s`), which the
efficiency rule compares it with.
"""

import json
from pathlib import Path

import numpy as np

from eval.harness.global_state import guarded
from eval.harness.timing import RetrainClock
from eval.harness.unlearn import run_key, run_once
from eval.io import file_lock, read_npz, remove_orphans, write_npz


def run_path(run_dir, i: int) -> Path:
    """The file of run `i` under `run_dir`."""
    return Path(run_dir) / f"run_{i:03d}.npz"


def missing_runs(run_dir, n_runs: int) -> list[int]:
    """Indices of the runs among 0..n_runs-1 whose file is missing or damaged."""
    return [i for i in range(n_runs) if read_npz(run_path(run_dir, i)) is None]


class ReferenceTimer:
    """The retraining slices around computed runs: one before the first, then one after each (which is the
    next run's "before"), so consecutive runs in one process share a slice. `make_clock()` builds the
    `timing.RetrainClock` on first use only (nothing is timed when every run is cached)."""

    def __init__(self, make_clock):
        self.make_clock, self.clock, self.last = make_clock, None, None

    def timed(self, compute) -> dict:
        """`compute()`'s outputs with `reference_retrain_s`, the mean of the slices before and after it."""
        self.clock = self.clock or self.make_clock()
        before = self.last if self.last is not None else self.clock.estimate()
        outs = compute()
        self.last = self.clock.estimate()
        outs["reference_retrain_s"] = np.float64((before + self.last) / 2)
        return outs


def ensure_run(run_dir, i: int, compute, timer: ReferenceTimer, on_wait=None, method: str = "") -> dict:
    """Run `i`'s outputs: read back, or made by `compute(i)` under its lock and written atomically (one task
    of an evaluation, `tasks.py`; safe to call from any process). `compute` starts from torch's settings as
    they were and must leave them so (`global_state.guarded`: MethodFailed naming `method` otherwise)."""
    path = run_path(run_dir, i)
    outs = read_npz(path)
    if outs is None:
        with file_lock(Path(run_dir) / f"run_{i:03d}.lock", on_wait=on_wait):
            remove_orphans(path)
            outs = read_npz(path)  # another process may have finished it meanwhile
            if outs is None:
                outs = timer.timed(lambda: guarded(method, compute, i))
                write_npz(path, **outs)
    return outs


def cached_runs(
    run_dir, n_runs: int, compute, clock, *, desc: str, progress=lambda it, **kw: it, on_wait=None, method: str = ""
) -> list[dict]:
    """The `n_runs` run files under `run_dir`, each read back or made by `compute(i)` under its lock.

    `clock()` makes the `timing.RetrainClock` (only when a run has to be computed); each computed run
    stores `reference_retrain_s`, the mean of the slices timed before and after it. Files are written
    atomically, a damaged one is redone and a killed writer's temporary files are removed."""
    timer = ReferenceTimer(clock)
    return [
        ensure_run(run_dir, i, compute, timer, on_wait, method) for i in progress(range(n_runs), desc=desc, unit="run")
    ]


def run_dir_of(cls, params, preset, bank, seed: int, dict_batches: bool) -> Path:
    """Where the runs of `cls` with `params` (base seed, batch format) against `bank` live."""
    return bank.dir / "runs" / f"{cls.key}-{run_key(cls, params, preset, bank, seed, dict_batches)}"


def evaluate_runs(
    cls,
    params,
    preset,
    splits,
    bank,
    *,
    seed: int = 0,
    dict_batches: bool = False,
    progress=lambda it, **kw: it,
    on_wait=None,
) -> dict:
    """Run (or reload) `preset.n_runs` runs of method `cls` with `params`; arrays stacked over runs.

    Returns the outputs of `run_once` stacked along a leading run axis, plus `logs` (one dict per
    run) and `run_dir`. `on_wait()`, if given, is called when another process holds a run's lock.
    """
    run_dir = run_dir_of(cls, params, preset, bank, seed, dict_batches)
    runs = cached_runs(
        run_dir,
        preset.n_runs,
        lambda i: run_once(cls, params, preset, splits, bank, seed, i, dict_batches),
        lambda: RetrainClock(preset, splits, bank.device),
        desc=f"unlearn {cls.key}",
        progress=progress,
        on_wait=on_wait,
        method=cls.key,
    )
    stacked = {k: np.stack([r[k] for r in runs]) for k in runs[0] if k != "log"}
    stacked["logs"] = [json.loads(str(r["log"])) for r in runs]
    stacked["run_dir"] = str(run_dir)
    return stacked
