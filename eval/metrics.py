"""The NeurIPS 2023 Machine Unlearning Challenge forgetting metric, reimplemented for CPU.

Source of the semantics: github.com/google-deepmind/unlearning_evaluation, ``metric.py`` (and
``main.py`` for the final score), commit ffae0fff4c3e9523b22618c47df6c26e4eebe0df. The code
below is written from those definitions; it is not a copy.

For every forget example the statistic of N unlearned models is compared with that of N
retrained models:

* statistic: logit-scaled confidence of the true label, ``log p_y - log sum_{j!=y} p_j``;
* positive group: the one with the larger median (ties: the unlearned group);
* peaky cap: if min(range)/max(range) of the two groups is below 0.01, epsilon = 50;
* attacks, pooled: (a) single thresholds ``t``, predict the median-positive group if
  ``x >= t``, on ``torch.linspace(min, max, ceil(100 * (max - min)))`` over both groups, which
  is float32 (torch's default dtype); (b) intervals ``[l, r]``, both ends inclusive, predicting
  the *peakier* group ``P`` (smaller range ``w``; equal ranges: the median-negative group):
  right ends ``np.linspace(P.min + w - 2, P.max + 2, ceil(100 * (that span)))`` (about 400),
  and for each right end 400 left ends ``np.linspace(r - w - 2, r - w + 2, 400)``;
* per attack (float32 rates, as in the GPU code): FPR = FNR = 0 gives +inf, exactly one of them
  0 discards the attack, otherwise
  ``max(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR)`` clipped below at 0;
* epsilon = max over the surviving attacks, clipped to [0, 50];
* points: buckets of width 0.5 from 0 up to ``ceil(log(N - 1))``, worth 1, 1/2, 1/4, ...;
  epsilons beyond the last bucket (the cap 50 included) earn 0. F is the mean over examples.

Implementation: the rates depend only on integer counts, so the epsilon of every attack is read
from a precomputed ``(n_u + 1) x (n_r + 1)`` table (one per orientation); counts come from the
sorted values of each example (``np.searchsorted`` and an exact monotone-bucket lookup), never
from a models x thresholds matrix. The ~160,000 intervals of an example are visited in blocks
of 20 left ends; a block is evaluated only if the table's maximum over the rectangle of counts
it can reach exceeds the best epsilon so far, so the result is exact. About 1.5 ms per example
on one CPU core (5,000 examples x 512 models: ~8 s).

Choices where the official code is silent or cannot run:

* unequal group sizes: each rate is a fraction of its own group; the number of buckets uses
  ``N = min(n_u, n_r)`` (the official code has equal sizes and uses ``unlearned.shape[0]``);
* the rates are ``float32(k / n)`` and epsilons are computed in float32, as the official code
  does (its ``torch.mean`` of float32 indicators multiplies by a float32 ``1/n``: identical
  whenever ``n`` is a power of two, 512 included); the result is returned as float64;
* the single-threshold grid reproduces ``torch.linspace`` in float32 (its symmetric formula,
  one rounding per point, as the torch CPU kernel computes it);
* an example where no attack survives (e.g. both groups constant at the same value) makes the
  official code fail its assertion; here its epsilon is the cap, 50 (0 points).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = [
    "DELTA",
    "EPSILON_CAP",
    "NUM_THRESHOLDS_PER_UNIT",
    "BUCKET_SIZE",
    "logit_scaled_confidence",
    "per_example_epsilons",
    "epsilon_points",
    "forgetting_quality",
    "final_score",
    "max_epsilon",
]

DELTA = 1e-5
EPSILON_CAP = 50.0
NUM_THRESHOLDS_PER_UNIT = 100
BUCKET_SIZE = 0.5
_BUFFER = 2.0
_PEAKY_RATIO = 0.01
_NUM_LEFT = int(np.ceil(2 * _BUFFER * NUM_THRESHOLDS_PER_UNIT))  # 400 left ends per right end
_DISCARDED = np.float32(-1.0)  # table marker: attack discarded (exactly one of FPR, FNR is 0)
_CHUNK = 16  # examples per work item
_BLOCK = 20  # left ends per pruning block
_BLOCK_ENDS = np.append(np.arange(0, _NUM_LEFT, _BLOCK), _NUM_LEFT - 1).astype(np.float64)
_BLOCK_COLS = np.arange(_BLOCK)
_FIRST_BLOCKS = 16  # blocks evaluated before pruning the rest


# ---------------------------------------------------------------------------------------------
# Statistic.


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().cpu()
        if str(x.dtype) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def logit_scaled_confidence(logits, labels) -> np.ndarray:
    """Logit-scaled confidence of the true label, as in the official ``metric.py``.

    ``z <- z - max_j z_j``; ``p = softmax(z)`` normalized in float64;
    ``conf = log(p_y + 1e-45) - log(sum_{j != y} p_j + 1e-45)``.
    As in the official code, float32 logits (what a network returns) are shifted and
    exponentiated in float32 and only then converted to float64; any other dtype is converted to
    float64 first. The input is not modified.

    Parameters
    ----------
    logits : array_like or torch.Tensor, shape (..., n_examples, n_classes)
        Raw model outputs, e.g. ``(n_models, n_examples, n_classes)``.
    labels : array_like of int, shape (n_examples,)
        Ground-truth class of each example (broadcast over the leading axes).

    Returns
    -------
    numpy.ndarray of float64, shape (..., n_examples)
        The statistic; finite for finite logits (at most about +-103.6).

    Raises
    ------
    ValueError
        On shape mismatch, labels out of range, or non-finite logits.
    """
    z = _to_numpy(logits)
    y = _to_numpy(labels)
    if z.ndim < 2:
        raise ValueError(f"logits must have shape (..., n_examples, n_classes), got {z.shape}")
    if y.ndim != 1 or y.shape[0] != z.shape[-2]:
        raise ValueError(f"labels must have shape ({z.shape[-2]},) to match logits {z.shape}, got {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("labels must be integers")
    y = y.astype(np.int64)
    n_classes = z.shape[-1]
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got [{y.min()}, {y.max()}]")
    if z.dtype != np.float32:
        z = z.astype(np.float64)
    if not np.all(np.isfinite(z)):
        what = "NaN" if np.isnan(z).any() else "infinite values"
        raise ValueError(f"logits of shape {z.shape} contain {what}")
    z = z - np.max(z, axis=-1, keepdims=True)
    probs = np.array(np.exp(z), dtype=np.float64)
    probs /= np.sum(probs, axis=-1, keepdims=True)
    index = np.broadcast_to(y[:, None], z.shape[:-1] + (1,))
    p_correct = np.take_along_axis(probs, index, axis=-1)[..., 0]
    np.put_along_axis(probs, index, 0.0, axis=-1)
    p_wrong = np.sum(probs, axis=-1)
    return np.log(p_correct + 1e-45) - np.log(p_wrong + 1e-45)


# ---------------------------------------------------------------------------------------------
# Epsilons.


def _validate_outputs(outputs_unlearned, outputs_retrained) -> tuple[np.ndarray, np.ndarray]:
    u = _to_numpy(outputs_unlearned)
    r = _to_numpy(outputs_retrained)
    shapes = f"unlearned {u.shape}, retrained {r.shape}"
    if u.ndim != 2 or r.ndim != 2:
        raise ValueError(f"outputs must be 2-D (n_models, n_examples); got {shapes}")
    if u.shape[1] != r.shape[1]:
        raise ValueError(f"outputs must have the same number of examples; got {shapes}")
    if u.shape[1] == 0:
        raise ValueError(f"outputs hold no examples; got {shapes}")
    if u.shape[0] < 2 or r.shape[0] < 2:
        raise ValueError(f"need at least 2 models in each group; got {shapes}")
    try:
        u = u.astype(np.float64)
        r = r.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"outputs must be numeric; got {shapes}") from err
    for name, a in (("unlearned", u), ("retrained", r)):
        if np.isnan(a).any():
            bad = np.unique(np.nonzero(np.isnan(a))[1])
            raise ValueError(
                f"{name} outputs of shape {a.shape} contain NaN (examples "
                f"{bad[:10].tolist()}{' ...' if bad.size > 10 else ''}); "
                "a diverged model or a failed statistic?"
            )
        if not np.isfinite(a).all():
            raise ValueError(f"{name} outputs of shape {a.shape} contain infinite values")
    return u, r


def _epsilon_table(n_pos: int, n_neg: int, delta: float) -> np.ndarray:
    """Epsilon of an attack from its counts, shape (n_pos + 1, n_neg + 1), float32.

    Entry ``[tp, fp]``: ``tp`` positives and ``fp`` negatives predicted positive, so
    ``FNR = (n_pos - tp) / n_pos`` and ``FPR = fp / n_neg``. Entries are +inf (perfect
    separation), ``-1`` (attack discarded) or the clipped epsilon computed in float32.
    """
    tp = np.arange(n_pos + 1, dtype=np.float64)[:, None]
    fp = np.arange(n_neg + 1, dtype=np.float64)[None, :]
    fnr = ((n_pos - tp) / n_pos).astype(np.float32)
    fpr = (fp / n_neg).astype(np.float32)
    fnr, fpr = np.broadcast_arrays(fnr, fpr)
    one_minus_delta = np.float32(1 - delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = np.fmax(np.log(one_minus_delta - fpr) - np.log(fnr), np.log(one_minus_delta - fnr) - np.log(fpr))
        eps = np.clip(eps, np.float32(0), None)
    eps = eps.astype(np.float32)
    eps[np.isnan(eps)] = _DISCARDED
    eps[(fpr == 0) != (fnr == 0)] = _DISCARDED
    eps[(fpr == 0) & (fnr == 0)] = np.inf
    return eps


def _orientation_tables(n_u: int, n_r: int, delta: float) -> np.ndarray:
    """Both tables indexed by ``[#unlearned predicted positive, #retrained predicted positive]``.

    Returns shape (2, 2 * size), ``size = (n_u + 1) * (n_r + 1)``: row 0 when the unlearned
    group is the positive class of the attack, row 1 when the retrained group is. Entry
    ``size + a * (n_r + 1) + b`` is for ``a`` unlearned and ``b`` retrained values predicted
    positive; the first ``size`` entries are discarded markers (for empty intervals).
    """
    pos_u = _epsilon_table(n_u, n_r, delta)
    pos_r = _epsilon_table(n_r, n_u, delta).T
    tables = np.stack([pos_u, pos_r]).reshape(2, -1)
    return np.concatenate([np.full_like(tables, _DISCARDED), tables], axis=1)


def _torch_linspace_float32(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace(start, end, steps)`` with torch's default dtype, float32.

    torch rounds ``start``/``end`` to float32, takes ``step = (end - start) / (steps - 1)`` in
    float32 and returns ``start + step * i`` for ``i < steps // 2`` and
    ``end - step * (steps - 1 - i)`` otherwise, each with one rounding (a fused multiply-add).
    The float64 intermediate is exact for ordinary magnitudes (products have at most 53 bits).
    """
    if steps <= 0:
        return np.empty(0, dtype=np.float32)
    s = np.float32(start)
    e = np.float32(end)
    if steps == 1:
        return np.array([s], dtype=np.float32)
    step = np.float32(np.float32(e - s) / np.float32(steps - 1))
    half = steps // 2
    i = np.arange(steps, dtype=np.float64)
    out = np.empty(steps, dtype=np.float64)
    out[:half] = np.float64(s) + np.float64(step) * i[:half]
    out[half:] = np.float64(e) - np.float64(step) * (steps - 1 - i[half:])
    return out.astype(np.float32)


def _left_grid(right: np.ndarray, width: float) -> np.ndarray:
    """Row ``j`` equals ``np.linspace(right[j] - width - 2, right[j] - width + 2, 400)`` bitwise."""
    base = right - width
    start = base - _BUFFER
    stop = base + _BUFFER
    delta = stop - start
    div = _NUM_LEFT - 1
    step = delta / div
    i = np.arange(_NUM_LEFT, dtype=np.float64)[None, :]
    if np.any(step == 0):  # numpy's denormal branch; only for astronomically large values
        return np.stack([np.linspace(a, b, num=_NUM_LEFT) for a, b in zip(start, stop)])
    grid = i * step[:, None]
    grid += start[:, None]
    grid[:, -1] = stop
    return grid


def _cells(merged: np.ndarray, w: np.ndarray, lo: float, hi: float):
    """Exact ``#(merged < q)`` lookups for queries ``q`` in ``[lo, hi]``, without a search.

    A monotone map ``f(x) = floor((x - lo) * k / (hi - lo))`` puts data and queries into cells,
    so ``v < q`` whenever ``f(v) < f(q)``; only data in the query's own cell need comparing. A
    cell holding one distinct value (any multiplicity) is resolved by one comparison; the rare
    cells with several distinct values are sent back to ``np.searchsorted``.
    Returns ``(lo, inv, first, w_below, w_through, multi)``, the arrays indexed by cell.
    """
    n_cells = int(min(max(4 * merged.size, 256), 65536))
    inv = n_cells / (hi - lo) if hi > lo else 0.0
    top = int((hi - lo) * inv)
    fv = np.floor((merged - lo) * inv)
    np.clip(fv, -1, top + 1, out=fv)
    counts = np.bincount(fv.astype(np.intp) + 1, minlength=top + 3)
    below = np.cumsum(counts)[: top + 2]  # below[c] = #(f(v) < c), c = 0..top+1
    start, stop = below[:-1], below[1:]
    occupied = stop > start
    padded = np.append(merged, np.inf)
    first = padded[start]
    single = ~occupied | (first == padded[np.maximum(stop - 1, 0)])
    first = np.where(occupied & single, first, np.inf)
    multi = occupied & ~single
    w_below = np.where(multi, -1, w[start])  # w >= 0, so -1 flags the multi cells
    w_through = w[np.where(single, stop, start)]
    return lo, inv, first, w_below, w_through, multi


def _orientation(us, rs, med_u, med_r):
    """Median rule, peaky ratio and the peakier group of one example.

    Returns ``(retrain_pos, ratio, peaky_is_r, width)``: whether the retrained group is the
    positive class of the single thresholds, ``min(range) / max(range)`` (NaN when both ranges
    are 0), whether the retrained group is the positive class of the intervals, and the
    smaller range.
    """
    range_u = us[-1] - us[0]
    range_r = rs[-1] - rs[0]
    retrain_pos = bool(med_r > med_u)
    pos_diff, neg_diff = (range_r, range_u) if retrain_pos else (range_u, range_r)
    if pos_diff > neg_diff:
        largest, smallest = pos_diff, neg_diff
    else:
        largest, smallest = neg_diff, pos_diff
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.float64(smallest) / np.float64(largest)
    # The peakier group predicts inside the interval (equal ranges: the median-negative group).
    peaky_is_r = retrain_pos != bool(pos_diff >= neg_diff)
    return retrain_pos, ratio, peaky_is_r, smallest


def _right_ends(ps, width):
    """Right ends of the intervals: ``np.linspace(P.min + w - 2, P.max + 2, ~400)``."""
    lo = (ps[0] + width) - _BUFFER
    hi = ps[-1] + _BUFFER
    num_right = int(np.ceil((hi - lo) * NUM_THRESHOLDS_PER_UNIT))
    return np.linspace(lo, hi, num=num_right)


def _w_below(cells, queries, merged, w):
    """``w[#(merged < q)]`` for every query (any shape) inside the range of ``cells``."""
    lo, inv, first, w_below, w_through, multi = cells
    cell = queries - lo
    cell *= inv
    cell = cell.astype(np.intp)
    out = np.where(first.take(cell) < queries, w_through.take(cell), w_below.take(cell))
    if multi.any():  # these cells carry w_below = -1: resolve them exactly
        todo = np.flatnonzero(out < 0)
        out.flat[todo] = w[np.searchsorted(merged, queries.flat[todo], side="left")]
    return out


def _interval_indices(ps, width, merged, w, size):
    """Table indices of all intervals, shape (n_right, 400), in the official order.

    ``ps`` is the sorted peakier group. ``w[k] = n_r * cum_u[k] + k``, where ``cum_u[k]``
    counts unlearned values among the ``k`` smallest merged values: with ``i = #(v < l)`` and
    ``j = #(v <= r)``, ``w[j] - w[i] = in_u * (n_r + 1) + in_r`` for the interval ``[l, r]``.
    Empty intervals (``l > r``) give a value ``<= 0``; ``size`` is added for the padded tables.
    """
    right = _right_ends(ps, width)
    if right.size == 0:
        return np.zeros((0, _NUM_LEFT), dtype=np.intp)
    left = _left_grid(right, width)  # rows are sorted
    cells = _cells(merged, w, float(left[:, 0].min()), float(left[:, -1].max()))
    w_right = w[np.searchsorted(merged, right, side="right")] + size
    return w_right[:, None] - _w_below(cells, left, merged, w)


def _interval_max(ps, width, merged, w, size, stride, peaky_is_r, table, bound, best):
    """Largest table entry over all intervals, or ``best`` if none exceeds it.

    Equal to ``table.take(_interval_indices(...)).max()`` (when that exceeds ``best``) but
    evaluates only blocks of 20 consecutive left ends that can beat ``best``: within a block
    the peakier group's count is at most its count at the block's first left end and the other
    group's count at least its count at the next block's first left end, and ``bound`` holds
    the table's maximum over every such dominated rectangle.
    """
    right = _right_ends(ps, width)
    if right.size == 0:
        return best
    base = right - width
    start = base - _BUFFER
    stop = base + _BUFFER
    step = (stop - start) / (_NUM_LEFT - 1)
    if np.any(step == 0):  # numpy's denormal branch
        flat = _interval_indices(ps, width, merged, w, size)
        return max(best, float(table.take(flat).max()))
    ends = _BLOCK_ENDS[None, :] * step[:, None]
    ends += start[:, None]
    ends[:, -1] = stop  # (n_right, n_blocks + 1)
    cells = _cells(merged, w, float(start.min()), float(stop.max()))
    w_right = w[np.searchsorted(merged, right, side="right")] + size
    w_ends = _w_below(cells, ends, merged, w)
    widest = np.maximum(w_right[:, None] - w_ends[:, :-1] - size, 0)
    narrow = np.maximum(w_right[:, None] - w_ends[:, 1:] - size, 0)
    in_u_hi, in_r_hi = np.divmod(widest, stride)
    in_u_lo, in_r_lo = np.divmod(narrow, stride)
    if peaky_is_r:
        bounds = bound.take(in_u_lo * stride + in_r_hi)
    else:
        bounds = bound.take(in_u_hi * stride + in_r_lo)
    bounds = bounds.ravel()
    done = np.zeros(bounds.size, dtype=bool)
    for first_round in (True, False):
        todo = np.flatnonzero(bounds > best)
        if first_round and todo.size > _FIRST_BLOCKS:  # the most promising blocks first
            todo = todo[np.argpartition(bounds[todo], -_FIRST_BLOCKS)[-_FIRST_BLOCKS:]]
        elif not first_round:
            todo = todo[~done[todo]]
        if todo.size == 0:
            continue
        done[todo] = True
        rows, blocks = np.divmod(todo, _BLOCK_ENDS.size - 1)
        cols = blocks[:, None] * _BLOCK + _BLOCK_COLS[None, :]  # (k, 20)
        left = cols * step[rows, None]
        left += start[rows, None]
        last = cols == _NUM_LEFT - 1
        left[last] = np.broadcast_to(stop[rows, None], left.shape)[last]
        flat = w_right[rows, None] - _w_below(cells, left, merged, w)
        best = max(best, float(table.take(flat).max()))
    return best


def _single_indices(us, rs, merged, w, size):
    """Table indices of the single thresholds (predict positive when ``x >= t``)."""
    lo_all = min(us[0], rs[0])
    hi_all = max(us[-1], rs[-1])
    num_single = int(np.ceil((hi_all - lo_all) * NUM_THRESHOLDS_PER_UNIT))
    thresholds = _torch_linspace_float32(lo_all, hi_all, num_single).astype(np.float64)
    # #(v >= t) of each group: n_u - cum_u[k] and n_r - (k - cum_u[k]), k = #(v < t).
    return 2 * size - 1 - w[np.searchsorted(merged, thresholds, side="left")]


def _example_epsilon(us, rs, merged, w, med_u, med_r, tables, bounds, n_u, n_r) -> float:
    """Epsilon of one example from its sorted groups and their merged order."""
    stride = n_r + 1
    size = (n_u + 1) * stride
    retrain_pos, ratio, peaky_is_r, width = _orientation(us, rs, med_u, med_r)
    if ratio < _PEAKY_RATIO:
        return EPSILON_CAP
    best = float(_DISCARDED)
    flat = _single_indices(us, rs, merged, w, size)
    if flat.size:
        best = max(best, float(tables[1 if retrain_pos else 0].take(flat).max()))
    k = 1 if peaky_is_r else 0
    best = _interval_max(
        rs if peaky_is_r else us, width, merged, w, size, stride, peaky_is_r, tables[k], bounds[k], best
    )
    if best < 0:  # no attack survived: the official code would fail here
        return EPSILON_CAP
    return min(best, EPSILON_CAP)


def _bound_tables(tables: np.ndarray, n_u: int, n_r: int) -> np.ndarray:
    """Rectangle maxima of both tables, shape (2, size), for pruning interval blocks.

    Orientation 0 (unlearned positive): entry ``[a, b]`` is the max of the table over
    ``in_u <= a, in_r >= b``; orientation 1 (retrained positive): over ``in_u >= a, in_r <= b``.
    """
    t = tables[:, tables.shape[1] // 2 :].reshape(2, n_u + 1, n_r + 1)
    pos_u = np.maximum.accumulate(np.maximum.accumulate(t[0], axis=0)[:, ::-1], axis=1)[:, ::-1]
    pos_r = np.maximum.accumulate(np.maximum.accumulate(t[1], axis=1)[::-1], axis=0)[::-1]
    return np.stack([pos_u, pos_r]).reshape(2, -1)


def _prepare(u_t: np.ndarray, r_t: np.ndarray):
    """Sorted groups, merged values and ``w`` for a block of examples (rows)."""
    n_u, n_r = u_t.shape[1], r_t.shape[1]
    us = np.sort(u_t, axis=1)
    rs = np.sort(r_t, axis=1)
    both = np.concatenate([us, rs], axis=1)
    order = np.argsort(both, axis=1, kind="stable")
    merged = np.take_along_axis(both, order, axis=1)
    w = np.zeros((merged.shape[0], n_u + n_r + 1), dtype=np.intp)
    np.cumsum(order < n_u, axis=1, out=w[:, 1:])
    w *= n_r
    w += np.arange(n_u + n_r + 1)
    return us, rs, merged, w


def _attack_counts(u, r) -> dict:
    """Debug/test hook: per-attack counts of one example, in the official order.

    Parameters
    ----------
    u, r : array_like, shape (n_models_u,) and (n_models_r,)

    Returns
    -------
    dict
        ``"interval"`` and ``"single"``: pairs ``(#unlearned, #retrained)`` predicted positive,
        arrays of shape (n_attacks,); ``"retrain_pos"``, ``"peaky_is_r"``, ``"ratio"``.
    """
    u = np.asarray(u, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    n_u, n_r = u.size, r.size
    stride, size = n_r + 1, (n_u + 1) * (n_r + 1)
    us, rs, merged, w = (a[0] for a in _prepare(u[None, :], r[None, :]))
    retrain_pos, ratio, peaky_is_r, width = _orientation(us, rs, np.median(u), np.median(r))
    flat = np.maximum(_interval_indices(rs if peaky_is_r else us, width, merged, w, size) - size, 0).ravel()
    single = _single_indices(us, rs, merged, w, size) - size
    return {
        "interval": (flat // stride, flat % stride),
        "single": (single // stride, single % stride),
        "retrain_pos": retrain_pos,
        "peaky_is_r": peaky_is_r,
        "ratio": ratio,
    }


def per_example_epsilons(
    outputs_unlearned, outputs_retrained, *, delta: float = DELTA, num_threads: int | None = None
) -> np.ndarray:
    """Per-example epsilon of the official metric.

    Parameters
    ----------
    outputs_unlearned : array_like, shape (n_models_u, n_examples)
        Statistic of every forget example under each unlearned model.
    outputs_retrained : array_like, shape (n_models_r, n_examples)
        The same under each retrained model; ``n_models_r`` may differ from ``n_models_u``.
    delta : float, default 1e-5
        The delta of (epsilon, delta)-indistinguishability.
    num_threads : int, optional
        Worker threads (numpy releases the GIL); default: the number of CPUs, at most 8.

    Returns
    -------
    numpy.ndarray of float64, shape (n_examples,)
        Epsilons in [0, 50]; 50 for the peaky cap and for perfect separation.

    Raises
    ------
    ValueError
        If the inputs are not 2-D, disagree on the number of examples, have fewer than 2 models
        in a group, or contain NaN or infinite values.
    """
    u, r = _validate_outputs(outputs_unlearned, outputs_retrained)
    n_u, n_examples = u.shape
    n_r = r.shape[0]
    med_u = np.median(u, axis=0)
    med_r = np.median(r, axis=0)
    tables = _orientation_tables(n_u, n_r, delta)
    bounds = _bound_tables(tables, n_u, n_r)
    u_t = np.ascontiguousarray(u.T)
    r_t = np.ascontiguousarray(r.T)
    out = np.empty(n_examples, dtype=np.float64)

    def work(start: int) -> None:
        sl = slice(start, min(start + _CHUNK, n_examples))
        us, rs, merged, w = _prepare(u_t[sl], r_t[sl])
        for k, e in enumerate(range(sl.start, sl.stop)):
            out[e] = _example_epsilon(us[k], rs[k], merged[k], w[k], med_u[e], med_r[e], tables, bounds, n_u, n_r)

    starts = range(0, n_examples, _CHUNK)
    if num_threads is None:
        num_threads = min(os.cpu_count() or 1, 8)
    num_threads = max(1, min(int(num_threads), len(starts)))
    if num_threads == 1:
        for s in starts:
            work(s)
    else:
        with ThreadPoolExecutor(max_workers=num_threads) as pool:
            list(pool.map(work, starts))
    return out


# ---------------------------------------------------------------------------------------------
# Points, F and the final score.


def max_epsilon(n_models: int) -> float:
    """``ceil(log(N - 1))``, the end of the last bucket (7 for N = 512)."""
    n_models = int(n_models)
    if n_models < 2:
        raise ValueError(f"n_models must be at least 2, got {n_models}")
    return float(np.ceil(np.log(n_models - 1)))


def epsilon_points(epsilons, n_models: int) -> np.ndarray:
    """Points H of each example from its epsilon.

    Buckets ``[0, 0.5), [0.5, 1), ...`` while the bucket end is at most ``ceil(log(N - 1))``,
    worth ``1, 1/2, 1/4, ...``; an epsilon at or beyond the last end (50 and inf included) and
    NaN earn 0.

    Parameters
    ----------
    epsilons : array_like, shape (n_examples,)
        Per-example epsilons, e.g. from :func:`per_example_epsilons`.
    n_models : int
        N; with unequal groups pass ``min(n_models_u, n_models_r)``.

    Returns
    -------
    numpy.ndarray of float64, shape (n_examples,)
    """
    eps = np.asarray(_to_numpy(epsilons), dtype=np.float64)
    n_buckets = int(round(max_epsilon(n_models) / BUCKET_SIZE))
    points = np.zeros(eps.shape, dtype=np.float64)
    ok = np.isfinite(eps)
    # First bucket k with eps < (k + 1) * 0.5, i.e. k = floor(2 * eps) (exact in binary).
    k = np.maximum(np.floor(eps[ok] / BUCKET_SIZE), 0.0)
    inside = k < n_buckets
    vals = np.zeros(k.shape)
    vals[inside] = np.ldexp(1.0, -k[inside].astype(np.int64))
    points[ok] = vals
    return points


def forgetting_quality(outputs_unlearned, outputs_retrained, *, delta: float = DELTA) -> float:
    """Forgetting quality F: mean points over the forget examples.

    Parameters
    ----------
    outputs_unlearned : array_like, shape (n_models_u, n_examples)
    outputs_retrained : array_like, shape (n_models_r, n_examples)
    delta : float, default 1e-5

    Returns
    -------
    float in [0, 1]
        Buckets use ``N = min(n_models_u, n_models_r)``.
    """
    eps = per_example_epsilons(outputs_unlearned, outputs_retrained, delta=delta)
    n = min(np.shape(outputs_unlearned)[0], np.shape(outputs_retrained)[0])
    return float(np.mean(epsilon_points(eps, n)))


def final_score(f, ra_unlearned, ra_retrained, ta_unlearned, ta_retrained) -> float:
    """``F * (RA_u / RA_r) * (TA_u / TA_r)``; the ratios are not capped at 1.

    Parameters
    ----------
    f : float
        Forgetting quality.
    ra_unlearned, ra_retrained, ta_unlearned, ta_retrained : float
        Retain and test accuracies, each already averaged over its group's models.

    Returns
    -------
    float
    """
    vals = [float(v) for v in (f, ra_unlearned, ra_retrained, ta_unlearned, ta_retrained)]
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"final_score needs finite inputs, got {vals}")
    if vals[2] <= 0 or vals[4] <= 0:
        raise ValueError(f"retrained accuracies must be positive, got RA_r={vals[2]}, TA_r={vals[4]}")
    f, ra_u, ra_r, ta_u, ta_r = vals
    return f * (ra_u / ra_r) * (ta_u / ta_r)
