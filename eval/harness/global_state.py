"""Torch's process-wide settings, held fixed around every unlearning run.

A method that calls `torch.set_default_dtype(torch.float64)` (or turns gradients off, or changes the
thread count) and does not undo it changes every later run, retraining slice and reference row in the
process, and the failures land on them. Each run therefore starts from the settings it found; a run that
leaves them changed has them restored and fails, the change named, so the leak is blamed where it happened.
"""

from collections.abc import Callable

import torch

from eval.harness.unlearn import MethodFailed

SETTINGS: dict[str, tuple[Callable, Callable]] = {
    "default dtype": (torch.get_default_dtype, torch.set_default_dtype),
    "gradients enabled": (torch.is_grad_enabled, torch.set_grad_enabled),
    "deterministic algorithms": (torch.are_deterministic_algorithms_enabled, torch.use_deterministic_algorithms),
    "anomaly detection": (torch.is_anomaly_enabled, torch.set_anomaly_enabled),
    "intra-op threads": (torch.get_num_threads, torch.set_num_threads),
    "default device": (torch.get_default_device, torch.set_default_device),
}


def snapshot() -> dict:
    """The current value of every setting in SETTINGS."""
    return {name: get() for name, (get, _) in SETTINGS.items()}


def restore(before: dict) -> list[str]:
    """Set back every setting that differs from `before`; the changes found, as 'name: old -> new'."""
    changed = []
    for name, (get, put) in SETTINGS.items():
        now = get()
        if now != before[name]:
            changed.append(f"{name}: {before[name]} -> {now}")
            put(before[name])
    return changed


def guarded(method: str, compute: Callable, *args):
    """`compute(*args)`, with torch's settings restored afterwards; MethodFailed naming the change when the
    call returned with any of them changed (an exception it raised passes through, the settings restored)."""
    before = snapshot()
    try:
        out = compute(*args)
    finally:
        changed = restore(before)
    if changed:
        raise MethodFailed(
            method,
            "the method changed torch's global settings and left them so ("
            + "; ".join(changed)
            + "): restored for the next run; a method must leave them as it found them",
        )
    return out
