"""Hyperparameter search with Optuna over the ranges each method declares next to its defaults.

A method's `search_space` ({param: ("float", lo, hi) | ("log", lo, hi) | ("int", lo, hi) |
("choice", [values])}, checked by `BaseMethod.validate_search_space`) becomes Optuna distributions
here, so methods/ never imports Optuna. `search` asks a seeded TPE sampler for points, one at a
time (ask and tell), and scores each with an `evaluate` callback (`scripts/sweep.py` calls the
evaluation API); the objective is the final score, which is already 0 when the efficiency rule rejects
the run. A trial that fails (the method raised or diverged, the score is NaN) is told
score 0 with its reason in the user attribute `reason`: a bad region scores low, it does not stop
the search. Ctrl-C marks the trial in progress FAIL and stops; FAIL trials do not count.

The study lives in a SQLite file and is resumed: `search(n_trials=N)` runs only the trials that
the study lacks to have N complete ones. The sampler is seeded with `sampler_seed` plus the number
of trials already stored, so a resumed search is deterministic and does not replay the first
points. A lock beside the database keeps a second process off the same study (it waits, then
finds the work done); trials left RUNNING by a killed process are marked FAIL on resume.

`trials_table` and `plot_search` turn a study into `trials.csv` and `search.png`.
"""

import io
import math
import re
import shlex
import time
import typing
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from eval.io import file_lock, write_bytes, write_text  # noqa: E402

#: result fields kept per trial (user attributes and CSV columns): name in the CSV -> key in the method's record
RECORD_FIELDS = {
    "F": "F",
    "score_raw": "score",
    "ratio": "time_ratio",
    "rejected": "rejected",
    "ra_ratio": "ra_ratio",
    "ta_ratio": "ta_ratio",
    "acc_forget": None,
}


def validate(cls, space: dict | None = None) -> dict:
    """`cls.validate_search_space(space)`: the method's (or the given) space, checked; ValueError if bad."""
    return cls.validate_search_space(space)


def free_space(cls, fixed: dict) -> dict:
    """The method's validated search space minus the parameters `fixed` (canonical names) pins."""
    space = validate(cls)
    return {k: v for k, v in space.items() if k not in fixed}


def distributions(cls, space: dict) -> dict:
    """{param: Optuna distribution}; a "log" range over an int-only field is an integer log range."""
    hints = typing.get_type_hints(cls.Params)
    out = {}
    for name, spec in space.items():
        kind = spec[0]
        if kind == "choice":
            out[name] = CategoricalDistribution(tuple(spec[1]))
        elif kind == "int" or (
            kind == "log" and float not in typing.get_args(hints[name]) and hints[name] is not float
        ):
            out[name] = IntDistribution(int(spec[1]), int(spec[2]), log=kind == "log")
        else:
            out[name] = FloatDistribution(float(spec[1]), float(spec[2]), log=kind == "log")
    return out


def set_token(name: str, value) -> str:
    """`name=value` for `--set`, parsed back to exactly `value` (plain words bare, anything else repr)."""
    plain = isinstance(value, str) and value.isidentifier() and value.lower() not in ("true", "false", "none")
    return f"{name}={value if plain else repr(value)}"


def set_line(tokens) -> str:
    """The tokens quoted for a shell."""
    return " ".join(shlex.quote(t) for t in tokens)


def study_name(key: str, preset: str, forget_seed: int, runs: int, fixed: list[str] = ()) -> str:
    """e.g. `ft-cpu-forget1-runs16`, with the fixed `--set` values appended when there are any."""
    name = f"{key}-{preset}-forget{forget_seed}-runs{runs}"
    return name + "".join(f"-{t}" for t in sorted(fixed))


def folder_name(name: str) -> str:
    """A study name made safe as a folder name."""
    return re.sub(r"[^\w.=+-]", "_", name)


def outcome_score(outcome: dict) -> tuple[float, dict]:
    """(objective, user attributes) from an `evaluate` outcome {"rc", "record", "reason"}."""
    record, rc = outcome.get("record"), outcome.get("rc", 1)
    if rc != 0 or record is None:
        return 0.0, {"reason": outcome.get("reason") or f"main.py exited {rc}"}
    attrs = {}
    for col, field in RECORD_FIELDS.items():
        value = record.get("accuracy", {}).get("forget_unlearned") if field is None else record.get(field)
        if value is not None:
            attrs[col] = value
    score = record.get("final_score")
    if score is None or not math.isfinite(float(score)):
        attrs["reason"] = f"final score is {score}"
        return 0.0, attrs
    return float(score), attrs


def _stale_running(study) -> int:
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
    return len(stale)


class StudyError(RuntimeError):
    """The study file cannot be opened (corrupt, truncated, locked, not a study); the message says what to do."""


def _study_error(db: Path, exc: Exception) -> StudyError:
    text = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    if "locked" in text:
        return StudyError(
            f"{db} is locked by another process ({text}): let the other search finish or stop it, then run the "
            "same command again (its trials so far are kept)"
        )
    return StudyError(
        f"{db} cannot be read as an Optuna study ({type(exc).__name__}: {text}); it is corrupt or truncated. "
        f"Restore the committed copy (git checkout -- {db}) or move it aside (mv {db} {db}.bad) to start the "
        "search afresh; nothing was run"
    )


def open_study(db: Path, name: str, sampler_seed: int = 0):
    """The study `name` in the SQLite file `db` (created if missing), its TPE sampler seeded with
    `sampler_seed` plus the number of trials already stored; StudyError when `db` cannot be read."""
    db.parent.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            storage=f"sqlite:///{db.resolve()}", study_name=name, direction="maximize", load_if_exists=True
        )
        len(study.trials)  # reads the trials table: a damaged file fails here, not in the middle of a search
    except Exception as exc:  # noqa: BLE001 (sqlalchemy's and optuna's errors alike: say what happened)
        raise _study_error(db, exc) from exc
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed + len(study.trials))
    return study


def complete(study) -> list:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def defaults(cls, dists: dict) -> dict | None:
    """The method's default values of the parameters in `dists`, or None when one lies outside its range
    (a range narrowed by hand); the declared ranges always contain the defaults (BaseMethod)."""
    params = cls.Params()
    values = {k: getattr(params, k) for k in dists}

    def inside(d, v):
        return v in d.choices if isinstance(d, CategoricalDistribution) else d.low <= v <= d.high

    return values if all(inside(d, values[k]) for k, d in dists.items()) else None


def enqueue_defaults(study, cls, dists: dict) -> bool:
    """Queue the defaults as the next trial; False (nothing queued) when they are outside the ranges."""
    values = defaults(cls, dists)
    if values is not None:
        study.enqueue_trial(values)
    return values is not None


def search(
    cls,
    space: dict,
    n_trials: int,
    db: Path,
    name: str,
    evaluate: Callable[[list[str], int], dict],
    *,
    sampler_seed: int = 0,
    attrs: dict | None = None,
    log: Callable[[str], None] = print,
    fatal: tuple = (),
):
    """Run trials until the study `name` in `db` has `n_trials` complete ones; returns the study.

    A new study's first trial is the method's defaults (when they lie in `space`): with a small budget
    TPE samples at random (its first 10 trials), and a tuned method should never score below its
    untuned self on the tuning seed.

    `evaluate(tokens, number)` scores the `--set` tokens of trial `number` (a dict {"rc", "record",
    "reason"}; it may raise: the trial scores 0). `attrs` (e.g. the fixed values and extra arguments)
    are stored on a new study and compared, with a warning, on a resumed one. An exception of a `fatal` type
    (bad input, which would fail every trial) marks the trial FAIL and stops the search, as Ctrl-C does."""
    dists = distributions(cls, space)
    with file_lock(
        db.with_name(f".{folder_name(name)}.lock"),
        on_wait=lambda: log("waiting: another process is running this study"),
    ):
        study = open_study(db, name, sampler_seed)
        if _stale_running(study):
            log("marked the trials an interrupted search left running as failed (they are run again)")
        stored = {"space": repr(space), **{k: repr(v) for k, v in (attrs or {}).items()}}
        for k, v in stored.items():
            old = study.user_attrs.get(k)
            if old is None:
                study.set_user_attr(k, v)
            elif old != v:
                log(f"warning: this study was started with {k} {old}, now {v}; its trials are all used")
        if not study.trials and enqueue_defaults(study, cls, dists):
            log("trial 0 is the method's defaults, so the search's best is never below them")
        done = len(complete(study))
        if done:
            log(f"study {name}: {done} complete trial(s) in {db}; target {n_trials}")
        while len(complete(study)) < n_trials:
            trial = study.ask(dists)
            tokens = [set_token(k, trial.params[k]) for k in space]
            log(f"[trial {trial.number}: {len(complete(study)) + 1}/{n_trials}] {' '.join(tokens)}")
            t0 = time.perf_counter()
            try:
                outcome = evaluate(tokens, trial.number)
            except (KeyboardInterrupt, *fatal):
                study.tell(trial, state=TrialState.FAIL)
                raise
            except BaseException as exc:  # noqa: BLE001 (any failure of one trial scores 0, SystemExit included)
                outcome = {"rc": 1, "record": None, "reason": f"{type(exc).__name__}: {exc}".strip()}
            score, info = outcome_score(outcome)
            info["seconds"] = time.perf_counter() - t0
            for k, v in info.items():
                trial.set_user_attr(k, v)
            study.tell(trial, score)
            best = study.best_trial
            what = (
                f"FAILED, scored 0: {info['reason']}"
                if "reason" in info
                else f"score {score:.4f}  F {info.get('F', float('nan')):.4f}  "
                f"{100 * (info.get('ratio') or float('nan')):.1f}% of a retraining"
                + ("  REJECTED (efficiency rule)" if info.get("rejected") else "")
            )
            log(f"    {what}   (best {best.value:.4f}, trial {best.number})")
    return study


def trials_table(study, names) -> pd.DataFrame:
    """One row per trial: number, state, the parameters `names`, score and the stored result fields."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {"trial": t.number, "state": t.state.name, **{n: t.params.get(n) for n in names}, "score": t.value}
        row.update({c: t.user_attrs.get(c) for c in [*RECORD_FIELDS, "seconds", "reason"]})
        rows.append(row)
    return pd.DataFrame(rows, columns=["trial", "state", *names, "score", *RECORD_FIELDS, "seconds", "reason"])


def _save(fig, path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return Path(path)


def plot_search(table: pd.DataFrame, space: dict, path, title: str = "") -> Path:
    """Score against trial with the running best, then one panel per parameter (score against its value
    over the searched range, colour = trial number, log axis for "log" ranges, the best as a star);
    failed trials (scored 0) as red crosses, trials the efficiency rule rejected as grey triangles."""
    done = table[table["state"] == "COMPLETE"].sort_values("trial")
    failed = done["reason"].notna()
    rejected = done["rejected"].eq(True) & ~failed
    n = 1 + len(space)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.3 * rows), squeeze=False, layout="constrained")
    axes = axes.ravel()
    ax = axes[0]
    ok = ~failed & ~rejected
    ax.scatter(done["trial"][ok], done["score"][ok], s=18, color="tab:blue", label="trial")
    ax.scatter(
        done["trial"][rejected],
        done["score"][rejected],
        s=22,
        marker="v",
        color="0.45",
        label="rejected (efficiency rule)",
    )
    ax.scatter(done["trial"][failed], done["score"][failed], s=22, marker="x", color="crimson", label="failed (0)")
    best = done.loc[done["score"].idxmax()] if len(done) else None
    if best is not None:
        ax.step(
            done["trial"],
            np.maximum.accumulate(done["score"].to_numpy(float)),
            where="post",
            color="tab:orange",
            label="best so far",
        )
        title = "\n".join(
            filter(None, [title, f"best {best['score']:.4f} (trial {int(best['trial'])}), {len(done)} trials"])
        )
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    sc = None
    for ax, (name, spec) in zip(axes[1:], space.items()):
        x = done[name]
        if spec[0] == "choice":
            labels = [str(v) for v in spec[1]]
            x = x.map(lambda v: labels.index(str(v)) if str(v) in labels else np.nan)
            ax.set_xticks(range(len(labels)), labels, fontsize=8)
            ax.set_xlim(-0.5, len(labels) - 0.5)
        elif spec[0] == "log":
            ax.set_xscale("log")
            ax.set_xlim(spec[1] / 1.15, spec[2] * 1.15)
            ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        else:
            pad = 0.04 * (spec[2] - spec[1]) if spec[0] == "float" else 0.4
            ax.set_xlim(spec[1] - pad, spec[2] + pad)
            if spec[0] == "int":
                ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        sc = ax.scatter(
            x[~failed],
            done["score"][~failed],
            c=done["trial"][~failed],
            cmap="viridis",
            s=18,
            vmin=0,
            vmax=max(int(table["trial"].max()) if len(table) else 1, 1),
        )
        ax.scatter(x[failed], done["score"][failed], marker="x", color="crimson", s=22)
        if best is not None:
            ax.scatter([x.loc[best.name]], [best["score"]], marker="*", s=130, color="gold", edgecolor="k", zorder=3)
        ax.set_xlabel(f"{name} ({spec[0]})")
    for i, ax in enumerate(axes[:n]):
        ax.grid(alpha=0.3)
        if i % cols == 0:
            ax.set_ylabel("final score")
    for ax in axes[n:]:
        ax.axis("off")
    if sc is not None:
        bar = fig.colorbar(sc, ax=list(axes[1:n]), label="trial", shrink=0.8)
        bar.ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    return _save(fig, path)


def write_outputs(study, space: dict, folder: Path, title: str = "") -> tuple[Path, Path]:
    """`trials.csv` and `search.png` of the study in `folder`, both written atomically."""
    table = trials_table(study, list(space))
    csv = write_text(folder / "trials.csv", table.to_csv(index=False))
    return csv, plot_search(table, space, folder / "search.png", title)
