"""Run a method R times against a bank and collect what the metrics need.

Each run starts from a fresh copy of the original model, has its own seed (for the method and for
the shuffling of its loaders) and is timed. Every finished run is saved atomically under the bank's
folder, keyed by a hash of the method's code, hyperparameters, preset and seed, so an interrupted
evaluation resumes and an unchanged method is never run twice. A method that raises, or whose
model gives non-finite logits, is reported as failed with the reason; nothing else is affected.
"""
import dataclasses
import hashlib
import inspect
import json
import time
import traceback
from pathlib import Path

import numpy as np

import methods
from data.bank import Bank
from data.presets import Preset
from data.splits import Splits, make_loader
from eval.io import write_npz
from eval.outputs import model_outputs


class MethodFailed(RuntimeError):
    """The method raised or produced non-finite outputs; `reason` says which."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"method {key!r} failed: {reason}")
        self.key, self.reason = key, reason


def code_hash(cls) -> str:
    """Hash of the method's module and the shared method code it can use."""
    h = hashlib.sha256()
    pkg = Path(methods.__file__).parent
    files = sorted({Path(inspect.getfile(cls)).resolve()} | set(pkg.glob("_*.py")) | {pkg / "BaseMethod.py"})
    for path in files:
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def run_key(key: str, overrides: dict, preset: Preset, bank: Bank, seed: int, dict_batches: bool) -> str:
    """Cache key of a method's runs: code, resolved hyperparameters, preset, bank, seed, batch format."""
    cls = methods.get_method(key)
    params = dataclasses.asdict(cls(**overrides).params)
    blob = json.dumps({"method": key, "code": code_hash(cls), "params": params, "preset": preset.name,
                       "bank": bank.key, "seed": seed, "dict": dict_batches, "batch": preset.batch_size},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_once(key: str, overrides: dict, preset: Preset, splits: Splits, bank: Bank, run_seed: int,
             dict_batches: bool = False) -> dict:
    """One unlearning run from the original model; returns its outputs, time and log."""
    cls = methods.get_method(key)
    params = dict(overrides)
    params.setdefault("seed", run_seed)
    method = cls(**params)
    method.configure(preset.recipe)
    net = bank.load("original")
    bs = preset.batch_size
    retain = make_loader(splits.retain_x, splits.retain_y, bs, True, run_seed, dict_batches)
    forget = make_loader(splits.forget_x, splits.forget_y, bs, True, run_seed + 1, dict_batches)
    val = make_loader(splits.val_x, splits.val_y, bs, True, run_seed + 2, dict_batches)
    t0 = time.perf_counter()
    try:
        method.run(net, retain, forget, val)
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        raise MethodFailed(key, f"{type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno})") from exc
    elapsed = time.perf_counter() - t0
    outs = model_outputs(net, splits)
    if not outs["finite"]:
        raise MethodFailed(key, "the unlearned model gives NaN or infinite logits")
    outs["time_s"] = np.float64(elapsed)
    outs["log"] = np.array(json.dumps(method.log_, default=float))
    return outs


def evaluate_runs(key: str, overrides: dict, preset: Preset, splits: Splits, bank: Bank, *, seed: int = 0,
                  dict_batches: bool = False, progress=lambda it, **kw: it) -> dict:
    """Run (or reload) `preset.n_runs` runs; returns arrays stacked over runs plus `run_dir`."""
    rk = run_key(key, overrides, preset, bank, seed, dict_batches)
    run_dir = bank.dir / "runs" / f"{key}-{rk}"
    runs = []
    for i in progress(range(preset.n_runs), desc=f"unlearn {key}", unit="run"):
        path = run_dir / f"run_{i:03d}.npz"
        outs = None
        if path.exists():
            try:
                with np.load(path) as f:
                    outs = {k: f[k] for k in f.files}
            except Exception:  # a damaged file from an older crash: redo that run
                outs = None
        if outs is None:
            outs = run_once(key, overrides, preset, splits, bank, seed * 100_003 + i, dict_batches)
            write_npz(path, **outs)
        runs.append(outs)
    stacked = {k: np.stack([r[k] for r in runs]) for k in runs[0] if k != "log"}
    stacked["logs"] = [json.loads(str(r["log"])) for r in runs]
    stacked["run_dir"] = str(run_dir)
    return stacked
