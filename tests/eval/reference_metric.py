"""Slow, literal oracle of the official metric (tests only; numpy, CPU).

Follows google-deepmind/unlearning_evaluation ``metric.py`` (commit
ffae0fff4c3e9523b22618c47df6c26e4eebe0df) step by step: a Python loop over examples, the
threshold lists built as the organizers build them (one ``np.linspace`` per right threshold),
and the rates from models x thresholds comparison matrices, as on their GPU. It shares no code
with ``eval.metrics``. Generalized to unequal group sizes (each rate over its own group).
"""

import math
import warnings

import numpy as np

DELTA = 1e-5
EPSILON_CAP = 50
NUM_THRESHOLDS_PER_UNIT = 100


def torch_linspace_float32(start, end, steps):
    """torch.linspace(start, end, steps) in float32, one element at a time."""
    if steps == 0:
        return np.zeros(0, dtype=np.float32)
    s, e = np.float32(start), np.float32(end)
    if steps == 1:
        return np.array([s], dtype=np.float32)
    step = np.float32(np.float32(e - s) / np.float32(steps - 1))
    out = []
    for i in range(steps):
        if i < steps // 2:
            exact = float(s) + float(step) * i  # one rounding to float32 below
        else:
            exact = float(e) - float(step) * (steps - i - 1)
        out.append(np.float32(exact))
    return np.array(out, dtype=np.float32)


def _rates(count, n):
    return np.float32(count / n) if np.isscalar(count) else (count / n).astype(np.float32)


def _double_threshold_predictions(pos, neg):
    """Models x thresholds 'inside [l, r]' matrices, and whether pos/neg were swapped."""
    pos_diff = pos.max() - pos.min()
    neg_diff = neg.max() - neg.min()
    smallest = neg_diff if pos_diff > neg_diff else pos_diff
    swapped = bool(pos_diff >= neg_diff)  # positive := the peakier group
    if swapped:
        pos, neg = neg, pos
    buffer = 2.0
    width = smallest
    min_ = pos.min() + width - buffer
    max_ = pos.max() + buffer
    num_right = int(np.ceil((max_ - min_) * NUM_THRESHOLDS_PER_UNIT))
    right = np.linspace(min_, max_, num=num_right)
    num_left = int(np.ceil(2 * buffer * NUM_THRESHOLDS_PER_UNIT))
    lefts, rights = [], []
    for tr in right:
        lefts.append(np.linspace(tr - width - buffer, tr - width + buffer, num=num_left))
        rights.append(np.full(num_left, tr))
    thr_left = np.concatenate(lefts) if lefts else np.zeros(0)
    thr_right = np.concatenate(rights) if rights else np.zeros(0)

    def predicted_positive(c):  # [models, thresholds]
        c = c[:, None]
        return (thr_left[None, :] <= c) & (c <= thr_right[None, :])

    return predicted_positive(pos), predicted_positive(neg), swapped


def _double_threshold_rates(pos, neg):
    pp_pos, pp_neg, swapped = _double_threshold_predictions(pos, neg)
    n_pos, n_neg = (len(neg), len(pos)) if swapped else (len(pos), len(neg))
    tpr = _rates(pp_pos.sum(0), n_pos)
    fnr = _rates((~pp_pos).sum(0), n_pos)
    fpr = _rates(pp_neg.sum(0), n_neg)
    tnr = _rates((~pp_neg).sum(0), n_neg)
    return tpr, fnr, fpr, tnr


def _single_threshold_predictions(pos, neg):
    """Models x thresholds 'x >= t' matrices."""
    all_confs = np.concatenate([pos, neg])
    min_val, max_val = all_confs.min(), all_confs.max()
    num = int(np.ceil((max_val - min_val) * NUM_THRESHOLDS_PER_UNIT))
    thr = torch_linspace_float32(min_val, max_val, num).astype(np.float64)
    return pos[:, None] >= thr[None, :], neg[:, None] >= thr[None, :]


def _single_threshold_rates(pos, neg):
    pp_pos, pp_neg = _single_threshold_predictions(pos, neg)
    tpr = _rates(pp_pos.sum(0), len(pos))
    fpr = _rates(pp_neg.sum(0), len(neg))
    tnr = _rates((~pp_neg).sum(0), len(neg))
    fnr = _rates((~pp_pos).sum(0), len(pos))
    return tpr, fnr, fpr, tnr


def reference_attack_counts(u, r):
    """(#unlearned, #retrained) predicted positive by every attack of one example."""
    u = np.asarray(u, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    retrain_pos = bool(np.median(r) > np.median(u))
    pos, neg = (r, u) if retrain_pos else (u, r)
    pp_pos, pp_neg, swapped = _double_threshold_predictions(pos, neg)
    peaky_is_r = retrain_pos != swapped
    interval = (pp_neg.sum(0), pp_pos.sum(0)) if peaky_is_r else (pp_pos.sum(0), pp_neg.sum(0))
    sp_pos, sp_neg = _single_threshold_predictions(pos, neg)
    single = (sp_neg.sum(0), sp_pos.sum(0)) if retrain_pos else (sp_pos.sum(0), sp_neg.sum(0))
    return {"interval": interval, "single": single, "retrain_pos": retrain_pos, "peaky_is_r": peaky_is_r}


def reference_epsilon(pos, neg, delta=DELTA):
    """Epsilon of one example; pos/neg already chosen by the median rule."""
    pos_diff = np.max(pos) - np.min(pos)
    neg_diff = np.max(neg) - np.min(neg)
    largest = pos_diff if pos_diff > neg_diff else neg_diff
    smallest = neg_diff if pos_diff > neg_diff else pos_diff
    with np.errstate(divide="ignore", invalid="ignore"):
        if smallest / largest < 0.01:
            return float(EPSILON_CAP)
    d = _double_threshold_rates(pos, neg)
    s = _single_threshold_rates(pos, neg)
    tpr, fnr, fpr, tnr = (np.concatenate([a, b]) for a, b in zip(d, s))
    thr_eps = np.zeros(len(tpr), dtype=np.float32)
    both_zero = (fpr + fnr == 0) & (tpr + tnr == 2)
    thr_eps[both_zero] = np.inf
    one_zero = (thr_eps == 0) & (fpr * fnr == 0)
    thr_eps[one_zero] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            computed = np.clip(
                np.nanmax([np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr)], axis=0),
                0,
                None,
            )
    thr_eps = np.where(thr_eps == 0, computed, thr_eps)
    kept = thr_eps[~np.isnan(thr_eps)]
    if kept.size == 0:  # the official code fails its assertion; the kit returns the cap
        return float(EPSILON_CAP)
    return float(np.clip(np.max(kept), 0, EPSILON_CAP))


def reference_epsilons(unlearned, retrained, delta=DELTA):
    """(n_examples,) epsilons; arrays (n_models_u, n_examples) and (n_models_r, n_examples)."""
    unlearned = np.asarray(unlearned, dtype=np.float64)
    retrained = np.asarray(retrained, dtype=np.float64)
    out = []
    for i in range(unlearned.shape[1]):
        u, r = unlearned[:, i], retrained[:, i]
        if np.median(r) > np.median(u):
            pos, neg = r, u
        else:
            pos, neg = u, r
        out.append(reference_epsilon(pos, neg, delta))
    return np.array(out)


def reference_points(epsilons, num_models):
    max_epsilon = np.ceil(np.log(num_models - 1))
    start, size, points, buckets = 0, 0.5, 1, {}
    while start + size <= max_epsilon:
        buckets[start] = points
        points /= 2
        start += size
    out = []
    for e in epsilons:
        got = 0
        for s, p in buckets.items():
            if e < s + size:
                got = p
                break
        out.append(got)
    return np.array(out, dtype=np.float64)


def reference_logit_scaled_confidence(logits, labels):
    """Direct per-example softmax in float64 (math module), for tests."""
    out = []
    for row, y in zip(np.asarray(logits, dtype=np.float64), labels):
        m = max(row)
        ex = [math.exp(v - m) for v in row]
        total = math.fsum(ex)
        p = [v / total for v in ex]
        wrong = math.fsum(p[j] for j in range(len(p)) if j != y)
        out.append(math.log(p[y] + 1e-45) - math.log(wrong + 1e-45))
    return np.array(out)
