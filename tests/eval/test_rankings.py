"""Rankings across forget sets (eval.rankings): ranks, spread, Kendall's tau-b, references left out."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from eval import rankings

REFS = ("none", "retrain")


def _scores(**sets) -> pd.DataFrame:
    """Methods a, b, c, d (and the references when given) x forget sets."""
    n = len(next(iter(sets.values())))
    index = ["a", "b", "c", "d", "none", "retrain"][:n]
    return pd.DataFrame(sets, index=index, dtype=float)


def test_identical_rankings_give_tau_one():
    s = _scores(s1=[0.4, 0.3, 0.2, 0.1], s2=[0.8, 0.5, 0.45, 0.0], s3=[0.4, 0.3, 0.2, 0.1])
    tau = rankings.kendall_tau_matrix(s)
    np.testing.assert_allclose(tau.to_numpy(), np.ones((3, 3)))
    assert list(tau.index) == list(tau.columns) == ["s1", "s2", "s3"]
    assert rankings.mean_off_diagonal(tau) == pytest.approx(1.0)


def test_reversed_rankings_give_tau_minus_one():
    s = _scores(s1=[0.4, 0.3, 0.2, 0.1], s2=[0.1, 0.2, 0.3, 0.4])
    tau = rankings.kendall_tau_matrix(s)
    assert tau.loc["s1", "s2"] == pytest.approx(-1) and tau.loc["s2", "s1"] == pytest.approx(-1)
    assert np.diag(tau.to_numpy()) == pytest.approx([1, 1])
    assert rankings.mean_off_diagonal(tau) == pytest.approx(-1)


def test_hand_computed_tie():
    # s1 orders a > b > c > d; s2 ties b and c. Of the 6 pairs, 5 are concordant, (b, c) is tied in s2 only:
    # tau-b = (5 - 0) / sqrt((6 - 0) * (6 - 1)) = 5 / sqrt(30)
    s = _scores(s1=[4, 3, 2, 1], s2=[4, 3, 3, 1])
    assert rankings.kendall_tau_matrix(s).loc["s1", "s2"] == pytest.approx(5 / math.sqrt(30))
    assert 5 / math.sqrt(30) == pytest.approx(stats.kendalltau([4, 3, 2, 1], [4, 3, 3, 1]).statistic)
    # ranks: 1 = best; the tied pair shares the average of ranks 2 and 3
    np.testing.assert_array_equal(rankings.score_ranks(s)["s2"].to_numpy(), [1, 2.5, 2.5, 4])


def test_references_are_left_out_of_tau_but_kept_in_the_table():
    # the valid entries a..d are reversed between the sets; the fixed ends (retrain on top, none at 0) agree
    s = _scores(s1=[0.4, 0.3, 0.2, 0.1, 0.0, 0.9], s2=[0.1, 0.2, 0.3, 0.4, 0.0, 0.9])
    with_refs = rankings.kendall_tau_matrix(s).loc["s1", "s2"]
    without = rankings.kendall_tau_matrix(s, exclude=REFS).loc["s1", "s2"]
    assert without == pytest.approx(-1) and with_refs > -0.2, "the references pull tau up"
    assert (rankings.common_counts(s, exclude=REFS).to_numpy() == 4).all()
    table = rankings.ranking_summary(s, references=REFS)
    assert set(table.index) == set(s.index)
    assert table.loc[["none", "retrain"], "reference"].all() and not table.loc[list("abcd"), "reference"].any()
    assert table.index[0] == "retrain" and table.loc["retrain", "rank_s1"] == 1  # ranked among all rows
    assert table.loc["none", "rank_s2"] == 6


def test_missing_scores_are_not_ranked_and_left_out_of_their_pairs():
    s = _scores(s1=[0.4, 0.3, 0.2, 0.1], s2=[0.4, 0.3, np.nan, 0.1], s3=[0.1, 0.2, 0.3, 0.4])
    ranks = rankings.score_ranks(s)
    assert np.isnan(ranks.loc["c", "s2"]) and ranks.loc["d", "s2"] == 3
    spread = rankings.score_spread(s)
    assert spread.loc["c", "n_sets"] == 2 and spread.loc["c", "mean"] == pytest.approx(0.25)
    assert spread.loc["c", "std"] == pytest.approx(np.std([0.2, 0.3], ddof=1))
    assert (spread.loc["c", "min"], spread.loc["c", "max"]) == (0.2, 0.3)
    n = rankings.common_counts(s)
    assert n.loc["s1", "s2"] == 3 and n.loc["s1", "s3"] == 4 and n.loc["s2", "s2"] == 3
    tau = rankings.kendall_tau_matrix(s)
    assert tau.loc["s1", "s2"] == pytest.approx(1) and tau.loc["s2", "s3"] == pytest.approx(-1)
    assert rankings.mean_off_diagonal(tau) == pytest.approx((1 - 1 - 1) / 3)
    table = rankings.ranking_summary(s)
    assert table.loc["c", "mean_rank"] == pytest.approx((3 + 2) / 2)


def test_degenerate_cases_are_nan_not_errors():
    one = _scores(s1=[0.4, np.nan, np.nan, np.nan], s2=[0.3, 0.2, np.nan, np.nan])
    assert np.isnan(rankings.kendall_tau_matrix(one).loc["s1", "s2"])  # one common method
    tied = _scores(s1=[0.0, 0.0, 0.0], s2=[0.3, 0.2, 0.1])
    assert np.isnan(rankings.kendall_tau_matrix(tied).loc["s1", "s2"])  # s1 ties them all
    assert math.isnan(rankings.mean_off_diagonal(np.full((2, 2), np.nan)))
    missing = rankings.score_spread(_scores(s1=[0.1, np.nan], s2=[0.2, np.nan]))
    assert missing.loc["b", "n_sets"] == 0 and np.isnan(missing.loc["b"][["mean", "std", "min", "max"]]).all()


def test_null_tau_sd():
    assert rankings.null_tau_sd(2) == pytest.approx(1.0)  # tau of two items is +-1
    assert rankings.null_tau_sd(9) == pytest.approx(math.sqrt(2 * 23 / (9 * 9 * 8)))
    assert math.isnan(rankings.null_tau_sd(1))


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="DataFrame"):
        rankings.score_ranks(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="shape"):
        rankings.score_spread(pd.DataFrame(index=["a", "b"]))
    with pytest.raises(ValueError, match="square"):
        rankings.mean_off_diagonal(np.zeros((2, 3)))


def test_figure_is_written(tmp_path):
    from eval import plots

    s = _scores(s1=[0.4, 0.3, 0.2, 0.1, 0.0, 0.5], s2=[0.1, np.nan, 0.3, 0.4, 0.0, 0.5])
    tau = rankings.kendall_tau_matrix(s, exclude=REFS)
    path = plots.forget_set_rankings(s, tau, tmp_path / "kendall_tau.png", references=set(REFS))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
