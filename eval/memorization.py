"""Memorization scores and the forget sets chosen by them: pure array functions.

Feldman & Zhang's subsampled estimator ("What Neural Networks Memorize and Why", NeurIPS 2020,
arXiv 2008.03703): K models, each trained on a random subset of the training set; per example,

    mem(i) = P(h(x_i) = y_i | i in h's training data) − P(h(x_i) = y_i | i not in it),

estimated by the fraction of correct predictions among the models that did and did not train on i.
RUM's forget sets (Zhao et al., NeurIPS 2024, arXiv 2406.01257; kairanzhao/RUM `main_forget.py`): with
N examples to forget, `high` = the N largest scores, `low` = the N smallest, `mid` = the N closest to 0.5, and
`mix` = N/3 of each (the first N/3 of high, the first N/3 of mid, the last N/3 of low). Ties are
broken by index, so a selection is a function of the scores alone. Decision: `mix` takes its three
thirds without repeats (high first, then mid, then low, each skipping what is taken), which RUM's
code does not guarantee when a mid example is also among the highest. Examples that no model (or
every model) trained on have no estimate (NaN) and are never selected.
"""

import numpy as np

GROUPS = ("high", "mid", "low", "mix")


def memorization_scores(members, correct) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-example (mem, n_in, n_out) from `members` and `correct`, both (K models, n examples) bool.

    mem is NaN where n_in or n_out is 0.
    """
    members, correct = np.asarray(members, bool), np.asarray(correct, bool)
    if members.shape != correct.shape or members.ndim != 2:
        raise ValueError(
            f"members and correct must be (K, n) arrays of one shape, got {members.shape} and {correct.shape}"
        )
    n_in, n_out = members.sum(0), (~members).sum(0)  # (n,)
    p_in = (correct & members).sum(0) / np.maximum(n_in, 1)
    p_out = (correct & ~members).sum(0) / np.maximum(n_out, 1)
    mem = np.where((n_in > 0) & (n_out > 0), p_in - p_out, np.nan)
    return mem, n_in, n_out


def _order(key: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Indices of the valid entries sorted by `key` ascending, ties by index."""
    idx = np.flatnonzero(valid)
    return idx[np.argsort(key[idx], kind="stable")]


def memorization_groups(mem, n: int, group: str) -> np.ndarray:
    """Sorted indices of the `n` examples of `group` (high, mid, low or mix) by memorization `mem` (n_all,)."""
    if group not in GROUPS:
        raise ValueError(f"group must be one of {', '.join(GROUPS)}, got {group!r}")
    mem = np.asarray(mem, float)
    valid = np.isfinite(mem)
    if not 1 <= n <= int(valid.sum()):
        raise ValueError(f"cannot pick {n} examples: {int(valid.sum())} have a memorization estimate")
    high = _order(-mem, valid)  # largest first
    mid = _order(np.abs(mem - 0.5), valid)  # closest to 0.5 first
    low = _order(mem, valid)  # smallest first
    if group == "high":
        return np.sort(high[:n])
    if group == "mid":
        return np.sort(mid[:n])
    if group == "low":
        return np.sort(low[:n])
    thirds = (n - 2 * (n // 3), n // 3, n // 3)  # high gets the remainder
    taken = np.zeros(len(mem), bool)
    for ranking, k, from_end in ((high, thirds[0], False), (mid, thirds[1], False), (low, thirds[2], True)):
        pool = ranking[~taken[ranking]]
        if from_end:  # "the last N/3 of low": the largest of the N lowest
            pool = pool[:n][::-1]
        taken[pool[:k]] = True
    return np.flatnonzero(taken)
