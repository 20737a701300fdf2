"""Rankings across forget sets: does a leaderboard's order hold when the forget set changes?

Pure functions over a table of scores, a DataFrame of shape (n_methods, n_sets): one row per
method, one column per forget set, NaN where the method is missing (it failed there, or was not
evaluated). `eval.harness.seed_study` builds the table from one leaderboard per forget set.

* `score_spread`: per method, the mean, sample standard deviation (ddof 1), min and max over the
  forget sets where it has a score, and how many those are (`n_sets`).
* `score_ranks`: per forget set, each method's rank, 1 = the highest score; ties share the average
  of the ranks they span (`scipy.stats.rankdata(method="average")`); NaN stays NaN and is not ranked.
* `kendall_tau_matrix`: Kendall's tau-b (`scipy.stats.kendalltau`, which corrects for ties) between
  every two forget sets' scores, over the methods that have a score on both and are not `exclude`d
  (the reference rows `none` and `retrain`: they are the fixed ends of every ranking and would
  inflate the agreement). tau is rank-based, so the tau of the scores is the tau of the ranks.
  NaN where fewer than two methods are left, or one side ranks them all equal.
* `mean_off_diagonal`: the mean of the pairwise tau (each pair of forget sets once).
* `null_tau_sd`: the standard deviation of tau between two unrelated rankings of n methods, to read
  a mean tau against.
"""

import math

import numpy as np
import pandas as pd
from scipy import stats


def _check(scores) -> pd.DataFrame:
    if not isinstance(scores, pd.DataFrame):
        raise ValueError(f"scores must be a DataFrame (methods x forget sets), got {type(scores).__name__}")
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise ValueError(f"scores must have at least one forget set (column), got shape {scores.shape}")
    if not scores.index.is_unique or not scores.columns.is_unique:
        raise ValueError("scores must have unique method names (index) and forget-set labels (columns)")
    return scores.astype(float)


def score_spread(scores: pd.DataFrame) -> pd.DataFrame:
    """Each method's mean, std, min and max over the forget sets where it has a score.

    Parameters
    ----------
    scores : DataFrame of shape (n_methods, n_sets), NaN for missing.

    Returns
    -------
    DataFrame of shape (n_methods, 5), columns ``mean``, ``std`` (sample, ddof 1; NaN with fewer
    than two scores), ``min``, ``max`` (NaN where the method has no score) and ``n_sets`` (int).
    """
    s = _check(scores)
    return pd.DataFrame(
        {
            "mean": s.mean(axis=1),
            "std": s.std(axis=1, ddof=1),
            "min": s.min(axis=1),
            "max": s.max(axis=1),
            "n_sets": s.notna().sum(axis=1).astype(int),
        },
        index=s.index,
    )


def score_ranks(scores: pd.DataFrame) -> pd.DataFrame:
    """Rank of every method on every forget set: 1 = highest score, ties averaged, NaN not ranked.

    Parameters
    ----------
    scores : DataFrame of shape (n_methods, n_sets), higher is better, NaN for missing.

    Returns
    -------
    DataFrame of the same shape and labels; each column ranks only its non-NaN scores (1..n), e.g.
    scores (0.3, 0.1, 0.3, NaN) rank (1.5, 3, 1.5, NaN).
    """
    s = _check(scores)
    r = stats.rankdata(-s.to_numpy(), method="average", axis=0, nan_policy="omit")  # (n_methods, n_sets)
    return pd.DataFrame(r, index=s.index, columns=s.columns)


def _tau_b(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """tau-b of a and b over the entries finite in both, and how many those are."""
    both = np.isfinite(a) & np.isfinite(b)
    n = int(both.sum())
    a, b = a[both], b[both]
    if n < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan, n
    return float(stats.kendalltau(a, b, variant="b").statistic), n


def _pairs(scores, exclude):
    s = _check(scores)
    s = s.loc[~s.index.isin(list(exclude))]
    x = s.to_numpy()  # (n_kept, n_sets)
    k = x.shape[1]
    tau, n = np.full((k, k), np.nan), np.zeros((k, k), dtype=int)
    for i in range(k):
        for j in range(i, k):
            tau[i, j], n[i, j] = _tau_b(x[:, i], x[:, j])
            tau[j, i], n[j, i] = tau[i, j], n[i, j]
    return (pd.DataFrame(tau, index=s.columns, columns=s.columns), pd.DataFrame(n, index=s.columns, columns=s.columns))


def kendall_tau_matrix(scores: pd.DataFrame, exclude=()) -> pd.DataFrame:
    """Kendall's tau-b between every two forget sets' rankings of the methods.

    Parameters
    ----------
    scores : DataFrame of shape (n_methods, n_sets), NaN for missing.
    exclude : iterable of method names left out of tau (the reference rows); names not in
        `scores` are ignored.

    Returns
    -------
    DataFrame of shape (n_sets, n_sets), symmetric, labelled by the forget sets; entry (i, j) is
    `scipy.stats.kendalltau(variant="b")` over the methods with a score on both sets, NaN where
    fewer than two are left or one set gives them all the same score; the diagonal is 1 (or NaN).
    """
    return _pairs(scores, exclude)[0]


def common_counts(scores: pd.DataFrame, exclude=()) -> pd.DataFrame:
    """How many methods each entry of `kendall_tau_matrix(scores, exclude)` is computed over, (n_sets, n_sets)."""
    return _pairs(scores, exclude)[1]


def mean_off_diagonal(matrix) -> float:
    """Mean of the entries above the diagonal of a square matrix, NaN ignored (NaN if none is finite).

    Parameters
    ----------
    matrix : array-like of shape (k, k), e.g. `kendall_tau_matrix`'s result.
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"matrix must be square, got shape {m.shape}")
    upper = m[np.triu_indices(m.shape[0], k=1)]  # (k (k - 1) / 2,)
    upper = upper[np.isfinite(upper)]
    return float(upper.mean()) if upper.size else math.nan


def null_tau_sd(n: int) -> float:
    """Standard deviation of Kendall's tau between two independent random rankings of n items (no ties).

    ``sqrt(2 (2n + 5) / (9 n (n - 1)))`` (Kendall 1938); NaN for n < 2. With 9 methods it is 0.27:
    tau between two forget sets must be well above that to say more than chance.
    """
    return math.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1))) if n >= 2 else math.nan


def ranking_summary(scores: pd.DataFrame, references=()) -> pd.DataFrame:
    """`score_spread` and `score_ranks` side by side, sorted by mean score (best first, NaN last).

    Parameters
    ----------
    scores : DataFrame of shape (n_methods, n_sets), NaN for missing.
    references : iterable of method names flagged in the ``reference`` column (kept in the table;
        leave them out of tau with `kendall_tau_matrix(scores, exclude=references)`).

    Returns
    -------
    DataFrame indexed by method with columns ``reference`` (bool), ``mean``, ``std``, ``min``,
    ``max``, ``n_sets``, ``mean_rank`` (over the sets where the method is ranked), then the scores
    (``score_<set>``) and ranks (``rank_<set>``) per forget set.
    """
    s = _check(scores)
    ranks = score_ranks(s)
    out = score_spread(s)
    out.insert(0, "reference", s.index.isin(list(references)))
    out["mean_rank"] = ranks.mean(axis=1)
    out = pd.concat([out, s.add_prefix("score_"), ranks.add_prefix("rank_")], axis=1)
    return out.sort_values(["mean", "mean_rank"], ascending=[False, True], na_position="last", kind="stable")


__all__ = [
    "common_counts",
    "kendall_tau_matrix",
    "mean_off_diagonal",
    "null_tau_sd",
    "ranking_summary",
    "score_ranks",
    "score_spread",
]
