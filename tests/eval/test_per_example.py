"""U-LiRA (eval.ulira) and KLoM (eval.klom) on hand-built distributions, against brute-force references."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from eval import klom, ulira


def _normal(rng, n_models, n_examples, loc=0.0, scale=1.0):
    return loc + scale * rng.standard_normal((n_models, n_examples))


# -----------------------------------------------------------------------------------------------
# U-LiRA


def _ulira_brute_force(u, r):
    """The protocol written as loops: pair k leaves out unlearned k % n_u and retrained k % n_r."""
    n_u, n_r = len(u), len(r)
    acc = np.zeros(u.shape[1])
    for e in range(u.shape[1]):
        right = 0.0
        for k in range(max(n_u, n_r)):
            iu, ir = k % n_u, k % n_r
            fu, fr = np.delete(u[:, e], iu), np.delete(r[:, e], ir)
            su, sr = fu.std(ddof=1), fr.std(ddof=1)
            floor = max(ulira.MIN_STD, ulira.MIN_STD_RATIO * max(su, sr))
            su, sr = max(su, floor), max(sr, floor)

            def llr(x):
                return norm.logpdf(x, fu.mean(), su) - norm.logpdf(x, fr.mean(), sr)

            right += (np.sign(llr(u[iu, e])) + 1) / 2 + (1 - np.sign(llr(r[ir, e]))) / 2
        acc[e] = right / (2 * max(n_u, n_r))
    return acc


@pytest.mark.parametrize("n_u, n_r", [(5, 5), (3, 7), (8, 4)])
def test_ulira_matches_the_protocol_written_as_loops(n_u, n_r):
    rng = np.random.default_rng(n_u * 10 + n_r)
    u, r = _normal(rng, n_u, 30, 0.5, 1.3), _normal(rng, n_r, 30)
    u[:, 0] = 2.0  # a constant column (floored spread)
    np.testing.assert_allclose(ulira.ulira_accuracies(u, r), _ulira_brute_force(u, r), atol=1e-12)


def test_ulira_identical_distributions_are_at_chance():
    rng = np.random.default_rng(0)
    acc = ulira.ulira_accuracies(_normal(rng, 16, 4000), _normal(rng, 16, 4000))
    assert acc.shape == (4000,)
    assert acc.mean() == pytest.approx(0.5, abs=0.01)
    # unequal group sizes: still balanced, still unbiased
    assert ulira.ulira_accuracies(_normal(rng, 5, 4000), _normal(rng, 20, 4000)).mean() == pytest.approx(0.5, abs=0.01)
    assert ulira.ulira_forgetting_score(acc) > 0.97


def test_ulira_well_separated_distributions_are_told_apart():
    rng = np.random.default_rng(1)
    acc = ulira.ulira_accuracies(_normal(rng, 16, 500, loc=10.0), _normal(rng, 16, 500))
    assert acc.mean() > 0.99
    assert ulira.ulira_forgetting_score(acc) < 0.02
    # a shift of 2 standard deviations: the optimal balanced test is right with probability Phi(1)
    acc = ulira.ulira_accuracies(_normal(rng, 64, 2000, loc=2.0), _normal(rng, 64, 2000))
    assert acc.mean() == pytest.approx(norm.cdf(1.0), abs=0.02)


def test_ulira_constant_columns():
    rng = np.random.default_rng(2)
    const = np.full((8, 20), 3.0)
    np.testing.assert_array_equal(ulira.ulira_accuracies(const, const), 0.5)  # a tie everywhere
    np.testing.assert_array_equal(ulira.ulira_accuracies(const, const + 1.0), 1.0)
    # identical runs (the `none` method) against spread-out retrained models: told apart
    assert ulira.ulira_accuracies(const, _normal(rng, 8, 20, loc=3.0)).mean() > 0.9


def test_ulira_forgetting_score_by_hand():
    assert ulira.ulira_forgetting_score(0.5) == 1.0
    assert ulira.ulira_forgetting_score([0.7, 0.8]) == pytest.approx(0.5)  # mean 0.75
    assert ulira.ulira_forgetting_score(0.25) == pytest.approx(0.5)  # wrong is as informative
    assert ulira.ulira_forgetting_score(1.0) == 0.0


def test_ulira_validates():
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="at least 3 models"):
        ulira.ulira_accuracies(_normal(rng, 2, 5), _normal(rng, 8, 5))
    with pytest.raises(ValueError, match="same number of examples"):
        ulira.ulira_accuracies(_normal(rng, 4, 5), _normal(rng, 4, 6))
    bad = _normal(rng, 4, 5)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ulira.ulira_accuracies(bad, _normal(rng, 4, 5))


# -----------------------------------------------------------------------------------------------
# KLoM


def test_klom_gaussian_by_hand():
    # u = [-1, 1]: mean 0, std sqrt(2); r = [-1, 3]: mean 1, std 2 sqrt(2)
    # KL = log(s_r / s_u) + (s_u^2 + (mu_u - mu_r)^2) / (2 s_r^2) - 1/2 = log 2 + 3/16 - 1/2
    u = np.array([[-1.0], [1.0]])
    r = np.array([[-1.0], [3.0]])
    assert klom.klom(u, r)[0] == pytest.approx(math.log(2) + 3 / 16 - 0.5)
    assert klom.klom(u, u)[0] == 0.0


def _histogram_reference(u, r, bins=20, floor=1e-5):
    """The authors' estimator per example with numpy's histogram on the shared range."""
    out = []
    for e in range(u.shape[1]):
        lo, hi = min(u[:, e].min(), r[:, e].min()), max(u[:, e].max(), r[:, e].max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
        p = np.histogram(u[:, e], edges)[0] / len(u)
        q = np.histogram(r[:, e], edges)[0] / len(r)
        m = p > 0
        out.append(np.sum(p[m] * np.log(p[m] / np.maximum(q[m], floor))))
    return np.array(out)


def test_klom_histogram_matches_numpy_histogram():
    rng = np.random.default_rng(4)
    u, r = _normal(rng, 40, 25, 0.7, 1.5), _normal(rng, 30, 25)
    u[:, 3] = r[:, 3] = 1.0  # one value everywhere: KLoM 0
    got = klom.klom(u, r, estimator="histogram")
    np.testing.assert_allclose(got, _histogram_reference(u, r), rtol=1e-12, atol=1e-12)
    assert got[3] == 0.0
    # disjoint supports: every unlearned bin meets an empty retrained one, KL = log(1 / 1e-5)
    assert klom.klom(np.zeros((4, 1)), np.ones((4, 1)), estimator="histogram")[0] == pytest.approx(math.log(1e5))


def test_klom_identical_and_well_separated():
    rng = np.random.default_rng(5)
    same = klom.klom(_normal(rng, 32, 2000), _normal(rng, 32, 2000))
    assert same.shape == (2000,) and (same >= 0).all()
    assert np.median(same) < 0.1
    apart = klom.klom(_normal(rng, 32, 200, loc=10.0), _normal(rng, 32, 200))
    assert np.percentile(apart, 5) > 20  # ~ 10^2 / 2 = 50
    assert klom.klom_forgetting_score(same) > 0.8 and klom.klom_forgetting_score(apart) < 0.01


def test_klom_degenerate_spreads():
    rng = np.random.default_rng(6)
    const = np.full((8, 10), 2.0)
    np.testing.assert_array_equal(klom.klom(const, const), 0.0)
    assert np.isfinite(klom.klom(const, const + 1.0)).all() and (klom.klom(const, const + 1.0) > 1e4).all()
    # identical runs against a spread: log(100) - 1/2 plus the shift term, large but finite
    none_like = klom.klom(const, _normal(rng, 8, 10, loc=2.0))
    assert np.isfinite(none_like).all() and (none_like > math.log(100) - 0.5 - 1e-9).all()


def test_klom_percentiles_and_bound():
    assert klom.klom_percentiles(np.arange(101.0)) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert klom.klom_percentiles([1.0, 3.0], q=(50,)) == {"p50": 2.0}
    with pytest.raises(ValueError, match="non-empty 1-D"):
        klom.klom_percentiles([])
    kl = np.array([0.0, 0.02, 0.5, 2.0, 50.0])
    bound = klom.tv_bound_complement(kl)
    np.testing.assert_allclose(bound, 1 - np.minimum(np.sqrt(kl / 2), np.sqrt(1 - np.exp(-kl))))
    assert bound[0] == 1.0 and (np.diff(bound) < 0).all() and bound[-1] < 1e-9
    # the bound holds for two unit Gaussians a distance d apart: TV = 2 Phi(d/2) - 1, KL = d^2 / 2
    for d in (0.1, 1.0, 3.0):
        assert 1 - (2 * norm.cdf(d / 2) - 1) >= klom.tv_bound_complement(d * d / 2)


def test_klom_validates():
    with pytest.raises(ValueError, match="unknown KLoM estimator"):
        klom.klom(np.zeros((3, 2)), np.zeros((3, 2)), estimator="kde")
    with pytest.raises(ValueError, match="at least 2 models"):
        klom.klom(np.zeros((1, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="2-D"):
        klom.klom(np.zeros(3), np.zeros(3))
