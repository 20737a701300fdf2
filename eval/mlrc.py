"""MLRC-Bench's simpler variant of the unlearning metric.

Source: github.com/yunx-z/MLRC-Bench, ``MLAgentBench/benchmarks_base/machine_unlearning/env/
evaluation.py`` (commit 0471a5c2c1702b3c4acaa5d6d0cbbe5a6c061c55), dev phase. Written from its
definitions, not copied:

* statistic: cross-entropy of each model's logits against the model's *own* argmax (label-free),
  i.e. ``log sum_j exp(z_j - max z)``; rows that are all NaN count as all zeros;
* attacks per forget example, unlearned = class 1, retrained = class 0:
  every single threshold (``x > t`` for every observed value ``t``; computed here with
  ``sklearn.metrics.roc_curve(drop_intermediate=False)``, whose extra all-positive point is
  always discarded) plus a ``LogisticRegression`` on the 1-D statistic whose FPR/FNR are the
  means over ``StratifiedShuffleSplit(n_splits=2, random_state=0)`` (test size 10%);
* per attack, delta = 0.01: FPR = FNR = 0 gives inf; exactly one of them 0 discards it; else
  ``max(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR)`` ignoring NaN, and inf
  when both are NaN. epsilon = max over attacks and 0 (no cap at 50);
* points ``H = 2 / 2**n`` with ``n = digitize(eps, [0, 0.5, ..., 6])``: 13 bins of width 0.5,
  the last one open, so even an infinite epsilon earns ``2**-12``.

Differences from MLRC's setting: MLRC compares ``NUM_MODELS = 10`` unlearned models with ONE
retrained model whose logits get Gaussian noise (sigma = std of all unlearned statistics / 10)
to fake 10 retrained samples. This kit feeds real banks of retrained models instead, and allows
the two groups to differ in size (MLRC asserts equal sizes).
"""

from __future__ import annotations

import numpy as np

from eval.metrics import _to_numpy, _validate_outputs

__all__ = [
    "MLRC_DELTA",
    "MLRC_BINS",
    "mlrc_statistic",
    "mlrc_per_example_epsilons",
    "mlrc_epsilon_points",
    "mlrc_forgetting_quality",
]

MLRC_DELTA = 0.01
MLRC_BIN_WIDTH = 0.5
MLRC_BINS = 13


def mlrc_statistic(logits) -> np.ndarray:
    """Cross-entropy of each row against its own predicted class (label-free).

    Parameters
    ----------
    logits : array_like or torch.Tensor, shape (..., n_examples, n_classes)

    Returns
    -------
    numpy.ndarray of float64, shape (..., n_examples)
        ``log sum_j exp(z_j - max_j z_j)`` (>= 0); NaN where a row has some but not all NaN
        entries, as with torch's ``CrossEntropyLoss``.
    """
    x = np.array(_to_numpy(logits), dtype=np.float64)  # a copy
    if x.ndim < 2:
        raise ValueError(f"logits must have shape (..., n_examples, n_classes), got {x.shape}")
    x[np.all(np.isnan(x), axis=-1)] = 0.0
    with np.errstate(invalid="ignore"):
        partial = np.isnan(x).any(axis=-1)
        m = np.max(np.where(np.isnan(x), -np.inf, x), axis=-1, keepdims=True)
        ce = np.log(np.sum(np.exp(x - m), axis=-1))
    ce[partial] = np.nan
    return ce


def _attack_epsilons(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> float:
    """MLRC's ``compute_epsilon_s``: max over attacks (and 0) with its discard rules."""
    fpr = np.asarray(fpr, dtype=np.float64)
    fnr = np.asarray(fnr, dtype=np.float64)
    both = (fpr == 0) & (fnr == 0)
    keep = (fpr != 0) & (fnr != 0)
    best = np.inf if both.any() else 0.0
    if keep.any() and best < np.inf:
        p, n = fpr[keep], fnr[keep]
        with np.errstate(invalid="ignore", divide="ignore"):
            e1 = np.log(1.0 - delta - p) - np.log(n)
            e2 = np.log(1.0 - delta - n) - np.log(p)
        both_nan = np.isnan(e1) & np.isnan(e2)
        if both_nan.any():
            return float(np.inf)
        best = max(best, float(np.max(np.fmax(e1, e2))))
    return best


def _lr_splits(n_u: int, n_r: int, n_splits: int, random_state: int):
    from sklearn import model_selection

    labels = np.array([0] * n_r + [1] * n_u)
    # sklearn's default 10% test fold; at least one model of each group in it for small banks.
    test_size = max(2, int(np.ceil(0.1 * labels.size)))
    cv = model_selection.StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=random_state)
    return labels, list(cv.split(np.zeros((labels.size, 1)), labels))


def _epsilons_block(u: np.ndarray, r: np.ndarray, delta: float, labels, splits) -> np.ndarray:
    """Epsilons of the examples (columns) of one block; see :func:`mlrc_per_example_epsilons`."""
    from sklearn import linear_model
    from sklearn.metrics import roc_curve

    n_u, n_r = u.shape[0], r.shape[0]
    out = np.empty(u.shape[1], dtype=np.float64)
    for i in range(u.shape[1]):
        samples = np.concatenate([r[:, i], u[:, i]])
        # Every single threshold: rates from exact counts (roc_curve gives fp/n_r and tp/n_u).
        fpr_roc, tpr_roc, _ = roc_curve(labels, samples, drop_intermediate=False)
        fp = np.rint(fpr_roc * n_r)
        tp = np.rint(tpr_roc * n_u)
        fprs = [fp / n_r]
        fnrs = [(n_u - tp) / n_u]
        # Logistic regression, cross-validated.
        x = samples.reshape(-1, 1)
        split_fpr, split_fnr = [], []
        for train, test in splits:
            model = linear_model.LogisticRegression().fit(x[train], labels[train])
            pred = model.predict(x[test])
            y = labels[test]
            split_fpr.append(np.sum((pred == 1) & (y == 0)) / np.sum(y == 0))
            split_fnr.append(np.sum((pred == 0) & (y == 1)) / np.sum(y == 1))
        fprs.append([np.mean(split_fpr)])
        fnrs.append([np.mean(split_fnr)])
        out[i] = _attack_epsilons(np.concatenate(fprs), np.concatenate(fnrs), delta)
    return out


def mlrc_per_example_epsilons(
    outputs_unlearned,
    outputs_retrained,
    *,
    delta: float = MLRC_DELTA,
    n_splits: int = 2,
    random_state: int = 0,
    n_jobs: int | None = None,
) -> np.ndarray:
    """Per-example epsilon of MLRC-Bench's metric.

    Parameters
    ----------
    outputs_unlearned : array_like, shape (n_models_u, n_examples)
        Statistic (e.g. :func:`mlrc_statistic`) under each unlearned model.
    outputs_retrained : array_like, shape (n_models_r, n_examples)
        The same under each retrained model (a real bank here, see the module docstring).
    delta : float, default 0.01
    n_splits, random_state : int
        Cross-validation of the logistic-regression attack, as in MLRC.
    n_jobs : int, optional
        Processes (joblib) over blocks of examples; default: all CPUs from 256 examples on,
        else 1. Two logistic-regression fits per example dominate the cost (~20-40 ms).

    Returns
    -------
    numpy.ndarray of float64, shape (n_examples,)
        Epsilons in [0, inf]; no cap.
    """
    u, r = _validate_outputs(outputs_unlearned, outputs_retrained)
    n_u, n_examples = u.shape
    n_r = r.shape[0]
    labels, splits = _lr_splits(n_u, n_r, n_splits, random_state)
    if n_jobs is None:
        n_jobs = -1 if n_examples >= 256 else 1
    if n_jobs == 1:
        return _epsilons_block(u, r, delta, labels, splits)
    from joblib import Parallel, delayed, effective_n_jobs

    n_blocks = max(1, min(n_examples, 4 * effective_n_jobs(n_jobs)))
    edges = np.linspace(0, n_examples, n_blocks + 1).astype(int)
    parts = Parallel(n_jobs=n_jobs)(
        delayed(_epsilons_block)(u[:, a:b], r[:, a:b], delta, labels, splits)
        for a, b in zip(edges[:-1], edges[1:])
        if b > a
    )
    return np.concatenate(parts)


def mlrc_epsilon_points(epsilons) -> np.ndarray:
    """Points ``2 / 2**digitize(eps, [0, 0.5, ..., 6])``, shape (n_examples,).

    ``[0, 0.5)`` earns 1, ``[0.5, 1)`` 1/2, ..., ``[6, inf]`` ``2**-12``.
    """
    eps = np.asarray(_to_numpy(epsilons), dtype=np.float64)
    bins = np.arange(0, MLRC_BINS) * MLRC_BIN_WIDTH
    return 2.0 / 2.0 ** np.digitize(eps, bins)


def mlrc_forgetting_quality(outputs_unlearned, outputs_retrained, *, delta: float = MLRC_DELTA) -> float:
    """MLRC's forgetting quality F: mean of :func:`mlrc_epsilon_points` over examples.

    Parameters
    ----------
    outputs_unlearned : array_like, shape (n_models_u, n_examples)
    outputs_retrained : array_like, shape (n_models_r, n_examples)
    delta : float, default 0.01

    Returns
    -------
    float in (0, 1]
    """
    eps = mlrc_per_example_epsilons(outputs_unlearned, outputs_retrained, delta=delta)
    return float(np.mean(mlrc_epsilon_points(eps)))
