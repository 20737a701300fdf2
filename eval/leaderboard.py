"""The local leaderboard: every method on the same preset and bank, with CIs, reference rows and plots.

    python main.py --leaderboard                       # all registered methods
    python main.py --leaderboard my_method scrub --preset tiny

For each method, `eval.runner.evaluate_runs` runs (or reloads) its unlearning runs, `eval.scoring`
computes the competition's numbers with a bootstrap CI, and `eval.privacy` adds the loss MIA, ToW
and ToW-MIA. The summary row of a method is cached in ``results/<preset>/rows/`` under the
runner's key (a hash of the method's code, resolved hyperparameters, preset, bank and seed) plus
the metric, the bootstrap count and the numbers of runs and retrained models; a row is reused
when that key and a hash of the scoring code still match, so only new or changed methods run.
Failed methods are not cached: they are retried on the next call (their finished runs are).

Writes into ``results/<preset>/``: ``leaderboard.csv`` (the source of truth, one row per method,
columns `COLUMNS`), ``leaderboard.md`` (explanation + table sorted by final score), and the figures
``score_vs_runtime.png``, ``quality_vs_utility.png``, ``epsilon_hist.png`` and ``loss_hist.png``.
A method that raises or gives NaN is listed with status ``failed`` and its reason; the others
still finish. ``none`` and ``retrain`` are always included: they are the floor and the ceiling
of the score at the bank's size, and ``normalized_score = (score - none) / (retrain - none)``.
"""
import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

import methods
from eval import plots, privacy
from eval.io import _atomic_bytes, read_json, write_json, write_npz
from eval.runner import MethodFailed, evaluate_runs, run_key
from eval.scoring import EFFICIENCY_LIMIT, summarize

REFERENCES = ("none", "retrain")
TOP_EPSILON_METHODS = 3   # valid entries shown in epsilon_hist.png (beside `retrain`)
PLOTS = ("score_vs_runtime.png", "quality_vs_utility.png", "epsilon_hist.png", "loss_hist.png")
_SCORING_CODE = ("scoring.py", "metrics.py", "mlrc.py", "privacy.py", "leaderboard.py")

#: leaderboard.csv's columns, in order. Accuracies are fractions; times in seconds.
COLUMNS = [
    "method", "status", "reason", "reference",
    "final_score", "final_ci_lo", "final_ci_hi", "normalized_score",   # final: 0 when rejected
    "score", "score_ci_lo", "score_ci_hi", "score_std",               # score: before the efficiency rule
    "F", "ra_ratio", "ta_ratio",
    "acc_forget", "forget_gap", "acc_retain", "acc_test",              # gap: unlearned - retrained
    "tow", "tow_mia", "mia", "mia_gap",                                # means over runs; gap vs retrained
    "runtime_s", "runtime_std_s", "time_ratio", "efficiency",          # ratio: to one retraining
    "epsilon_mean", "epsilon_median",
    "acc_forget_retrained", "acc_retain_retrained", "acc_test_retrained", "mia_retrained", "mia_original",
    "retrain_time_s", "n_runs", "n_retrained", "n_forget", "metric", "bootstrap", "seed",
    "params", "run_key", "cached",
]


def _identity(it, **kw):
    return it


def _write_text(path, text: str) -> Path:
    _atomic_bytes(path, text.encode())
    return Path(path)


def scoring_code_hash() -> str:
    """Hash of the code that turns runs into a row; a change invalidates the cached rows."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in _SCORING_CODE:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:12]


def normalized_scores(scores, none_score: float, retrain_score: float) -> np.ndarray:
    """``(score - none) / (retrain - none)``; NaN when the denominator is 0 or not finite."""
    scores = np.asarray(scores, dtype=float)
    den = float(retrain_score) - float(none_score)
    if not math.isfinite(den) or den == 0:
        return np.full(scores.shape, np.nan)
    return (scores - float(none_score)) / den


def _efficiency(valid_entry: bool, ratio) -> str:
    if not valid_entry:
        return "exempt"
    if ratio is None:
        return "unknown"
    return "rejected" if ratio > EFFICIENCY_LIMIT else "ok"


def _failed_row(key: str, reason: str, **extra) -> dict:
    row = {c: np.nan for c in COLUMNS} | extra
    row.update(method=key, status="failed", reason=reason, cached=False)
    return row


class _References:
    """The bank's outputs and the retrained/original MIA, computed on first use only."""

    def __init__(self, bank, n_retrained: int, forget_y, test_y):
        self.bank, self.n = bank, n_retrained
        self.forget_y, self.test_y = forget_y, test_y
        self.retrained = bank.retrained_outputs(n_retrained)
        self.original = bank.outputs("original")
        self._mia = None

    def losses(self, outs: dict) -> tuple[np.ndarray, np.ndarray]:
        """Forget and test losses, (..., n_forget) and (..., n_test)."""
        return (privacy.cross_entropy_losses(outs["forget_logits"], self.forget_y),
                privacy.cross_entropy_losses(outs["test_logits"], self.test_y))

    def mia(self) -> tuple[float, float]:
        """Loss MIA of the retrained models (mean over models) and of the original model."""
        if self._mia is None:
            self._mia = (float(np.mean(_mia_or_nan(*self.losses(self.retrained)))),   # over (n_retrained,)
                         float(_mia_or_nan(*self.losses(self.original))))
        return self._mia


def _mia_or_nan(forget_losses, test_losses):
    """`privacy.loss_mia_accuracy`, or NaN where the attack cannot run (too few forget examples)."""
    try:
        return privacy.loss_mia_accuracy(forget_losses, test_losses)
    except ValueError:
        return np.full(np.shape(forget_losses)[:-1], np.nan)


def _score_method(cls, runs, refs, *, metric, bootstrap, seed, retrain_time):
    """The CSV row (without status bookkeeping) and the arrays the plots need, from a method's runs."""
    summary, arrays = summarize(runs, refs.retrained, refs.original, refs.forget_y, metric=metric,
                                run_times=runs["time_s"], retrain_time=retrain_time,
                                valid_entry=cls.valid_entry, bootstrap=bootstrap, seed=seed)
    acc = summary["accuracy"]
    fl, tl = refs.losses(runs)                                          # (runs, n_forget), (runs, n_test)
    mia_r, mia_o = refs.mia()
    mia_runs = _mia_or_nan(fl, tl)                                      # (runs,)
    tow_runs = privacy.tow(runs["acc_forget"], runs["acc_retain"], runs["acc_test"],
                           acc["forget_retrained"], acc["retain_retrained"], acc["test_retrained"])
    tow_mia_runs = privacy.tow_mia(mia_runs, runs["acc_retain"], runs["acc_test"],
                                   mia_r, acc["retain_retrained"], acc["test_retrained"])
    lo, hi = summary.get("score_ci95", (np.nan, np.nan))
    row = {
        "final_score": summary["final_score"],
        "final_ci_lo": 0.0 if summary["rejected"] else lo, "final_ci_hi": 0.0 if summary["rejected"] else hi,
        "score": summary["score"], "score_ci_lo": lo, "score_ci_hi": hi,
        "score_std": summary.get("score_std", np.nan), "F": summary["F"],
        "ra_ratio": summary["ra_ratio"], "ta_ratio": summary["ta_ratio"],
        "acc_forget": acc["forget_unlearned"], "forget_gap": summary["forget_gap"],
        "acc_retain": acc["retain_unlearned"], "acc_test": acc["test_unlearned"],
        "tow": float(np.mean(tow_runs)), "tow_mia": float(np.mean(tow_mia_runs)),
        "mia": float(np.mean(mia_runs)), "mia_gap": float(np.mean(mia_runs)) - mia_r,
        "runtime_s": summary["runtime_mean_s"], "runtime_std_s": summary["runtime_std_s"],
        "time_ratio": summary["time_ratio"] if summary["time_ratio"] is not None else np.nan,
        "efficiency": _efficiency(cls.valid_entry, summary["time_ratio"]),
        "epsilon_mean": summary["epsilon_mean"], "epsilon_median": summary["epsilon_median"],
        "acc_forget_retrained": acc["forget_retrained"], "acc_retain_retrained": acc["retain_retrained"],
        "acc_test_retrained": acc["test_retrained"], "mia_retrained": mia_r, "mia_original": mia_o,
        "retrain_time_s": retrain_time if retrain_time is not None else np.nan,
        "n_runs": summary["n_runs"], "n_retrained": summary["n_retrained"], "n_forget": summary["n_forget"],
    }
    plot_arrays = {"epsilons": arrays["epsilons"], "forget_loss": fl.astype(np.float32),
                   "test_loss": tl.astype(np.float32)}
    return row, plot_arrays


def _method_row(key, overrides, preset, splits, bank, refs, *, seed, metric, bootstrap, retrain_time,
                rows_dir, code, dict_batches, progress):
    """One method's row (from the cache when valid) and its plot arrays (None when it failed)."""
    try:
        cls = methods.get_method(key)
        overrides = methods.parse_overrides(cls, overrides or {})
        params = dataclasses.asdict(cls(**overrides).params)
        rk = run_key(key, overrides, preset, bank, seed, dict_batches)
    except (ValueError, TypeError) as exc:
        return _failed_row(key, f"bad method or hyperparameters: {exc}"), None
    meta = {"method": key, "reference": not cls.valid_entry, "metric": metric, "bootstrap": bootstrap,
            "seed": seed, "params": json_params(params), "run_key": rk}
    signature = {**meta, "n_runs": preset.n_runs, "n_retrained": preset.n_retrained, "bank": bank.key,
                 "scoring_code": code, "dict_batches": dict_batches}
    stem = rows_dir / f"{key}-{rk}-{metric}-b{bootstrap}-{preset.n_runs}x{preset.n_retrained}"
    cached = read_json(stem.with_suffix(".json"))
    if cached and cached.get("signature") == signature:
        try:
            with np.load(stem.with_suffix(".npz")) as f:
                arrays = {k: f[k] for k in f.files}
            return {**cached["row"], "cached": True}, arrays
        except Exception:  # missing or damaged sidecar: recompute the row
            pass
    try:
        runs = evaluate_runs(key, overrides, preset, splits, bank, seed=seed, dict_batches=dict_batches,
                             progress=progress)
        row, arrays = _score_method(cls, runs, refs, metric=metric, bootstrap=bootstrap, seed=seed,
                                    retrain_time=retrain_time)
    except MethodFailed as exc:
        return _failed_row(key, exc.reason, **meta), None
    except Exception as exc:  # anything else in this method's evaluation: report it, go on with the rest
        return _failed_row(key, f"{type(exc).__name__}: {exc}", **meta), None
    row = {c: np.nan for c in COLUMNS} | meta | row | {"status": "ok", "reason": "", "cached": False}
    write_npz(stem.with_suffix(".npz"), **arrays)
    write_json(stem.with_suffix(".json"), {"signature": signature, "row": row, "written": time.time()})
    return row, arrays


def json_params(params: dict) -> str:
    """Hyperparameters as compact, sorted JSON (the CSV's `params` column)."""
    return json.dumps(params, sort_keys=True, default=str, separators=(",", ":"))


def _table(rows: list[dict]) -> pd.DataFrame:
    """Rows as the CSV's DataFrame: normalized scores filled in, ok rows by final score, failed last."""
    t = pd.DataFrame(rows, columns=COLUMNS)
    ok = t["status"] == "ok"
    ref = {k: t.loc[ok & (t["method"] == k), "final_score"] for k in REFERENCES}
    none_s, retrain_s = (float(v.iloc[0]) if len(v) else np.nan for v in ref.values())
    t["normalized_score"] = np.where(ok, normalized_scores(t["final_score"].astype(float), none_s, retrain_s),
                                     np.nan)
    t["_ok"] = ok
    t = t.sort_values(["_ok", "final_score", "score"], ascending=False, kind="stable").drop(columns="_ok")
    return t.reset_index(drop=True)


# -----------------------------------------------------------------------------------------------
# Markdown

def _f(x, fmt="{:.4f}") -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def _is_true(x) -> bool:
    return isinstance(x, (bool, np.bool_)) and bool(x)


def _md_table(t: pd.DataFrame) -> str:
    out = []
    for r in t.itertuples():
        name = f"*{r.method}* (ref)" if _is_true(r.reference) else f"`{r.method}`"
        if r.status != "ok":
            out.append({"method": name, "final score [95% CI]": "**failed** (see below)"})
            continue
        ci = "" if math.isnan(r.final_ci_lo) else f" [{r.final_ci_lo:.4f}, {r.final_ci_hi:.4f}]"
        if r.efficiency == "rejected":   # show what the rule took away
            sci = "" if math.isnan(r.score_ci_lo) else f" [{r.score_ci_lo:.4f}, {r.score_ci_hi:.4f}]"
            ci = f" (was {r.score:.4f}{sci})"
        eff = {"rejected": "**REJECTED**", "ok": "ok", "exempt": "exempt", "unknown": "?"}[r.efficiency]
        out.append({
            "method": name, "final score [95% CI]": f"{r.final_score:.4f}{ci}",
            "normalized": _f(r.normalized_score, "{:.3f}"), "F": _f(r.F),
            "RA ratio": _f(r.ra_ratio, "{:.3f}"), "TA ratio": _f(r.ta_ratio, "{:.3f}"),
            "forget acc (gap)": f"{r.acc_forget:.3f} ({r.forget_gap:+.3f})",
            "ToW": _f(r.tow, "{:.3f}"), "ToW-MIA": _f(r.tow_mia, "{:.3f}"), "MIA": _f(r.mia, "{:.3f}"),
            "s / run": _f(r.runtime_s, "{:.3g}"), "% retrain": _f(100 * r.time_ratio, "{:.1f}%"),
            "efficiency": eff})
    return pd.DataFrame(out).fillna("").to_markdown(index=False, disable_numparse=True)


def _markdown(t, preset, bank, *, seed, metric, bootstrap, retrain_time, mia_ref, plot_files, loss_label):
    ok = t[t["status"] == "ok"]
    n_models = min(preset.n_runs, preset.n_retrained)
    mia_r, mia_o = mia_ref
    if metric == "official":
        last = math.ceil(math.log(n_models - 1)) if n_models > 2 else 0
        ceiling = (f"With N = min(runs, retrained models) = {n_models}, only per-example epsilons below "
                   f"⌈ln(N − 1)⌉ = {last} earn points, and with few models the interval attacks find chance "
                   f"separations even between identical distributions, so even retraining scores well below 1.")
    else:
        ceiling = "With few models even retraining scores well below 1."
    lines = [
        f"# Local leaderboard: preset `{preset.name}`",
        "",
        f"- **Preset** `{preset.name}`: {preset.description} (architecture `{preset.arch}`).",
        f"- **Bank** `{bank.key}`: 1 original + {preset.n_retrained} retrained models "
        f"(median retraining time {_f(retrain_time, '{:.1f}')} s). Every method ran {preset.n_runs} times "
        f"from the original model (base seed {seed}); {int(ok['n_forget'].max()) if len(ok) else '?'} forget examples.",
        f"- **Metric** `{metric}`; 95% confidence intervals from {bootstrap} bootstrap resamples of the "
        + ("unlearning runs and the forget examples" if metric == "official" else
           "forget examples (the `mlrc` scorer is too slow to resample the runs too)")
        + " (the retrained models held fixed)"
        + ("; percentiles shifted by the bootstrap's bias, since repeated runs in a resample are "
           "easier to tell from retraining and pull resampled scores low." if metric == "official" else ".")
        + (" Bootstrap disabled: no intervals." if not bootstrap else "")
        + (f" With only {preset.n_runs} runs a resample often repeats one run, whose identical copies score 0 "
           "(\"peaky\"), so lower bounds sit near 0." if bootstrap and preset.n_runs <= 4 else ""),
        f"- Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; the numbers are in "
        f"`leaderboard.csv` (the source of truth).",
        "",
        "**Read every score against the reference rows.** `retrain` (training from scratch on the retain "
        "set) is the ceiling at this bank's size, `none` (the original model, unchanged) the floor. "
        f"F's ceiling depends on the number of models. {ceiling} More models (`--runs`, `--retrained`) "
        "raise the ceiling and narrow the intervals. *normalized* = (score − none) / (retrain − none) "
        "puts the ceiling at 1. Reference rows are not valid entries and are exempt from the efficiency rule.",
        "",
        "Columns:",
        "- **final score**: F × RA ratio × TA ratio, or 0 when the efficiency rule rejects the method "
        "(\"was\": the score before the rule); [95% bootstrap CI]. Rows are sorted by it.",
        "- **F**: forgetting quality, the mean points over forget examples of the per-example epsilon "
        "that separates the method's runs from the retrained models (higher is better).",
        "- **RA / TA ratio**: mean retain / test accuracy of the runs over that of the retrained models "
        "(not capped at 1).",
        "- **forget acc (gap)**: the runs' accuracy on the forget set and its difference to the retrained "
        "models' (0 is ideal).",
        "- **ToW**: (1 − |ΔF acc|)(1 − |ΔR acc|)(1 − |Δtest acc|) against the retrained models' mean "
        "accuracies, averaged over runs; 1 is retrain-like. **ToW-MIA**: ToW with the forget-accuracy "
        "factor replaced by 1 − |ΔMIA|.",
        f"- **MIA**: the starting kit's loss membership-inference attack (forget vs test losses, logistic "
        f"regression, 10 cross-validation splits; accuracy, 0.5 = chance), mean over runs. The target is "
        f"the retrained models' value, {_f(mia_r, '{:.3f}')} (original model: {_f(mia_o, '{:.3f}')}).",
        f"- **s / run**, **% retrain**, **efficiency**: mean runtime of one unlearning run, its ratio to "
        f"one retraining, and the competition's verdict: rejected above {100 * EFFICIENCY_LIMIT:.0f}% "
        f"(final score 0); reference rows are exempt.",
        "",
        _md_table(t),
    ]
    failed = t[t["status"] != "ok"]
    if len(failed):
        lines += ["", "Failed methods:", ""] + [f"- `{r.method}`: {r.reason}" for r in failed.itertuples()]
    captions = {"score_vs_runtime.png": "Final score vs runtime per run",
                "quality_vs_utility.png": "Forgetting quality vs utility",
                "epsilon_hist.png": "Per-example epsilons of the top methods",
                "loss_hist.png": f"Forget and test losses: original, retrained, {loss_label}"}
    if plot_files:
        lines += ["", "## Figures", ""]
        lines += [f"![{captions[p.name]}]({p.name})" for p in plot_files]
    return "\n".join(lines) + "\n"


# -----------------------------------------------------------------------------------------------
# Plots

def _plots(t, arrays, refs, out_dir, *, preset, metric, retrain_time, loss_method):
    ok = t[t["status"] == "ok"]
    files = [plots.score_vs_runtime(ok, out_dir / "score_vs_runtime.png", retrain_time_s=retrain_time,
                                    limit=EFFICIENCY_LIMIT),
             plots.quality_vs_utility(ok, out_dir / "quality_vs_utility.png")]
    valid = [m for m, ref in zip(ok["method"], ok["reference"]) if not ref]
    shown = [m for m in ["retrain"] + valid[:TOP_EPSILON_METHODS] if m in arrays]
    last = None
    if metric == "official":
        n = min(preset.n_runs, preset.n_retrained)
        last = math.ceil(math.log(n - 1)) if n > 2 else 0
    files.append(plots.epsilon_hist({m: arrays[m]["epsilons"] for m in shown}, out_dir / "epsilon_hist.png",
                                    last_scoring_epsilon=last))
    fo, to = refs.losses(refs.original)
    fr, tr = refs.losses(refs.retrained)
    losses = {"original": {"forget": fo, "test": to}, "retrained": {"forget": fr, "test": tr}}
    if loss_method in arrays:
        losses[loss_method] = {"forget": arrays[loss_method]["forget_loss"],
                               "test": arrays[loss_method]["test_loss"]}
    files.append(plots.loss_hist(losses, out_dir / "loss_hist.png"))
    return files


# -----------------------------------------------------------------------------------------------

def run_leaderboard(names, preset, splits, bank, *, results_dir="results", seed: int = 0,
                    metric: str = "official", bootstrap: int = 20, progress=_identity,
                    overrides: dict | None = None, loss_method: str | None = None,
                    dict_batches: bool = False) -> dict:
    """Evaluate `names` (plus `none` and `retrain`) on one preset and bank; write the leaderboard.

    Parameters
    ----------
    names : list of str
        Method keys; `none` and `retrain` are added when missing, duplicates dropped.
    preset, splits, bank : the preset (with its run and model counts), its splits and a built bank.
    results_dir : path
        Files go to ``results_dir/<preset>/``; cached rows to its ``rows/`` folder.
    seed, metric, bootstrap : as for ``main.py -m`` (base seed of the runs, metric, bootstrap resamples).
    progress : callable
        Iterable wrapper for progress bars (identity by default; ``main.py`` passes tqdm).
    overrides : dict of {method: {param: value}}, optional
        Hyperparameter overrides per method (``--set`` dicts), type-checked against its Params.
    loss_method : str, optional
        The method drawn in loss_hist.png (added to `names` if missing); default: the best valid entry.
    dict_batches : bool
        Feed Kaggle-style dict batches to the methods.

    Returns
    -------
    dict with ``table`` (the CSV's DataFrame, sorted), ``markdown`` (leaderboard.md's text),
    ``files`` (written paths) and ``dir``.
    """
    overrides = overrides or {}
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be >= 0, got {bootstrap}")
    names = list(dict.fromkeys([*names, *REFERENCES, *([loss_method] if loss_method else [])]))
    out_dir = Path(results_dir) / preset.name
    rows_dir = out_dir / "rows"
    refs = _References(bank, preset.n_retrained, np.asarray(splits.forget_y), np.asarray(splits.test_y))
    retrain_time = bank.retrain_time(preset.n_retrained)
    code = scoring_code_hash()
    rows, arrays = [], {}
    for key in progress(names, desc="leaderboard", unit="method"):
        row, arr = _method_row(key, overrides.get(key), preset, splits, bank, refs, seed=seed, metric=metric,
                               bootstrap=bootstrap, retrain_time=retrain_time, rows_dir=rows_dir, code=code,
                               dict_batches=dict_batches, progress=progress)
        rows.append(row)
        if arr is not None:
            arrays[key] = arr
    table = _table(rows)
    if loss_method is None:
        valid = table[(table["status"] == "ok") & (table["reference"] == False)]  # noqa: E712 (NaN-safe)
        loss_method = valid["method"].iloc[0] if len(valid) else None

    csv_path = out_dir / "leaderboard.csv"
    _write_text(csv_path, table.to_csv(index=False))
    plot_files = _plots(table, arrays, refs, out_dir, preset=preset, metric=metric, retrain_time=retrain_time,
                        loss_method=loss_method)
    ok_rows = table[table["status"] == "ok"]
    mia_ref = ((float(ok_rows["mia_retrained"].iloc[0]), float(ok_rows["mia_original"].iloc[0]))
               if len(ok_rows) else refs.mia())
    md = _markdown(table, preset, bank, seed=seed, metric=metric, bootstrap=bootstrap, retrain_time=retrain_time,
                   mia_ref=mia_ref, plot_files=plot_files,
                   loss_label=f"`{loss_method}`" if loss_method in arrays else "no method")
    md_path = _write_text(out_dir / "leaderboard.md", md)
    return {"table": table, "markdown": md, "files": [csv_path, md_path, *plot_files], "dir": out_dir}
