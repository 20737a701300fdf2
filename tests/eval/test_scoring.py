"""The score's bootstrap interval."""

import numpy as np
import pytest

from eval import klom, scoring


def _outputs(rng, m, n, shift):
    # 10-class logits whose true-class logit is shifted: shift > 0 means "more confident than retrained"
    logits = rng.normal(size=(m, n, 10)).astype(np.float32)
    logits[:, :, 0] += rng.normal(1.0, 0.3, size=(1, n)) + shift
    acc = rng.uniform(0.9, 1.0, size=m)
    return {"forget_logits": logits, "acc_retain": acc, "acc_forget": acc, "acc_test": acc, "acc_val": acc}


def test_bootstrap_interval_contains_the_score():
    """Resampled runs repeat, which biases resampled scores low; the interval corrects for it."""
    rng = np.random.default_rng(0)
    y = np.zeros(300, dtype=int)
    unlearned, retrained = _outputs(rng, 16, 300, 0.3), _outputs(rng, 16, 300, 0.0)
    original = {k: v[0] for k, v in retrained.items()}
    out, _ = scoring.summarize(unlearned, retrained, original, y, bootstrap=20, seed=0)
    lo, hi = out["score_ci95"]
    assert out["score"] > 0
    assert out["score_bootstrap_bias"] < 0  # the bias this interval exists to remove
    assert lo <= out["score"] <= hi
    assert lo >= 0


def test_efficiency_rule_uses_the_reference_timed_beside_the_runs():
    e = scoring.efficiency([3.0, 3.0], reference_times=[10.0, 20.0], manifest_retrain_time=100.0)
    assert e["time_ratio"] == 0.2 and not e["rejected"]  # 6 / 30: at the limit is allowed
    assert e["manifest_time_ratio"] == 0.03 and e["time_basis"] == "timed beside the runs"
    slow = scoring.efficiency([3.0, 3.1], reference_times=[10.0, 20.0], manifest_retrain_time=1000.0)
    assert slow["rejected"], "the verdict follows the side-by-side ratio, not the bank's record"
    assert not scoring.efficiency([30.0], [10.0], valid_entry=False)["rejected"], "reference rows are exempt"
    fallback = scoring.efficiency([30.0], None, manifest_retrain_time=100.0)
    assert fallback["time_ratio"] is None and fallback["rejected"] and fallback["time_basis"] == "bank manifest"
    unknown = scoring.efficiency([30.0], None, None)
    assert not unknown["rejected"] and unknown["time_basis"] is None


def test_summarize_zeroes_the_final_score_of_a_rejected_method():
    rng = np.random.default_rng(1)
    y = np.zeros(100, dtype=int)
    unlearned, retrained = _outputs(rng, 8, 100, 0.3), _outputs(rng, 8, 100, 0.0)
    original = {k: v[0] for k, v in retrained.items()}
    ok, _ = scoring.summarize(unlearned, retrained, original, y, run_times=[1.0] * 8, reference_times=[10.0] * 8)
    rejected, _ = scoring.summarize(unlearned, retrained, original, y, run_times=[5.0] * 8, reference_times=[10.0] * 8)
    assert ok["final_score"] == ok["score"] > 0 and ok["time_ratio"] == pytest.approx(0.1)
    assert rejected["rejected"] and rejected["final_score"] == 0.0 and rejected["score"] == ok["score"]


def test_the_score_and_every_bootstrap_resample_use_one_formula(monkeypatch):
    """F x RA ratio x TA ratio lives in eval.metrics.final_score alone: the summary and each resample call it,
    and the verdict zeroes the final score and its interval together."""
    from eval import metrics

    rng = np.random.default_rng(1)
    y = np.zeros(100, dtype=int)
    unlearned, retrained = _outputs(rng, 8, 100, 0.3), _outputs(rng, 8, 100, 0.0)
    original = {k: v[0] for k, v in retrained.items()}
    kw = dict(run_times=[1.0] * 8, reference_times=[10.0] * 8, bootstrap=5)
    real, _ = scoring.summarize(unlearned, retrained, original, y, **kw)
    assert real["final_ci95"] == real["score_ci95"] and real["score_ci95"][0] < real["score_ci95"][1]
    monkeypatch.setattr(metrics, "final_score", lambda f, ra_u, ra_r, ta_u, ta_r: 0.125)
    fixed, _ = scoring.summarize(unlearned, retrained, original, y, **kw)
    assert fixed["score"] == fixed["final_score"] == 0.125
    assert fixed["score_ci95"] == pytest.approx([0.125, 0.125]) and fixed["score_std"] == 0
    slow, _ = scoring.summarize(unlearned, retrained, original, y, **{**kw, "run_times": [5.0] * 8})
    assert slow["final_score"] == 0 and slow["final_ci95"] == [0.0, 0.0] and slow["score_ci95"][1] > 0


def test_tow_in_the_summary_is_one_for_retrain_like_accuracies():
    """ToW: each run against the retrained models' mean accuracies, then the mean over runs (RUM's)."""
    rng = np.random.default_rng(2)
    y = np.zeros(50, dtype=int)
    retrained = _outputs(rng, 4, 50, 0.0)
    retrained.update(
        acc_forget=np.array([0.8, 0.9, 0.8, 0.9]),
        acc_retain=np.array([1.0, 0.98, 1.0, 0.98]),
        acc_test=np.array([0.7, 0.8, 0.7, 0.8]),
    )  # means 0.85, 0.99, 0.75
    original = {k: v[0] for k, v in retrained.items()}
    same = _outputs(rng, 4, 50, 0.3)
    same.update(acc_forget=np.full(4, 0.85), acc_retain=np.full(4, 0.99), acc_test=np.full(4, 0.75))
    assert scoring.summarize(same, retrained, original, y)[0]["tow"] == pytest.approx(1.0)
    other = dict(same, acc_forget=np.array([0.95, 0.85, 0.85, 0.85]), acc_retain=np.full(4, 0.97))
    # run 0: (1 - 0.10)(1 - 0.02)(1 - 0) ; runs 1-3: (1 - 0)(1 - 0.02)(1 - 0)
    expected = (0.90 * 0.98 + 3 * 0.98) / 4
    assert scoring.summarize(other, retrained, original, y)[0]["tow"] == pytest.approx(expected)


@pytest.mark.parametrize("metric", ["ulira", "klom"])
def test_ulira_and_klom_metrics_replace_f(metric):
    rng = np.random.default_rng(3)
    y = np.zeros(120, dtype=int)
    unlearned, retrained = _outputs(rng, 8, 120, 0.5), _outputs(rng, 8, 120, 0.0)
    original = {k: v[0] for k, v in retrained.items()}
    out, arrays = scoring.summarize(unlearned, retrained, original, y, metric=metric, bootstrap=10, seed=0)
    official, _ = scoring.summarize(unlearned, retrained, original, y)
    for key in ("ulira_acc", "klom_p50", "klom_p95", "klom_p99", "epsilon_mean", "tow"):
        assert out[key] == pytest.approx(official[key]), key  # reported whatever the metric
    assert arrays["ulira_acc"].shape == arrays["klom"].shape == (120,)
    expected_f = (
        1 - 2 * abs(out["ulira_acc"] - 0.5) if metric == "ulira" else klom.klom_forgetting_score(arrays["klom"])
    )
    assert out["F"] == pytest.approx(expected_f)
    assert out["score"] == pytest.approx(out["F"] * out["ra_ratio"] * out["ta_ratio"])
    lo, hi = out["score_ci95"]
    assert lo <= out["score"] <= hi and out["bootstrap_resamples"] == "forget examples"
    with pytest.raises(ValueError, match="unknown metric"):
        scoring.summarize(unlearned, retrained, original, y, metric="nope")
