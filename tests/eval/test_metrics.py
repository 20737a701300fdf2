"""Tests of eval.metrics against hand-derived cases and the literal oracle in reference_metric."""

import math

import numpy as np
import pytest

from eval import metrics
from tests.eval import reference_metric as ref

F32 = np.float32


def eps32(fpr, fnr, delta=1e-5):
    """One attack's epsilon, float32 as in the official code (for hand-derived expectations)."""
    a = np.log(F32(1 - delta) - F32(fpr)) - np.log(F32(fnr))
    b = np.log(F32(1 - delta) - F32(fnr)) - np.log(F32(fpr))
    return float(max(a, b, F32(0)))


def col(*values):
    """A single-example output array, shape (n_models, 1)."""
    return np.asarray(values, dtype=np.float64)[:, None]


# --------------------------------------------------------------------------------------------
# Hand-derived epsilons.


def test_identical_groups_give_zero():
    # Both groups hold the same 16 values: every attack catches the same number m of each
    # group, so FPR = m/16 and FNR = 1 - m/16; both terms are log((1-d-x)/(1-x)) < 0, clipped
    # to 0 (m = 0 and m = 16 are discarded). Hence epsilon is exactly 0 and H = 1.
    values = np.linspace(-1.3, 2.2, 16)
    u = values[:, None]
    r = values[::-1, None].copy()
    eps = metrics.per_example_epsilons(u, r)
    assert eps.tolist() == [0.0]
    assert metrics.epsilon_points(eps, 16).tolist() == [1.0]
    assert metrics.forgetting_quality(u, r) == 1.0


def test_one_overlap_each_side():
    # U = {0, 1, 2, 5}, R = {4.5, 6, 7, 8}: R has the larger median (positive). The best attack
    # leaves one point on the wrong side of each group (5 in U is between 4.5 and 6, so no
    # threshold or interval isolates R): FPR = FNR = 1/4, epsilon = log((3/4 - d) / (1/4)).
    u, r = col(0, 1, 2, 5.0), col(4.5, 6, 7, 8)
    eps = metrics.per_example_epsilons(u, r)
    assert eps[0] == eps32(0.25, 0.25)
    assert eps[0] == pytest.approx(math.log(3 - 4e-5), abs=1e-6)
    # N = 4: max_epsilon = ceil(log 3) = 2 -> buckets [0,.5) [.5,1) [1,1.5) [1.5,2).
    assert metrics.epsilon_points(eps, 4).tolist() == [0.25]


def test_ties_discrete_values():
    # U = {0,0,1,1}, R = {0,1,1,1}; R is positive (median 1 > 0.5), equal ranges. Single
    # thresholds in (0, 1]: FNR = 1/4, FPR = 2/4 -> log((1-d-1/2)/(1/4)) = log(2 - 4d). The
    # interval [0, 0] (positive = U after the equal-range swap): FNR = 2/4, FPR = 1/4, same value.
    u, r = col(0, 0, 1, 1), col(0, 1, 1, 1)
    eps = metrics.per_example_epsilons(u, r)
    assert eps[0] == eps32(0.5, 0.25)
    assert eps[0] == pytest.approx(math.log(2 - 4e-5), abs=1e-6)
    assert metrics.epsilon_points(eps, 4).tolist() == [0.5]


def test_fully_separated_is_capped():
    u, r = col(0, 1, 2, 3), col(10, 11, 12, 13.5)
    eps = metrics.per_example_epsilons(u, r)
    assert eps.tolist() == [50.0]
    assert metrics.epsilon_points(eps, 4).tolist() == [0.0]


def test_peaky_cap():
    assert metrics.per_example_epsilons(col(1, 1, 1, 1), col(0, 1, 2, 3)).tolist() == [50.0]
    # The retrained group may be the peaky one too.
    assert metrics.per_example_epsilons(col(0, 1, 2, 3), col(2, 2, 2, 2)).tolist() == [50.0]
    # Ratio just below 0.01 is capped; exactly 0.01 is not (strict "<").
    r = col(0.0, 0.3, 0.6, 1.0)
    assert metrics.per_example_epsilons(col(0.0, 0.005, 0.005, 0.0099), r).tolist() == [50.0]
    u = col(0.0, 0.005, 0.005, 0.01)
    got = metrics.per_example_epsilons(u, r)
    assert got[0] < 50.0
    assert got.tolist() == ref.reference_epsilons(u, r).tolist()


def test_degenerate_groups():
    # Both constant, different values: a threshold separates them perfectly -> inf -> 50.
    assert metrics.per_example_epsilons(col(1, 1, 1), col(2, 2, 2)).tolist() == [50.0]
    # Both constant at the same value: no attack survives (the official code fails an
    # assertion); the kit returns the cap.
    assert metrics.per_example_epsilons(col(3, 3, 3), col(3, 3, 3)).tolist() == [50.0]
    assert ref.reference_epsilons(col(3, 3, 3), col(3, 3, 3)).tolist() == [50.0]


# --------------------------------------------------------------------------------------------
# Points, F and the final score.


def test_bucket_edges():
    below = np.nextafter
    eps = np.array([0.0, below(0.5, 0), 0.5, below(1.0, 0), 1.0, 1.5, 2.0])
    expected = [1, 1, 0.5, 0.5, 0.25, 0.125, 0.0625]
    assert metrics.epsilon_points(eps, 512).tolist() == expected
    # N = 512: max_epsilon = ceil(log 511) = 7, 14 buckets, the last [6.5, 7) worth 2**-13.
    assert metrics.max_epsilon(512) == 7.0
    edge = np.array([6.5, below(7.0, 0), 7.0, 7.2, 50.0, np.inf, np.nan])
    assert metrics.epsilon_points(edge, 512).tolist() == [2.0**-13, 2.0**-13, 0, 0, 0, 0, 0]
    # N = 16: ceil(log 15) = 3 -> 6 buckets; N = 33: ceil(log 32) = 4; N = 4: ceil(log 3) = 2.
    assert metrics.epsilon_points([2.9, 3.0], 16).tolist() == [2.0**-5, 0.0]
    assert metrics.epsilon_points([3.9, 4.0], 33).tolist() == [2.0**-7, 0.0]
    assert metrics.epsilon_points([1.9, 2.0], 4).tolist() == [2.0**-3, 0.0]
    # N = 2: ceil(log 1) = 0, no bucket at all.
    assert metrics.epsilon_points([0.0], 2).tolist() == [0.0]
    grid = np.concatenate([np.arange(0, 8, 0.25), [below(0.5, 0), below(3.0, 0), 50.0]])
    for n in (2, 3, 4, 16, 33, 512):
        np.testing.assert_array_equal(metrics.epsilon_points(grid, n), ref.reference_points(grid, n))


def test_final_score():
    assert metrics.final_score(0.5, 0.9, 1.0, 0.8, 0.85) == pytest.approx(0.5 * 0.9 * 0.8 / 0.85)
    # Ratios are not capped at 1.
    assert metrics.final_score(0.25, 1.0, 0.5, 0.9, 0.45) == pytest.approx(1.0)
    assert metrics.final_score(0.0, 0.9, 0.9, 0.9, 0.9) == 0.0
    with pytest.raises(ValueError):
        metrics.final_score(0.5, 0.9, 0.0, 0.9, 0.9)
    with pytest.raises(ValueError):
        metrics.final_score(float("nan"), 0.9, 0.9, 0.9, 0.9)


# --------------------------------------------------------------------------------------------
# The fast implementation equals the literal oracle.


def _random_outputs(rng, n_u, n_r, n_examples, discrete=False):
    loc = rng.normal(0, 2, n_examples)
    scale = rng.lognormal(0, 0.6, n_examples)
    shift = rng.normal(0, 0.5, n_examples) * scale
    u = loc + shift + scale * rng.lognormal(0, 0.3, n_examples) * rng.normal(size=(n_u, n_examples))
    r = loc + scale * rng.normal(size=(n_r, n_examples))
    if discrete:  # ties and repeated values
        u, r = np.round(u * 2) / 2, np.round(r * 2) / 2
    return u, r


@pytest.mark.parametrize(
    "seed,n_u,n_r,n_examples,discrete",
    [
        (0, 4, 4, 12, False),
        (1, 4, 4, 12, True),
        (2, 16, 16, 10, False),
        (3, 16, 16, 10, True),
        (4, 33, 33, 6, False),
        (5, 33, 33, 6, True),
        (6, 16, 33, 6, False),
        (7, 33, 16, 6, True),
        (8, 5, 3, 10, False),
        (9, 2, 7, 10, True),
    ],
)
def test_matches_oracle(seed, n_u, n_r, n_examples, discrete):
    rng = np.random.default_rng(seed)
    u, r = _random_outputs(rng, n_u, n_r, n_examples, discrete)
    got = metrics.per_example_epsilons(u, r)
    want = ref.reference_epsilons(u, r)
    np.testing.assert_array_equal(got, want)
    n = min(n_u, n_r)
    f = metrics.forgetting_quality(u, r)
    assert f == pytest.approx(float(np.mean(ref.reference_points(want, n))), abs=1e-15)


def test_matches_oracle_official_size():
    rng = np.random.default_rng(11)
    u, r = _random_outputs(rng, 512, 512, 1)
    np.testing.assert_array_equal(metrics.per_example_epsilons(u, r), ref.reference_epsilons(u, r))


def test_threads_do_not_change_result():
    rng = np.random.default_rng(12)
    u, r = _random_outputs(rng, 8, 8, 40)
    np.testing.assert_array_equal(
        metrics.per_example_epsilons(u, r, num_threads=1), metrics.per_example_epsilons(u, r, num_threads=3)
    )


def test_left_grid_is_numpy_linspace():
    rng = np.random.default_rng(13)
    right = np.sort(rng.normal(0, 30, 50))
    for width in (0.0, 0.37, 3.1, 123.4):
        grid = metrics._left_grid(right, width)
        want = np.stack([np.linspace(t - width - 2.0, t - width + 2.0, num=400) for t in right])
        np.testing.assert_array_equal(grid, want)


def test_single_thresholds_are_torch_linspace():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(14)
    for _ in range(200):
        a = rng.normal(0, 20)
        b = a + rng.lognormal(0, 1.5)
        n = int(np.ceil((b - a) * 100))
        want = torch.linspace(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64), n).numpy()
        np.testing.assert_array_equal(metrics._torch_linspace_float32(a, b, n), want)
        np.testing.assert_array_equal(ref.torch_linspace_float32(a, b, n), want)
    for n in (0, 1, 2, 3):
        want = torch.linspace(torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64), n).numpy()
        np.testing.assert_array_equal(metrics._torch_linspace_float32(0.3, 0.7, n), want)


def test_epsilon_table_float32_values():
    table = metrics._epsilon_table(4, 8, 1e-5)
    assert table[4, 0] == np.inf  # FNR = FPR = 0
    assert table[0, 0] == -1 and table[4, 3] == -1 and table[2, 0] == -1  # one rate is 0
    assert table[3, 2] == np.float32(eps32(2 / 8, 1 / 4))


# --------------------------------------------------------------------------------------------
# The statistic.


def test_logit_scaled_confidence_matches_direct_softmax():
    rng = np.random.default_rng(20)
    logits = rng.normal(0, 5, (7, 10))
    labels = rng.integers(0, 10, 7)
    got = metrics.logit_scaled_confidence(logits, labels)
    np.testing.assert_allclose(got, ref.reference_logit_scaled_confidence(logits, labels), rtol=1e-9, atol=1e-9)
    # Leading model axis, torch input.
    stack = rng.normal(0, 3, (3, 7, 10))
    batched = metrics.logit_scaled_confidence(stack, labels)
    assert batched.shape == (3, 7)
    for m in range(3):
        np.testing.assert_array_equal(batched[m], metrics.logit_scaled_confidence(stack[m], labels))


def test_logit_scaled_confidence_extreme_logits():
    logits = np.array(
        [[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 0.0], [1e4, 1e4 - 1, -1e4], [200.0, 0.0, 0.0], [-5e3, -5e3, -5e3]]
    )
    labels = np.array([0, 0, 1, 0, 2])
    got = metrics.logit_scaled_confidence(logits, labels)
    assert np.all(np.isfinite(got))
    want = ref.reference_logit_scaled_confidence(logits, labels)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert got[0] == pytest.approx(-math.log(1e-45))  # p_wrong underflows to 0
    assert got[1] == pytest.approx(math.log(1e-45))
    assert got[4] == pytest.approx(math.log(1 / 3) - math.log(2 / 3))


def test_logit_scaled_confidence_float32_like_official():
    rng = np.random.default_rng(21)
    logits = (rng.normal(0, 4, (6, 10))).astype(np.float32)
    labels = rng.integers(0, 10, 6)
    # The official code: shift and exp in float32, then float64.
    z = logits.copy()
    z -= np.max(z, axis=1, keepdims=True)
    probs = np.array(np.exp(z), dtype=np.float64)
    probs /= np.sum(probs, axis=1, keepdims=True)
    p_y = probs[np.arange(6), labels]
    probs[np.arange(6), labels] = 0
    want = np.log(p_y + 1e-45) - np.log(np.sum(probs, axis=1) + 1e-45)
    before = logits.copy()
    got = metrics.logit_scaled_confidence(logits, labels)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(logits, before)  # input untouched
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(
        metrics.logit_scaled_confidence(torch.from_numpy(logits), torch.from_numpy(labels)), want
    )


def test_logit_scaled_confidence_validation():
    with pytest.raises(ValueError):
        metrics.logit_scaled_confidence(np.zeros((3, 4)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError):
        metrics.logit_scaled_confidence(np.zeros((3, 4)), np.array([0, 1, 4]))
    with pytest.raises(ValueError, match="NaN"):
        metrics.logit_scaled_confidence(np.array([[0.0, np.nan]]), np.array([0]))


# --------------------------------------------------------------------------------------------
# Input validation.


@pytest.mark.parametrize(
    "u_shape,r_shape",
    [
        ((4,), (4, 3)),
        ((4, 3, 1), (4, 3)),
        ((4, 3), (4, 2)),
        ((1, 3), (4, 3)),
        ((4, 3), (1, 3)),
        ((4, 0), (4, 0)),
    ],
)
def test_bad_shapes_raise(u_shape, r_shape):
    with pytest.raises(ValueError, match=r"\("):
        metrics.per_example_epsilons(np.zeros(u_shape), np.zeros(r_shape))


def test_non_finite_raise():
    u = np.random.default_rng(0).normal(size=(4, 3))
    r = u + 1
    bad = u.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        metrics.per_example_epsilons(bad, r)
    with pytest.raises(ValueError, match="NaN"):
        metrics.forgetting_quality(u, np.where(r > 1.5, np.nan, r))
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        metrics.per_example_epsilons(bad, r)


def _grid_aligned_outputs(rng, n, n_examples, cluster):
    """Values taken from the attacks' own grids (exact ties), U in [0, 1], R in [-0.5, 2]."""
    single = ref.torch_linspace_float32(-0.5, 2.0, 250).astype(np.float64)
    right = np.linspace((0.0 + 1.0) - 2.0, 1.0 + 2.0, num=400)
    left = np.concatenate([np.linspace(t - 1.0 - 2.0, t - 1.0 + 2.0, num=400) for t in right[::23]])
    pool = np.unique(np.concatenate([single, right, left]))
    u = np.empty((n, n_examples))
    r = np.empty((n, n_examples))
    for e in range(n_examples):
        centre = rng.uniform(0, 1)
        near = pool[np.abs(pool - centre) < cluster]  # few distinct, adjacent values
        pu, pr = near[(near > 0) & (near < 1)], near[(near > -0.5) & (near < 2)]
        u[:, e] = np.concatenate([[0.0, 1.0], rng.choice(pu, n - 2)])
        r[:, e] = np.concatenate([[-0.5, 2.0], rng.choice(pr, n - 2)])
    return u, r


@pytest.mark.parametrize("seed,cluster", [(0, 0.03), (1, 0.1), (2, 0.5)])
def test_attack_counts_match_oracle_with_exact_ties(seed, cluster):
    # Every attack's counts, not just the best epsilon: catches any "<" vs "<=" slip.
    rng = np.random.default_rng(200 + seed)
    u, r = _grid_aligned_outputs(rng, 8, 6, cluster)
    for e in range(u.shape[1]):
        for a, b in ((u[:, e], r[:, e]), (r[:, e], u[:, e])):
            got = metrics._attack_counts(a, b)
            want = ref.reference_attack_counts(a, b)
            assert got["retrain_pos"] == want["retrain_pos"]
            assert got["peaky_is_r"] == want["peaky_is_r"]
            for family in ("interval", "single"):
                for g, w in zip(got[family], want[family]):
                    np.testing.assert_array_equal(g, w, err_msg=family)


def test_attack_counts_match_oracle_random():
    rng = np.random.default_rng(300)
    for discrete in (False, True):
        u, r = _random_outputs(rng, 12, 7, 4, discrete)
        for e in range(u.shape[1]):
            got = metrics._attack_counts(u[:, e], r[:, e])
            want = ref.reference_attack_counts(u[:, e], r[:, e])
            for family in ("interval", "single"):
                for g, w in zip(got[family], want[family]):
                    np.testing.assert_array_equal(g, w, err_msg=family)


@pytest.mark.parametrize("seed,cluster", [(0, 0.05), (1, 0.5)])
def test_matches_oracle_with_exact_ties(seed, cluster):
    rng = np.random.default_rng(400 + seed)
    u, r = _grid_aligned_outputs(rng, 8, 12, cluster)
    np.testing.assert_array_equal(metrics.per_example_epsilons(u, r), ref.reference_epsilons(u, r))
    np.testing.assert_array_equal(metrics.per_example_epsilons(r, u), ref.reference_epsilons(r, u))
