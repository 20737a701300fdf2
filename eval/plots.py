"""The leaderboard's figures, drawn with matplotlib's Agg backend and written atomically as PNG.

Each function takes plain data (the leaderboard table, or per-method arrays), draws one figure,
writes it to `path` through `eval.io` and returns the path. Reference rows (`none`, `retrain`, any
method that is not a valid entry) are drawn in grey.
"""

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window; set here, before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from eval.io import write_bytes  # noqa: E402

REFERENCE_COLOR = "0.55"
MIN_TIME_RATIO = 1e-5  # time ratios below this (e.g. `none`) are drawn at it on the log axis


def _save(fig, path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return Path(path)


def _colors(n: int) -> list:
    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


def score_vs_runtime(table, path, *, limit=0.2) -> Path:
    """Final score (with its 95% CI) against runtime as a fraction of one retraining, log x; the limit as a line.

    `table` needs columns method, reference, final_score, final_ci_lo, final_ci_hi, time_ratio (run
    time over a retraining timed beside it).
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = iter(_colors(len(table)))
    for r in table.itertuples():
        x = max(float(r.time_ratio), MIN_TIME_RATIO) if np.isfinite(r.time_ratio) else MIN_TIME_RATIO
        c = REFERENCE_COLOR if r.reference else next(colors)
        lo, hi = r.final_ci_lo, r.final_ci_hi
        yerr = None if np.isnan(lo) else [[max(r.final_score - lo, 0)], [max(hi - r.final_score, 0)]]
        ax.errorbar([x], [r.final_score], yerr=yerr, fmt="o", color=c, capsize=3, mfc="white" if r.reference else c)
        ax.annotate(r.method, (x, r.final_score), xytext=(5, 4), textcoords="offset points", fontsize=8)
    ax.axvline(limit, color="crimson", ls="--", lw=1)
    ax.text(limit, ax.get_ylim()[1], f" {100 * limit:.0f}% of one retraining", color="crimson", fontsize=8, va="top")
    ax.set_xscale("log")
    ax.set_xlabel(f"runtime per run / one retraining timed beside it (log; below {MIN_TIME_RATIO:g} drawn at it)")
    ax.set_ylabel("final score (95% bootstrap CI)")
    ax.set_title("Final score vs runtime")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def quality_vs_utility(table, path) -> Path:
    """Forgetting quality F against the retain and the test accuracy ratio, one panel each.

    `table` needs columns method, reference, F, ra_ratio, ta_ratio.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, col, label in (
        (axes[0], "ra_ratio", "retain accuracy ratio (RA_u / RA_r)"),
        (axes[1], "ta_ratio", "test accuracy ratio (TA_u / TA_r)"),
    ):
        colors = iter(_colors(len(table)))
        for r in table.itertuples():
            c = REFERENCE_COLOR if r.reference else next(colors)
            ax.plot([getattr(r, col)], [r.F], "o", color=c, mfc="white" if r.reference else c)
            ax.annotate(r.method, (getattr(r, col), r.F), xytext=(5, 4), textcoords="offset points", fontsize=8)
        ax.axvline(1.0, color="0.3", lw=0.8, ls=":")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("forgetting quality F")
    fig.suptitle("Forgetting quality vs utility (1.0 = as accurate as the retrained models)")
    return _save(fig, path)


def epsilon_hist(epsilons: dict, path, *, last_scoring_epsilon=None, cap=50.0) -> Path:
    """Per-example epsilon histograms, one step curve per method, on shared bins.

    `epsilons` maps a label to a (n_forget,) array. Epsilons at the cap (peaky distributions) are
    counted in the legend rather than drawn, so the scoring range stays readable.
    `last_scoring_epsilon`: epsilons at or above it earn no points (a dashed line).
    """
    fig, ax = plt.subplots(figsize=(7, 4.2))
    arrs = {k: np.asarray(v, float) for k, v in epsilons.items()}
    below = {k: v[np.isfinite(v) & (v < cap)] for k, v in arrs.items()}
    top = max([float(v.max()) for v in below.values() if v.size] + [2.0 * (last_scoring_epsilon or 1.0)])
    bins = np.linspace(0, top, 41)
    for (label, v), c in zip(below.items(), _colors(len(below))):
        n_cap = len(arrs[label]) - len(v)
        ax.hist(
            v,
            bins=bins,
            histtype="step",
            lw=1.6,
            color=c,
            label=f"{label}: median {np.median(arrs[label]):.2f}, {n_cap}/{len(arrs[label])} at the cap {cap:g}",
        )
    if last_scoring_epsilon is not None:
        ax.axvline(last_scoring_epsilon, color="crimson", ls="--", lw=1)
        ax.text(
            last_scoring_epsilon, ax.get_ylim()[1], " no points from here on", color="crimson", fontsize=8, va="top"
        )
    ax.set_xlabel("per-example epsilon (lower is better)")
    ax.set_ylabel("forget examples")
    ax.set_title("Per-example epsilons of the top methods")
    if arrs:
        ax.legend(fontsize=8)
    return _save(fig, path)


def loss_hist(losses: dict, path) -> Path:
    """Forget and test loss histograms (log-spaced bins), pooled over each group's models.

    `losses` maps a label (e.g. original, retrained, the chosen method) to {"forget": array,
    "test": array} of per-example cross-entropy losses, any shape. The x range covers the pooled
    0.5-99.5 percentiles and stops at a loss of 100 (the true class at probability e^-100: a
    diverged model; 1e28 has been seen), so such runs do not squeeze everything else into a few
    bins; values outside the range are counted in the edge bins.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharex=True, sharey=True)
    allv = np.concatenate([np.ravel(v[s]) for v in losses.values() for s in ("forget", "test")])
    allv = allv[np.isfinite(allv)]
    lo, hi = np.percentile(allv, [0.5, 99.5]) if allv.size else (1e-3, 1.0)
    lo = max(float(lo), 1e-4)
    hi = max(min(float(hi), 100.0), lo * 10)
    bins = np.geomspace(lo, hi, 41)
    for ax, split in zip(axes, ("forget", "test")):
        for (label, v), c in zip(losses.items(), _colors(len(losses))):
            x = np.ravel(v[split])
            med = np.median(x)
            x = np.clip(x[np.isfinite(x)], lo, hi)
            ax.hist(
                x,
                bins=bins,
                histtype="step",
                lw=1.6,
                color=c,
                weights=np.full(x.size, 1 / max(x.size, 1)),
                label=f"{label} (median {med:.3g})",
            )
        ax.set_xscale("log")
        ax.set_xlabel(f"cross-entropy loss on the {split} set (log scale)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of (model, example) pairs")
    fig.suptitle("Loss distributions: a good method's forget losses look like the retrained models'")
    return _save(fig, path)


def forget_set_rankings(scores, tau, path, *, references=(), title="Rankings across forget sets") -> Path:
    """Each method's score per forget set (lines) beside the Kendall tau matrix between the sets (heatmap).

    `scores`: DataFrame (methods x forget sets), NaN where a method is missing (a gap in its line);
    `tau`: DataFrame (forget sets x forget sets) in [-1, 1], NaN drawn blank; `references`: methods
    drawn grey and dashed (they are left out of tau).
    """
    labels = [str(c) for c in scores.columns]
    fig, (ax, hx) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [1.4, 1]})
    x = np.arange(len(labels))
    colors = iter(_colors(len(scores)))
    for method, row in scores.iterrows():
        ref = method in references
        ax.plot(
            x,
            row.to_numpy(float),
            "o" + (":" if ref else "-"),
            color=REFERENCE_COLOR if ref else next(colors),
            mfc="white" if ref else None,
            label=f"{method} (ref)" if ref else method,
        )
    ax.set_xticks(x, labels)
    ax.set_xlabel("forget set")
    ax.set_ylabel("final score")
    ax.set_title("Final score per forget set")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=4)
    m = np.ma.masked_invalid(tau.to_numpy(float))  # (n_sets, n_sets)
    im = hx.imshow(m, vmin=-1, vmax=1, cmap="RdBu")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            hx.text(
                j,
                i,
                "–" if m.mask[i, j] else f"{m[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=9,
                color="white" if not m.mask[i, j] and abs(m[i, j]) > 0.6 else "black",
            )
    hx.set_xticks(np.arange(len(labels)), labels)
    hx.set_yticks(np.arange(len(labels)), labels)
    hx.set_title("Kendall's tau-b (references left out)")
    fig.colorbar(im, ax=hx, fraction=0.046, pad=0.04)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
