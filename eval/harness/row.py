"""A method's leaderboard row: from its runs and the bank's outputs to every column of the CSV.

The competition's numbers (`eval.scoring.summarize`, with a bootstrap CI, plus ToW, the U-LiRA
accuracy and KLoM percentiles), the privacy columns (`eval.privacy`: loss MIA, ToW-MIA, added by
`summarize_runs`, so that `main.py -m` reports them too) and the two efficiency figures: the ratio to
a retraining timed beside the runs (the verdict) and the ratio to the bank's recorded training time.
A cached row is keyed by the code of this module and all it imports (`fingerprint.py`).
"""

import numpy as np

from eval import privacy
from eval.scoring import EFFICIENCY_LIMIT, summarize

#: leaderboard.csv's columns, in order. Accuracies are fractions; times in seconds.
COLUMNS = [
    "method",
    "status",
    "reason",
    "reference",
    "final_score",
    "final_ci_lo",
    "final_ci_hi",
    "normalized_score",  # final: 0 when rejected
    "score",
    "score_ci_lo",
    "score_ci_hi",
    "score_std",  # score: before the efficiency rule
    "F",
    "ra_ratio",
    "ta_ratio",
    "acc_forget",
    "forget_gap",
    "acc_retain",
    "acc_test",  # gap: unlearned - retrained
    "tow",
    "tow_mia",
    "mia",
    "mia_gap",  # means over runs; gap vs retrained
    "ulira_acc",
    "klom_p50",
    "klom_p95",
    "klom_p99",  # per-example, over forget examples
    "runtime_s",
    "runtime_std_s",
    "time_ratio",
    "efficiency",  # ratio: to a retraining timed beside
    "retrain_time_s",
    "manifest_retrain_time_s",
    "manifest_time_ratio",  # second figure: the bank's record
    "epsilon_mean",
    "epsilon_median",
    "acc_forget_retrained",
    "acc_retain_retrained",
    "acc_test_retrained",
    "mia_retrained",
    "mia_original",
    "n_runs",
    "n_retrained",
    "n_forget",
    "metric",
    "bootstrap",
    "seed",
    "params",
    "run_key",
    "cached",
]


def efficiency_label(valid_entry: bool, summary: dict) -> str:
    """ok | rejected | exempt (reference rows) | unknown (no time to compare with)."""
    if not valid_entry:
        return "exempt"
    if summary["time_ratio"] is None and summary["manifest_time_ratio"] is None:
        return "unknown"
    return "rejected" if summary["rejected"] else "ok"


class References:
    """The bank's outputs and the retrained/original MIA, computed on first use only."""

    def __init__(self, bank, n_retrained: int, forget_y, test_y):
        self.forget_y, self.test_y = np.asarray(forget_y), np.asarray(test_y)
        self.retrained = bank.retrained_outputs(n_retrained)
        self.original = bank.outputs("original")
        self.manifest_retrain_time = bank.manifest_retrain_time(n_retrained)
        self._mia = None

    def losses(self, outs: dict) -> tuple[np.ndarray, np.ndarray]:
        """Forget and test losses, (..., n_forget) and (..., n_test)."""
        return (
            privacy.cross_entropy_losses(outs["forget_logits"], self.forget_y),
            privacy.cross_entropy_losses(outs["test_logits"], self.test_y),
        )

    def mia(self) -> tuple[float, float]:
        """Loss MIA of the retrained models (mean over models) and of the original model."""
        if self._mia is None:
            self._mia = (
                float(np.mean(mia_or_nan(*self.losses(self.retrained)))),  # over (n_retrained,)
                float(mia_or_nan(*self.losses(self.original))),
            )
        return self._mia


def mia_or_nan(forget_losses, test_losses):
    """`privacy.loss_mia_accuracy`, or NaN where the attack cannot run (too few forget examples)."""
    try:
        return privacy.loss_mia_accuracy(forget_losses, test_losses)
    except ValueError:
        return np.full(np.shape(forget_losses)[:-1], np.nan)


def _nan(x):
    return np.nan if x is None else x


def summarize_runs(
    runs: dict, refs: References, *, valid_entry: bool, metric: str = "official", bootstrap: int = 0, seed: int = 0
):
    """`eval.scoring.summarize` of runs stacked as `runs.evaluate_runs` gives them (with `time_s` and
    `reference_retrain_s` per run) against the bank's references, plus the loss MIA (`mia`, `mia_gap`,
    `mia_retrained`, `mia_original`) and ToW-MIA, means over runs; returns (summary, arrays)."""
    summary, arrays = summarize(
        runs,
        refs.retrained,
        refs.original,
        refs.forget_y,
        metric=metric,
        run_times=runs["time_s"],
        reference_times=runs.get("reference_retrain_s"),
        manifest_retrain_time=refs.manifest_retrain_time,
        valid_entry=valid_entry,
        bootstrap=bootstrap,
        seed=seed,
    )
    acc = summary["accuracy"]
    mia_r, mia_o = refs.mia()
    mia_runs = mia_or_nan(*refs.losses(runs))  # (runs,)
    tow_mia_runs = privacy.tow_mia(
        mia_runs, runs["acc_retain"], runs["acc_test"], mia_r, acc["retain_retrained"], acc["test_retrained"]
    )  # (runs,)
    summary.update(
        tow_mia=float(np.mean(tow_mia_runs)),
        mia=float(np.mean(mia_runs)),
        mia_gap=float(np.mean(mia_runs)) - mia_r,
        mia_retrained=mia_r,
        mia_original=mia_o,
    )
    return summary, arrays


def score_method(valid_entry: bool, runs: dict, refs: References, *, metric: str, bootstrap: int, seed: int):
    """The CSV row (without status bookkeeping) and the arrays the plots need, from a method's runs."""
    summary, arrays = summarize_runs(runs, refs, valid_entry=valid_entry, metric=metric, bootstrap=bootstrap, seed=seed)
    acc = summary["accuracy"]
    fl, tl = refs.losses(runs)  # (runs, n_forget), (runs, n_test)
    lo, hi = summary.get("score_ci95", (np.nan, np.nan))
    row = {
        "final_score": summary["final_score"],
        "final_ci_lo": summary["final_ci95"][0],
        "final_ci_hi": summary["final_ci95"][1],
        "score": summary["score"],
        "score_ci_lo": lo,
        "score_ci_hi": hi,
        "score_std": summary.get("score_std", np.nan),
        "F": summary["F"],
        "ra_ratio": summary["ra_ratio"],
        "ta_ratio": summary["ta_ratio"],
        "acc_forget": acc["forget_unlearned"],
        "forget_gap": summary["forget_gap"],
        "acc_retain": acc["retain_unlearned"],
        "acc_test": acc["test_unlearned"],
        **{
            k: summary[k] for k in ("tow", "tow_mia", "mia", "mia_gap", "ulira_acc", "klom_p50", "klom_p95", "klom_p99")
        },
        "runtime_s": summary["runtime_mean_s"],
        "runtime_std_s": summary["runtime_std_s"],
        "time_ratio": _nan(summary["time_ratio"]),
        "efficiency": efficiency_label(valid_entry, summary),
        "retrain_time_s": _nan(summary["retrain_time_s"]),
        "manifest_retrain_time_s": _nan(summary["manifest_retrain_time_s"]),
        "manifest_time_ratio": _nan(summary["manifest_time_ratio"]),
        "epsilon_mean": summary["epsilon_mean"],
        "epsilon_median": summary["epsilon_median"],
        "acc_forget_retrained": acc["forget_retrained"],
        "acc_retain_retrained": acc["retain_retrained"],
        "acc_test_retrained": acc["test_retrained"],
        "mia_retrained": summary["mia_retrained"],
        "mia_original": summary["mia_original"],
        "n_runs": summary["n_runs"],
        "n_retrained": summary["n_retrained"],
        "n_forget": summary["n_forget"],
    }
    plot_arrays = {
        "epsilons": arrays["epsilons"],
        "forget_loss": fl.astype(np.float32),
        "test_loss": tl.astype(np.float32),
    }
    return row, plot_arrays, summary


__all__ = [
    "COLUMNS",
    "EFFICIENCY_LIMIT",
    "References",
    "efficiency_label",
    "mia_or_nan",
    "score_method",
    "summarize_runs",
]
