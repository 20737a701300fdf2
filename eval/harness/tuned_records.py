"""Tuned hyperparameters for a leaderboard: the `best.json` files `scripts/sweep.py --optuna` writes.

`main.py --leaderboard forget ams --forget-seed 2 --tuned results/tuning` runs each method with the best
parameters of its search (its `--set` tokens), so every method is scored with the same tuning budget on
a forget set it was not tuned on. Reads JSON only: Optuna is not needed to use a finished search.
"""

from dataclasses import dataclass
from pathlib import Path

from eval.io import read_json

#: the committed records: `scripts/sweep.py --optuna N --out benchmarks/tuned` writes
#: <preset>/<method>/optuna.db and <study>/best.json; `main.py` runs a preset's record by default
RECORDS = Path(__file__).resolve().parents[2] / "benchmarks" / "tuned"


@dataclass(frozen=True)
class Tuned:
    """One method's search result: its `--set` tokens and what they were tuned on."""

    method: str
    tokens: tuple
    forget_seed: int
    trials: int
    runs: int
    final_score: float
    source: Path

    def describe(self) -> str:
        """e.g. "`ams` lr=0.05176 mask_ratio=0.6006 (6 trials × 8 runs on forget seed 1, best 0.0963)": values
        shown to 4 significant digits (the exact ones are in the CSV's params column)."""
        return (
            f"`{self.method}` {' '.join(map(_short, self.tokens)) or '(defaults)'} "
            f"({self.trials} trials × {self.runs} runs "
            f"on forget seed {self.forget_seed}, best {self.final_score:.4f})"
        )


def _short(token: str) -> str:
    name, _, value = token.partition("=")
    try:
        return f"{name}={float(value):.4g}" if "." in value or "e" in value.lower() else token
    except ValueError:
        return token


def load(folder, preset: str, names) -> dict[str, Tuned]:
    """{method: Tuned} for the methods in `names` with a search for `preset` under `folder`.

    Raises ValueError when `folder` is missing, a `best.json` is unreadable, or a method has more than
    one search for this preset (which one is meant is ambiguous: name its folder instead)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--tuned: no folder {folder} (scripts/sweep.py --optuna N --out {folder} writes it)")
    wanted = {n.lower() for n in names}
    found: dict[str, list[Tuned]] = {}
    for path in sorted(folder.rglob("best.json")):
        rec = read_json(path)
        if not isinstance(rec, dict) or not {"method", "preset", "tokens", "forget_seed"} <= rec.keys():
            raise ValueError(f"--tuned: {path} is not a search result (delete it, or rerun its search)")
        if rec["preset"] != preset or rec["method"] not in wanted:
            continue
        found.setdefault(rec["method"], []).append(
            Tuned(
                rec["method"],
                tuple(rec["tokens"]),
                int(rec["forget_seed"]),
                int(rec.get("trials", 0)),
                int(rec.get("runs", 0)),
                float(rec.get("final_score", float("nan"))),
                path,
            )
        )
    many = {k: v for k, v in found.items() if len(v) > 1}
    if many:
        k, v = next(iter(many.items()))
        raise ValueError(
            f"--tuned: {len(v)} searches of {k!r} on preset {preset!r} under {folder}: "
            + ", ".join(str(t.source.parent) for t in v)
            + "; pass the folder of the one you mean"
        )
    return {k: v[0] for k, v in found.items()}


def notes(tuned: dict[str, Tuned], names, forget_seed: int | None) -> list[str]:
    """Leaderboard header bullets: which methods ran tuned (and on what), which with their defaults,
    and a warning when a method is scored on the forget set it was tuned on."""
    rows = [tuned[k].describe() for k in names if k in tuned]
    lines = [
        "**Tuned** with `scripts/sweep.py --optuna`: " + "; ".join(rows) + "."
        if rows
        else "**Tuned**: no search found for these methods; all ran with their defaults."
    ]
    untuned = [f"`{k}`" for k in names if k not in tuned]
    if rows and untuned:
        lines.append("**Defaults** (no search found): " + ", ".join(untuned) + ".")
    same = [f"`{k}`" for k in names if k in tuned and tuned[k].forget_seed == forget_seed]
    if same:
        lines.append(
            f"**Not held out**: {', '.join(same)} tuned on this forget set (seed {forget_seed}); "
            "their scores are optimistic."
        )
    return lines
