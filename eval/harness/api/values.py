"""Which hyperparameters a method runs with: its published defaults, the preset's committed tuned record
(`benchmarks/tuned/<preset>/`, used by default), or the best values of an Optuna search (`--tuned DIR`);
`--set` values go over either. Every token is checked against the method's Params before any work."""

import methods
from eval.harness import tuned_records

from .errors import UsageError


def method_class(name: str):
    """The registered method `name` (key or alias, any case); UsageError naming the known ones otherwise."""
    try:
        return methods.get_method(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def parse_set(cls, overrides) -> dict:
    """`--set` tokens ["k=v", ...] (or a dict) as typed, range-checked overrides of `cls.Params`."""
    try:
        return methods.parse_overrides(cls, overrides)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--set: {exc}") from None


def method_keys(names) -> list[str]:
    """The registry keys of `names` (aliases resolved), broken method files left out."""
    return [methods.get_method(n).key for n in names if n.lower() not in methods.broken_methods()]


def committed(preset_name: str, keys) -> dict:
    """{method: tuned_records.Tuned}: the preset's committed records for `keys` (empty where there are none)."""
    if not tuned_records.RECORDS.is_dir():
        return {}
    try:
        found = tuned_records.load(tuned_records.RECORDS, preset_name, keys)
        for key, t in found.items():
            methods.parse_overrides(methods.get_method(key), list(t.tokens))
    except ValueError as exc:
        raise UsageError(f"the committed record: {exc} (or run --published)") from None
    return found


def searched(folder, preset_name: str, keys) -> dict:
    """{method: tuned_records.Tuned}: the best values of the searches under `folder` (scripts/sweep.py --optuna)."""
    try:
        found = tuned_records.load(folder, preset_name, keys)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for key, t in found.items():
        try:
            methods.parse_overrides(methods.get_method(key), list(t.tokens))
        except ValueError as exc:
            raise UsageError(f"--tuned: {t.source}: {exc}") from None
    return found


def method_values(cls, overrides, preset_name: str, published: bool):
    """(overrides, record): `cls`'s committed record for the preset (None with `published` or without one)
    with the --set `overrides` over it."""
    own = parse_set(cls, overrides)
    record = None if published else committed(preset_name, [cls.key]).get(cls.key)
    if record is None:
        return own, None
    return {**methods.parse_overrides(cls, list(record.tokens)), **own}, record


def board_values(names, preset_name: str, tuned_dir, published: bool) -> dict | None:
    """{method: tuned_records.Tuned} a leaderboard of `names` runs: the searches under `tuned_dir`, else the committed
    records (none with `published`); None when no method has any."""
    keys = method_keys(names)
    if tuned_dir is not None:
        return searched(tuned_dir, preset_name, keys)
    return (None if published else committed(preset_name, keys)) or None
