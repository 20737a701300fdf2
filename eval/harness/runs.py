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

import numpy as np

from eval.harness.timing import RetrainClock
from eval.harness.unlearn import run_key, run_once
from eval.io import file_lock, read_npz, remove_orphans, write_npz


def cached_runs(run_dir, n_runs: int, compute, clock, *, desc: str, progress=lambda it, **kw: it,
                on_wait=None) -> list[dict]:
    """The `n_runs` run files under `run_dir`, each read back or made by `compute(i)` under its lock.

    `clock()` makes the `timing.RetrainClock` (only when a run has to be computed); each computed run
    stores `reference_retrain_s`, the mean of the slices timed before and after it. Files are written
    atomically, a damaged one is redone and a killed writer's temporary files are removed."""
    ref, before, runs = None, None, []
    for i in progress(range(n_runs), desc=desc, unit="run"):
        path = run_dir / f"run_{i:03d}.npz"
        outs = read_npz(path)
        if outs is None:
            with file_lock(run_dir / f"run_{i:03d}.lock", on_wait=on_wait):
                remove_orphans(path)
                outs = read_npz(path)   # another process may have finished it meanwhile
                if outs is None:
                    ref = ref or clock()
                    before = before if before is not None else ref.estimate()
                    outs = compute(i)
                    after = ref.estimate()
                    outs["reference_retrain_s"] = np.float64((before + after) / 2)
                    write_npz(path, **outs)
                    before = after
        runs.append(outs)
    return runs


def evaluate_runs(cls, params, preset, splits, bank, *, seed: int = 0, dict_batches: bool = False,
                  progress=lambda it, **kw: it, on_wait=None) -> dict:
    """Run (or reload) `preset.n_runs` runs of method `cls` with `params`; arrays stacked over runs.

    Returns the outputs of `run_once` stacked along a leading run axis, plus `logs` (one dict per
    run) and `run_dir`. `on_wait()`, if given, is called when another process holds a run's lock.
    """
    rk = run_key(cls, params, preset, bank, seed, dict_batches)
    run_dir = bank.dir / "runs" / f"{cls.key}-{rk}"
    runs = cached_runs(run_dir, preset.n_runs, lambda i: run_once(cls, params, preset, splits, bank, seed, i, dict_batches),
                       lambda: RetrainClock(preset, splits, bank.device), desc=f"unlearn {cls.key}",
                       progress=progress, on_wait=on_wait)
    stacked = {k: np.stack([r[k] for r in runs]) for k in runs[0] if k != "log"}
    stacked["logs"] = [json.loads(str(r["log"])) for r in runs]
    stacked["run_dir"] = str(run_dir)
    return stacked
