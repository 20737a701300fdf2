"""One unlearning run: the method built once, its loaders, its random streams, its outputs.

A run starts from a fresh copy of the original model. Its method and its retain, forget and
validation loaders each get their own stream from the seed tree (`seeds.run_streams`), so no two
consumers, in this run or another, share one. The run's cache key (`run_key`) covers this file's
code and the method's, with everything both import (`fingerprint.py`), the resolved
hyperparameters, the bank and the base seed. A method that raises, calls `sys.exit()` or gives
non-finite logits raises `MethodFailed` with the reason; Ctrl-C is passed through.
"""

import dataclasses
import hashlib
import json
import time
import traceback
from pathlib import Path

import numpy as np

from data.splits import make_loader
from eval.harness.fingerprint import code_fingerprint
from eval.harness.seeds import run_streams
from eval.outputs import model_outputs


class MethodFailed(RuntimeError):
    """The method raised, exited or produced non-finite outputs; `reason` says which."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"method {key!r} failed: {reason}")
        self.key, self.reason = key, reason


def run_key(cls, params, preset, bank, seed: int, dict_batches: bool) -> str:
    """Cache key of a method's runs: code, resolved hyperparameters, bank, base seed, batch format and size."""
    blob = json.dumps(
        {
            "method": cls.key,
            "code": code_fingerprint([cls.__module__, __name__]),
            "params": dataclasses.asdict(params),
            "bank": bank.key,
            "seed": seed,
            "dict": dict_batches,
            "batch": preset.batch_size,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_loaders(splits, batch_size: int, streams: dict, dict_batches: bool = False):
    """Shuffled retain, forget and validation loaders, each with its own stream."""
    return tuple(
        make_loader(
            getattr(splits, f"{s}_x"),
            getattr(splits, f"{s}_y"),
            batch_size,
            shuffle=True,
            seed=streams[s],
            dict_batches=dict_batches,
        )
        for s in ("retain", "forget", "val")
    )


def raised_at(exc: BaseException) -> str:
    """' (at file.py:line)' of the innermost frame that raised `exc` ('' without a traceback)."""
    tb = traceback.extract_tb(exc.__traceback__)
    return f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""


def run_once(cls, params, preset, splits, bank, base_seed: int, index: int, dict_batches: bool = False) -> dict:
    """Run `index` of method `cls` with `params` (its seed None: taken from the seed tree); returns its outputs."""
    streams = run_streams(base_seed, index)
    if params.seed is None:
        params = dataclasses.replace(params, seed=streams["method"])
    method = cls(**{f.name: getattr(params, f.name) for f in dataclasses.fields(params)})
    method.configure(preset.recipe)
    net = bank.load("original")
    loaders = run_loaders(splits, preset.batch_size, streams, dict_batches)
    t0 = time.perf_counter()
    try:
        method.run(net, *loaders)
    except SystemExit as exc:
        raise MethodFailed(cls.key, f"called sys.exit({exc.code!r}){raised_at(exc)}") from exc
    except Exception as exc:
        raise MethodFailed(cls.key, f"{type(exc).__name__}: {exc}{raised_at(exc)}") from exc
    elapsed = time.perf_counter() - t0
    outs = model_outputs(net, splits)
    if not outs["finite"]:
        raise MethodFailed(cls.key, "the unlearned model gives NaN or infinite logits")
    outs["time_s"] = np.float64(elapsed)
    outs["log"] = np.array(json.dumps(method.log_, default=float))
    outs["method_seed"] = np.uint64(params.seed)
    return outs
