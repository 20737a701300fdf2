"""From stored outputs to the competition's numbers: statistics, F, ratios, final score, spread.

Pure functions over arrays; `eval.harness` produces the arrays, `main.py` prints the result.

Beside the score, every summary carries ToW (`eval.privacy.tow`, from accuracies), the U-LiRA attack
accuracy (`eval.ulira`) and KLoM percentiles (`eval.klom`), the last two on the official statistic
whatever the metric. `metric` chooses what F is (``--metric``):

* ``official``: the organizers' F (`eval.metrics`); ``mlrc``: MLRC-Bench's (`eval.mlrc`);
* ``ulira``: ``F = 1 - 2 |acc - 0.5|``, acc the U-LiRA accuracy averaged over forget examples;
* ``klom``: ``F`` = the mean over forget examples of ``1 - min(sqrt(KL/2), sqrt(1 - exp(-KL)))``, a
  lower bound (Pinsker, Bretagnolle-Huber) on one minus the total variation between the runs' and the
  retrained models' distributions, the same scale as the ``ulira`` F.

The rest of the score is the same for every metric and computed in one place each: ``F x RA ratio x TA
ratio`` by `eval.metrics.final_score` (the summary and every bootstrap resample call it) and the efficiency
verdict by `efficiency`, applied to the score and its interval by `apply_verdict`.
With ``ulira`` and ``klom`` the epsilon columns stay the official metric's, as a diagnostic.
"""

import numpy as np

from eval import klom, metrics, mlrc, privacy, ulira

METRICS = ("official", "mlrc", "ulira", "klom")
KLOM_PERCENTILES = (50, 95, 99)  # reported as klom_p50, klom_p95, klom_p99
EFFICIENCY_LIMIT = 0.2  # the competition rejects a method slower than ~20% of one retraining


def statistic(forget_logits: np.ndarray, forget_y: np.ndarray, metric: str = "official") -> np.ndarray:
    """Per-model per-example statistic, (n_models, n_forget), from logits (n_models, n_forget, C).

    The logit-scaled confidence for official, ulira and klom; MLRC-Bench's statistic for mlrc."""
    if metric in ("official", "ulira", "klom"):
        return metrics.logit_scaled_confidence(forget_logits, forget_y)
    if metric == "mlrc":
        return mlrc.mlrc_statistic(forget_logits)
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")


def epsilons_and_points(u: np.ndarray, r: np.ndarray, metric: str = "official") -> tuple[np.ndarray, np.ndarray]:
    """Per-example epsilons and points (n_forget,) for statistics u (runs, n) and r (retrained, n).

    The points are what `f_of_points` summarizes: the metric's points for official and mlrc,
    the per-example U-LiRA accuracy for ulira, `klom.tv_bound_complement` of KLoM for klom (whose
    epsilons are the official metric's).
    """
    if metric == "mlrc":
        eps = mlrc.mlrc_per_example_epsilons(u, r)
        return eps, mlrc.mlrc_epsilon_points(eps)
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    eps = metrics.per_example_epsilons(u, r)
    if metric == "ulira":
        return eps, ulira.ulira_accuracies(u, r)
    if metric == "klom":
        return eps, klom.tv_bound_complement(klom.klom(u, r))
    return eps, metrics.epsilon_points(eps, min(len(u), len(r)))


def f_of_points(points: np.ndarray, metric: str = "official") -> float:
    """F from the per-example points of `epsilons_and_points`: their mean, or for ulira
    ``1 - 2 |mean accuracy - 0.5|`` (the mean first: one example's accuracy over a few models is noisy)."""
    if metric == "ulira":
        return ulira.ulira_forgetting_score(points)
    return float(np.mean(points))


def distribution_measures(u: np.ndarray, r: np.ndarray) -> tuple[dict, dict]:
    """U-LiRA accuracy and KLoM percentiles of the official statistic u (runs, n), r (retrained, n).

    Returns the summary numbers (``ulira_acc``: mean over examples, NaN with fewer than 3 models in
    a group; ``klom_mean``, ``klom_p50``, ...) and the per-example arrays (``ulira_acc``, ``klom``).
    """
    if min(len(u), len(r)) >= 3:
        acc = ulira.ulira_accuracies(u, r)  # (n_forget,)
    else:  # no fit leaves a target out
        acc = np.full(u.shape[1], np.nan)
    kl = klom.klom(u, r)  # (n_forget,)
    out = {"ulira_acc": float(np.mean(acc)), "klom_mean": float(np.mean(kl))}
    out.update({f"klom_{k}": v for k, v in klom.klom_percentiles(kl, KLOM_PERCENTILES).items()})
    return out, {"ulira_acc": acc, "klom": kl}


def efficiency(run_times, reference_times=None, manifest_retrain_time=None, valid_entry: bool = True) -> dict:
    """The efficiency rule: a run slower than `EFFICIENCY_LIMIT` of one retraining is rejected.

    `run_times` (runs,) are the runs' wall times; `reference_times` (runs,) the retraining time
    estimated beside each run (a slice of the preset's retraining timed in the same process just
    before and after it), which the verdict uses: time_ratio = sum(run times) / sum(references).
    `manifest_retrain_time` (the bank's median recorded training time) gives a second figure,
    `manifest_time_ratio`, and the verdict only when no reference was timed. Reference rows
    (`valid_entry` False) are never rejected.
    """
    times = np.asarray(run_times if run_times is not None else [], dtype=float)
    refs = np.asarray(reference_times if reference_times is not None else [], dtype=float)
    out = {
        "runtime_mean_s": float(times.mean()) if times.size else None,
        "runtime_std_s": float(times.std()) if times.size else None,
        "retrain_time_s": float(refs.mean()) if refs.size else None,
        "manifest_retrain_time_s": manifest_retrain_time,
    }
    out["time_ratio"] = float(times.sum() / refs.sum()) if times.size and refs.size == times.size else None
    out["manifest_time_ratio"] = (
        float(times.mean() / manifest_retrain_time) if times.size and manifest_retrain_time else None
    )
    out["time_basis"] = (
        "timed beside the runs"
        if out["time_ratio"] is not None
        else "bank manifest"
        if out["manifest_time_ratio"] is not None
        else None
    )
    ratio = out["time_ratio"] if out["time_ratio"] is not None else out["manifest_time_ratio"]
    out["rejected"] = bool(valid_entry and ratio is not None and ratio > EFFICIENCY_LIMIT)
    return out


def summarize(
    unlearned: dict,
    retrained: dict,
    original: dict,
    forget_y: np.ndarray,
    *,
    metric: str = "official",
    run_times=None,
    reference_times=None,
    manifest_retrain_time=None,
    valid_entry: bool = True,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict:
    """All reported numbers for one method.

    `unlearned` and `retrained` map output names to arrays with a leading model axis
    (`forget_logits` (m, n_forget, C) and `acc_*` (m,)); `original` holds one model's outputs.
    Timing arguments: see `efficiency`. Besides the score: `tow` (the mean over runs of each run's
    `privacy.tow` against the retrained models' mean accuracies) and `distribution_measures`
    (`ulira_acc`, `klom_mean`, `klom_p50`, `klom_p95`, `klom_p99`; their per-example arrays are
    returned with the statistics).
    """
    u = statistic(unlearned["forget_logits"], forget_y, metric)  # (runs, n_forget)
    r = statistic(retrained["forget_logits"], forget_y, metric)  # (retrained, n_forget)
    eps, points = epsilons_and_points(u, r, metric)
    f = f_of_points(points, metric)
    if metric == "mlrc":  # U-LiRA and KLoM read the official statistic
        conf_u = statistic(unlearned["forget_logits"], forget_y)
        conf_r = statistic(retrained["forget_logits"], forget_y)
    else:
        conf_u, conf_r = u, r
    measures, per_example = distribution_measures(conf_u, conf_r)
    acc = {}
    for who, outs in (("unlearned", unlearned), ("retrained", retrained), ("original", original)):
        for split in ("retain", "forget", "test", "val"):
            acc[f"{split}_{who}"] = float(np.mean(outs[f"acc_{split}"]))
    ra_ratio = acc["retain_unlearned"] / acc["retain_retrained"]
    ta_ratio = acc["test_unlearned"] / acc["test_retrained"]
    score = metrics.final_score(
        f, acc["retain_unlearned"], acc["retain_retrained"], acc["test_unlearned"], acc["test_retrained"]
    )
    tow_runs = privacy.tow(
        unlearned["acc_forget"],
        unlearned["acc_retain"],
        unlearned["acc_test"],
        acc["forget_retrained"],
        acc["retain_retrained"],
        acc["test_retrained"],
    )  # (runs,)
    out = {
        "metric": metric,
        "F": f,
        "score": score,
        "ra_ratio": ra_ratio,
        "ta_ratio": ta_ratio,
        "forget_gap": acc["forget_unlearned"] - acc["forget_retrained"],
        "accuracy": acc,
        "n_runs": int(len(u)),
        "n_retrained": int(len(r)),
        "n_forget": int(u.shape[1]),
        "epsilon_mean": float(eps.mean()),
        "epsilon_median": float(np.median(eps)),
        "tow": float(np.mean(tow_runs)),
        **measures,
    }
    out.update(efficiency(run_times, reference_times, manifest_retrain_time, valid_entry))
    if bootstrap:
        out.update(bootstrap_score(unlearned, u, r, retrained, metric, bootstrap, seed, score=score, points=points))
    out.update(apply_verdict(score, out.get("score_ci95"), out["rejected"]))
    return out, {"unlearned_stat": u, "retrained_stat": r, "epsilons": eps, "points": points, **per_example}


def apply_verdict(score: float, ci95, rejected: bool) -> dict:
    """The competition's final score and its interval: the score, or 0 when the efficiency rule rejects it."""
    lo, hi = ci95 if ci95 is not None else (float("nan"), float("nan"))
    return {"final_score": 0.0 if rejected else score, "final_ci95": [0.0, 0.0] if rejected else [lo, hi]}


def bootstrap_score(
    unlearned: dict,
    u: np.ndarray,
    r: np.ndarray,
    retrained: dict,
    metric: str,
    n_boot: int,
    seed: int = 0,
    *,
    score: float,
    points: np.ndarray,
) -> dict:
    """Spread of the score: resample unlearning runs and forget examples with replacement.

    Returns the bootstrap standard deviation and a 95% interval: the 2.5/97.5 percentiles of the
    resampled scores, shifted by the bootstrap's estimate of its own bias. The shift is needed
    because a resample of the runs repeats some of them, and repeated runs make the unlearned
    group easier to tell apart from the retrained one: resampled scores sit below the score
    (measured on the cpu preset: every one of 20 resamples below it, by 10-20%), so plain
    percentiles would give an interval that misses the point estimate. For the other metrics
    only forget examples are resampled, their per-example points computed once from all runs:
    `mlrc`'s logistic-regression attacks take ~70 ms per example, too slow to recompute for every
    resample of the runs, and a resample that repeats a run would leave a copy of each U-LiRA
    target in the data its attack is fitted on (`ulira`) or shrink the runs' fitted spread (`klom`).

    `score` and `points` are the score (before the efficiency rule) and the per-example points from
    all runs and examples, as `summarize` computed them: the interval's centre, and for the metrics
    other than `official` the points to resample (not recomputed).
    """
    rng = np.random.default_rng(seed)
    ra_r, ta_r = np.mean(retrained["acc_retain"]), np.mean(retrained["acc_test"])
    scores = np.empty(n_boot)
    resample_runs = metric == "official"
    for b in range(n_boot):
        runs = rng.integers(0, len(u), len(u)) if resample_runs else np.arange(len(u))
        pts = epsilons_and_points(u[runs], r, metric)[1] if resample_runs else points
        examples = rng.integers(0, len(pts), len(pts))
        f = f_of_points(pts[examples], metric)
        ra_u, ta_u = np.mean(unlearned["acc_retain"][runs]), np.mean(unlearned["acc_test"][runs])
        scores[b] = metrics.final_score(f, ra_u, ra_r, ta_u, ta_r)
    bias = scores.mean() - score
    lo, hi = np.clip(np.percentile(scores, [2.5, 97.5]) - bias, 0.0, None)
    return {
        "score_std": float(scores.std(ddof=1)) if n_boot > 1 else 0.0,
        "score_ci95": [float(lo), float(hi)],
        "score_bootstrap_bias": float(bias),
        "n_bootstrap": int(n_boot),
        "bootstrap_resamples": "runs and forget examples" if resample_runs else "forget examples",
    }
