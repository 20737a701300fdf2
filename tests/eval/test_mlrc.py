"""Tests of eval.mlrc against a literal transcription of MLRC-Bench's evaluation code."""

import math

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn import linear_model, model_selection  # noqa: E402
from sklearn.metrics import make_scorer  # noqa: E402

from eval import mlrc  # noqa: E402

# --------------------------------------------------------------------------------------------
# Oracle: MLRC's loops, written out (unlearned = 1, retrained = 0).


def _fpr(y_true, y_pred):
    return np.sum(np.logical_and(y_pred == 1, y_true == 0)) / np.sum(y_true == 0)


def _fnr(y_true, y_pred):
    return np.sum(np.logical_and(y_pred == 0, y_true == 1)) / np.sum(y_true == 1)


def _oracle_threshold_attack(u, r):
    samples = np.concatenate((r, u))
    labels = np.array([0] * len(r) + [1] * len(u))
    fprs, fnrs = [], []
    for thresh in sorted(samples):
        ypred = (samples > thresh).astype(int)
        fprs.append(_fpr(labels, ypred))
        fnrs.append(_fnr(labels, ypred))
    return fprs, fnrs


def _oracle_lr_attack(u, r):
    samples = np.concatenate((r, u)).reshape((-1, 1))
    labels = np.array([0] * len(r) + [1] * len(u))
    cv = model_selection.StratifiedShuffleSplit(n_splits=2, random_state=0)
    scores = model_selection.cross_validate(
        linear_model.LogisticRegression(),
        samples,
        labels,
        cv=cv,
        scoring={"fpr": make_scorer(_fpr), "fnr": make_scorer(_fnr)},
    )
    return np.mean(scores["test_fpr"]), np.mean(scores["test_fnr"])


def _oracle_epsilon(fprs, fnrs, delta):
    per_attack = [0.0]
    for p, n in zip(fprs, fnrs):
        if p == 0 and n == 0:
            per_attack.append(np.inf)
        elif p == 0 or n == 0:
            pass
        else:
            with np.errstate(invalid="ignore"):
                e1 = np.log(1.0 - delta - p) - np.log(n)
                e2 = np.log(1.0 - delta - n) - np.log(p)
            if np.isnan(e1) and np.isnan(e2):
                per_attack.append(np.inf)
            else:
                per_attack.append(np.nanmax([e1, e2]))
    return np.nanmax(per_attack)


def _oracle_epsilons(outputs_u, outputs_r, delta=0.01):
    out = []
    for i in range(outputs_u.shape[1]):
        fprs, fnrs = _oracle_threshold_attack(outputs_u[:, i], outputs_r[:, i])
        p, n = _oracle_lr_attack(outputs_u[:, i], outputs_r[:, i])
        out.append(_oracle_epsilon(fprs + [p], fnrs + [n], delta))
    return np.array(out)


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seed,n_u,n_r,discrete", [(0, 10, 10, False), (1, 10, 10, True), (2, 16, 12, False), (3, 6, 9, True)]
)
def test_epsilons_match_mlrc_loops(seed, n_u, n_r, discrete):
    rng = np.random.default_rng(seed)
    n_examples = 4
    scale = rng.lognormal(0, 0.5, n_examples)
    u = rng.normal(size=(n_u, n_examples)) * scale + rng.normal(0, 0.7, n_examples)
    r = rng.normal(size=(n_r, n_examples)) * scale
    u[:, 0] += 10  # fully separated: inf
    if discrete:
        u, r = np.round(u), np.round(r)
    got = mlrc.mlrc_per_example_epsilons(u, r)
    want = _oracle_epsilons(u, r)
    np.testing.assert_array_equal(got, want)
    assert got[0] == np.inf
    f = mlrc.mlrc_forgetting_quality(u, r)
    assert f == pytest.approx(np.mean(mlrc.mlrc_epsilon_points(want)))


def test_points_bins():
    eps = np.array([0.0, 0.49, 0.5, 1.0, 5.99, 6.0, 50.0, np.inf])
    expected = [1.0, 1.0, 0.5, 0.25, 2.0**-11, 2.0**-12, 2.0**-12, 2.0**-12]
    assert mlrc.mlrc_epsilon_points(eps).tolist() == expected


def test_identical_groups():
    values = np.linspace(0, 1, 10)[:, None]
    # Thresholds: FPR = 1 - FNR at every cut, both terms negative -> 0. The logistic
    # regression sees no signal either (its rates come from the same data).
    eps = mlrc.mlrc_per_example_epsilons(values, values[::-1].copy())
    assert eps[0] == _oracle_epsilons(values, values[::-1].copy())[0]


def test_statistic_is_cross_entropy_to_own_prediction():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 4, (3, 7, 10)).astype(np.float32)
    got = mlrc.mlrc_statistic(logits)
    assert got.shape == (3, 7)
    x = torch.from_numpy(logits.astype(np.float64)).reshape(-1, 10)
    want = torch.nn.CrossEntropyLoss(reduction="none")(x, x.argmax(-1)).numpy().reshape(3, 7)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.all(got >= 0)
    # Label-free and extreme-safe; an all-NaN row counts as zeros: log(C).
    extreme = np.array([[1000.0, -1000.0, 0.0], [np.nan, np.nan, np.nan]])
    out = mlrc.mlrc_statistic(extreme)
    assert out[0] == pytest.approx(0.0, abs=1e-12)
    assert out[1] == pytest.approx(math.log(3))
    np.testing.assert_array_equal(mlrc.mlrc_statistic(torch.from_numpy(logits)), got)


def test_validation():
    with pytest.raises(ValueError):
        mlrc.mlrc_per_example_epsilons(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        mlrc.mlrc_per_example_epsilons(np.full((4, 3), np.nan), np.zeros((4, 3)))
    with pytest.raises(ValueError):
        mlrc.mlrc_statistic(np.zeros(3))


def test_parallel_blocks_equal_sequential():
    # Threads instead of processes, to test the block split without the process start-up cost.
    from joblib import parallel_config

    rng = np.random.default_rng(9)
    u, r = rng.normal(size=(6, 9)), rng.normal(0.3, 1, size=(6, 9))
    with parallel_config(backend="threading"):
        blocks = mlrc.mlrc_per_example_epsilons(u, r, n_jobs=2)
    np.testing.assert_array_equal(mlrc.mlrc_per_example_epsilons(u, r, n_jobs=1), blocks)
