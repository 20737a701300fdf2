"""Tests of eval.privacy against hand-computed values and scikit-learn run directly."""

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

from eval import privacy


def test_cross_entropy_losses_by_hand():
    logits = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    y = np.array([0, 0, 0])
    expected = [math.log(2), math.log(1 + math.exp(-2)), math.log(1 + math.exp(3))]
    np.testing.assert_allclose(privacy.cross_entropy_losses(logits, y), expected)
    # leading model axis kept: (n_models, n_examples, C) -> (n_models, n_examples)
    stacked = np.stack([logits, logits + 5.0])
    out = privacy.cross_entropy_losses(stacked, y)
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out[1], expected)  # shift invariance
    with pytest.raises(ValueError, match="do not match"):
        privacy.cross_entropy_losses(logits, y[:2])


def test_loss_mia_separable_and_identical():
    members = np.zeros(50)
    nonmembers = np.full(80, 5.0)
    assert privacy.loss_mia_accuracy(members, nonmembers) == 1.0
    # identical losses: the attack predicts one class; the stratified test folds are balanced
    assert privacy.loss_mia_accuracy(np.ones(50), np.ones(50)) == 0.5


def test_loss_mia_matches_sklearn_on_balanced_data():
    rng = np.random.default_rng(1)
    m, nm = rng.exponential(0.5, 200), rng.exponential(1.0, 200)
    x = np.r_[nm, m][:, None]
    y = np.r_[np.zeros(200), np.ones(200)]
    ref = cross_val_score(
        LogisticRegression(), x, y, scoring="accuracy", cv=StratifiedShuffleSplit(n_splits=10, random_state=0)
    ).mean()
    assert privacy.loss_mia_accuracy(m, nm) == pytest.approx(ref)


def test_loss_mia_vectorized_over_models_and_validates():
    rng = np.random.default_rng(2)
    m, nm = rng.exponential(0.5, (3, 60)), rng.exponential(1.0, (3, 90))
    acc = privacy.loss_mia_accuracy(m, nm)
    assert acc.shape == (3,)
    for i in range(3):
        assert acc[i] == pytest.approx(privacy.loss_mia_accuracy(m[i], nm[i]))
    with pytest.raises(ValueError, match="same n_models"):
        privacy.loss_mia_accuracy(m, nm[:2])
    with pytest.raises(ValueError, match="at least 10"):
        privacy.loss_mia_accuracy(m[:, :5], nm)


def test_tow_by_hand():
    # (1 - 0.02)(1 - 0.04)(1 - 0.01)
    assert privacy.tow(0.90, 0.95, 0.85, 0.88, 0.99, 0.86) == pytest.approx(0.98 * 0.96 * 0.99)
    assert privacy.tow(0.5, 1.0, 0.7, 0.5, 1.0, 0.7) == 1.0
    runs = privacy.tow([0.9, 0.8], [1.0, 1.0], [0.7, 0.7], 0.8, 1.0, 0.7)  # broadcast over runs
    np.testing.assert_allclose(runs, [0.9, 1.0])


def test_tow_mia_replaces_forget_accuracy_factor():
    assert privacy.tow_mia(0.55, 0.95, 0.85, 0.50, 0.99, 0.86) == pytest.approx(0.95 * 0.96 * 0.99)
