"""Rankings that hold across forget sets: one leaderboard per random forget set, then a summary.

    python main.py --leaderboard --forget-seeds 1,2,3
    python main.py --leaderboard none my_method --forget-seeds 1,2 --preset tiny --runs 2

A ranking on one forget set can be luck. `main.py` runs exactly what ``--leaderboard --forget-seed S``
does for each seed S (each forget set its own bank, its own ``results/<tag>/`` and its own cached
rows, so a rerun only runs what is missing), then `write_summary` puts the leaderboards side by side
(`eval.rankings`): each method's mean final score and spread over the forget sets, its rank on each,
and Kendall's tau-b between the forget sets' rankings, with `none` and `retrain` left out of tau (they
are the fixed ends of every ranking). A method that failed on a forget set is missing (NaN) there.

Writes into ``results/<summary_tag>/`` (e.g. ``results/cpu-forget-seeds-1-2-3/``): ``summary.csv``
(one row per method, the source of truth), ``kendall_tau.csv`` (the tau matrix), ``summary.md``
(explanation, table, tau matrix) and ``kendall_tau.png`` (`eval.plots.forget_set_rankings`).
"""

import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from data.presets import PRESETS
from eval import plots, rankings
from eval.harness.leaderboard import REFERENCES
from eval.io import write_text

FILES = ("summary.csv", "kendall_tau.csv", "summary.md", "kendall_tau.png")


def summary_tag(preset, seeds) -> str:
    """Folder name of the summary: ``<preset>-forget-seeds-1-2-3``, with the forget amount when not the preset's
    and ``-subsets<M>`` when scored against a subset bank."""
    base = PRESETS.get(preset.name)
    same = base is not None and (preset.forget_size, preset.forget_frac) == (base.forget_size, base.forget_frac)
    amount = "" if same else (f"n{preset.forget_size}-" if preset.forget_size else f"f{preset.forget_frac:g}-")
    subsets = f"-subsets{preset.bank_size}" if preset.bank == "subsets" else ""
    return f"{preset.name}-forget-{amount}seeds-{'-'.join(str(s) for s in seeds)}{subsets}"


def label(seed: int) -> str:
    """A forget set's label in the summary's columns and figure."""
    return f"s{seed}"


def score_table(tables: dict, column: str = "final_score") -> pd.DataFrame:
    """(n_methods, n_sets) `column` from leaderboard tables {label: run_leaderboard's table}; NaN where a
    method failed or is absent. Methods in order of first appearance (the first table's ranking)."""
    cols = {}
    for name, t in tables.items():
        ok = t[t["status"] == "ok"]
        cols[name] = pd.Series(ok[column].astype(float).to_numpy(), index=ok["method"].to_numpy())
    order = list(dict.fromkeys(m for t in tables.values() for m in t["method"]))
    return pd.DataFrame(cols, columns=list(tables)).reindex(order).rename_axis("method")


def _f(x, fmt="{:.4f}") -> str:
    return "–" if x is None or not math.isfinite(float(x)) else fmt.format(x)


def _rank(x) -> str:
    return "–" if not math.isfinite(x) else (f"{x:.0f}" if float(x).is_integer() else f"{x:g}")


def _summary_csv(summary: pd.DataFrame, normalized: pd.DataFrame, failed: dict) -> pd.DataFrame:
    """summary.csv's table: one row per method, scores and ranks per forget set, where it failed."""
    out = summary.rename(
        columns={
            "mean": "final_score_mean",
            "std": "final_score_std",
            "min": "final_score_min",
            "max": "final_score_max",
            **{f"score_{s}": f"final_score_{s}" for s in failed},
        }
    )
    out.insert(out.columns.get_loc("n_sets") + 1, "normalized_score_mean", normalized.mean(axis=1))
    out["failed_on"] = [" ".join(s for s, keys in failed.items() if m in keys) for m in out.index]
    return out.reset_index()


def _md_table(csv: pd.DataFrame, labels) -> str:
    rows = []
    for r in csv.to_dict("records"):
        rows.append(
            {
                "method": f"*{r['method']}* (ref)" if r["reference"] else f"`{r['method']}`",
                "mean final score [min, max]": f"{_f(r['final_score_mean'])} [{_f(r['final_score_min'])}, "
                f"{_f(r['final_score_max'])}]",
                "std": _f(r["final_score_std"]),
                "sets": f"{r['n_sets']}/{len(labels)}",
                "normalized (mean)": _f(r["normalized_score_mean"], "{:.3f}"),
                **{f"score {s}": _f(r[f"final_score_{s}"]) for s in labels},
                **{f"rank {s}": _rank(r[f"rank_{s}"]) for s in labels},
                "mean rank": _f(r["mean_rank"], "{:.2f}"),
            }
        )
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def _tau_table(tau: pd.DataFrame, n: pd.DataFrame) -> str:
    t = pd.DataFrame(
        {c: [f"{_f(tau.loc[i, c], '{:.3f}')} (n={n.loc[i, c]})" for i in tau.index] for c in tau.columns},
        index=tau.index,
    )
    return t.rename_axis("").reset_index().to_markdown(index=False, disable_numparse=True)


def _agreement(n_sets: int, mean_tau: float, lo: int, hi: int) -> str:
    """The summary's sentence on the mean tau, read against the spread of tau between unrelated rankings."""
    pairs = n_sets * (n_sets - 1) // 2
    what = "τ between the two forget sets" if pairs == 1 else f"Mean τ over the {pairs} pairs of forget sets"
    over = f"{lo}" if lo == hi else f"{lo} to {hi}"
    if not math.isfinite(mean_tau):
        return (
            f"**{what}: undefined** (valid entries per pair: {over}; τ needs at least two that are not all "
            f"tied on either side)."
        )
    sd = rankings.null_tau_sd(lo)
    return (
        f"**{what}: {mean_tau:.3f}**, over {over} valid entries per pair. Two unrelated rankings of {lo} "
        f"methods give τ with a standard deviation of about √(2(2n + 5) / (9n(n − 1))) = {sd:.2f} (n = {lo}), "
        f"so a τ within about twice that of 0 says little; a τ near 1 says the ranking holds."
    )


def _markdown(csv, tau, n, boards, *, preset, seeds, references, out_dir, metric, seed, plot_file):
    labels = [label(s) for s in seeds]
    mean_tau = rankings.mean_off_diagonal(tau)
    pair_n = n.to_numpy()[np.triu_indices(len(n), k=1)]  # (n_pairs,) methods per pair
    lo, hi = int(pair_n.min()), int(pair_n.max())
    refs = ", ".join(f"`{r}`" for r in references)
    boards_md = [
        f"  - **{label(b['forget_seed'])}**: forget seed {b['forget_seed']}, "
        f"[`{b['dir'].name}/leaderboard.md`]({os.path.relpath(b['dir'] / 'leaderboard.md', out_dir)}), "
        f"bank `{b['bank']}`, {b['preset'].forget_protocol}"
        + (f"; failed: {', '.join(f'`{m}`' for m in b['failed'])}" if b["failed"] else "")
        for b in boards
    ]
    lines = [
        f"# Rankings across forget sets: preset `{preset.name}`, forget seeds {', '.join(map(str, seeds))}",
        "",
        f"- **Forget sets**: {len(seeds)} random draws, each its own bank (1 original + {preset.n_retrained} "
        f"retrained models) and its own leaderboard; every method ran {preset.n_runs} times per forget set "
        f"(base seed {seed}), metric `{metric}`:",
        *boards_md,
        f"- Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; the numbers are in `summary.csv` "
        f"(the source of truth) and `kendall_tau.csv`. Rerunning the same command reuses every forget set's "
        f"cached rows.",
        "",
        "**Why.** A ranking on one forget set can be luck: the forget set is a random draw, and the scorer "
        "compares few models. A method that is better should stay better when the forget set changes.",
        "",
        "Columns: **mean final score [min, max]** and **std** (sample standard deviation, ddof 1) over the "
        "forget sets where the method has a score (**sets**); **normalized (mean)**: the mean of each "
        "leaderboard's (score − none) / (retrain − none); **score / rank sN**: its final score and rank on "
        "forget set sN (1 = best among all rows of that leaderboard, references included, so the rank is "
        "the method's place in that leaderboard.md; tied scores share the average rank); **mean rank** over "
        "the sets where it is ranked. A method that failed on a forget set is missing there (–: see that "
        "leaderboard for the reason) and its mean is over the other sets. Rows are sorted by mean final score.",
        "",
        _md_table(csv, labels),
        "",
        "## Do the forget sets agree?",
        "",
        f"**Kendall's τ** (tau-b, which corrects for ties, as `scipy.stats.kendalltau` computes it) between "
        f"every two forget sets' rankings: 1 = the same order, −1 = reversed, 0 = unrelated. The reference "
        f"rows ({refs}) are **left out of τ** but kept in the table above: they are the fixed ends of every "
        f"ranking (the unchanged model scores 0, retraining sits on top) and would make any two rankings look "
        f"alike. A pair of forget sets is compared over the valid entries scored on both (n); τ is blank (–) "
        f"with fewer than two or when one side ties them all.",
        "",
        _agreement(len(seeds), mean_tau, lo, hi),
        "",
        _tau_table(tau, n),
    ]
    if plot_file is not None:
        lines += ["", "## Figure", "", f"![Final score per forget set and Kendall's tau]({plot_file.name})"]
    return "\n".join(lines) + "\n"


def write_summary(boards: list[dict], out_dir, *, preset, metric: str = "official", seed: int = 0) -> dict:
    """Put one leaderboard per forget seed side by side; write summary.csv, kendall_tau.csv, summary.md and the figure.

    Parameters
    ----------
    boards : list of dict, one per forget seed, in order, each with ``forget_seed`` (int), ``table``
        (`run_leaderboard`'s DataFrame), ``dir`` (its results folder), ``preset`` (that seed's preset)
        and ``bank`` (its bank key).
    out_dir : path of the summary folder (`summary_tag`).
    preset : the preset (any seed's: counts and name); metric, seed: as the leaderboards ran.

    Returns
    -------
    dict with ``table`` (summary.csv's DataFrame), ``tau`` (the matrix), ``mean_tau``, ``markdown``,
    ``files`` and ``dir``.
    """
    if len(boards) < 2:
        raise ValueError(f"a summary compares at least two forget sets, got {len(boards)}")
    out_dir = Path(out_dir)
    seeds = [b["forget_seed"] for b in boards]
    tables = {label(b["forget_seed"]): b["table"] for b in boards}
    scores = score_table(tables)  # (n_methods, n_sets)
    normalized = score_table(tables, "normalized_score")
    flagged = {
        m
        for t in tables.values()
        for m, ref in zip(t["method"], t["reference"])
        if isinstance(ref, (bool, np.bool_)) and ref
    }
    references = [m for m in [*REFERENCES, *sorted(flagged)] if m in scores.index]
    references = list(dict.fromkeys(references))
    summary = rankings.ranking_summary(scores, references=references)
    tau = rankings.kendall_tau_matrix(scores, exclude=references)
    n = rankings.common_counts(scores, exclude=references)
    failed = {label(b["forget_seed"]): set(b["table"].loc[b["table"]["status"] != "ok", "method"]) for b in boards}
    for b in boards:
        b["failed"] = sorted(failed[label(b["forget_seed"])])
    csv = _summary_csv(summary, normalized.reindex(summary.index), failed)

    csv_path = write_text(out_dir / "summary.csv", csv.to_csv(index=False))
    tau_path = write_text(out_dir / "kendall_tau.csv", tau.rename_axis("forget_set").to_csv())
    plot_file = plots.forget_set_rankings(
        scores.loc[summary.index],
        tau,
        out_dir / "kendall_tau.png",
        references=set(references),
        title=f"Rankings across forget sets: preset {preset.name}",
    )
    md = _markdown(
        csv,
        tau,
        n,
        boards,
        preset=preset,
        seeds=seeds,
        references=references,
        out_dir=out_dir,
        metric=metric,
        seed=seed,
        plot_file=plot_file,
    )
    md_path = write_text(out_dir / "summary.md", md)
    return {
        "table": csv,
        "tau": tau,
        "mean_tau": rankings.mean_off_diagonal(tau),
        "markdown": md,
        "files": [csv_path, tau_path, md_path, plot_file],
        "dir": out_dir,
    }
