"""The score's bootstrap interval."""
import numpy as np

from eval import scoring


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
    assert out["score_bootstrap_bias"] < 0       # the bias this interval exists to remove
    assert lo <= out["score"] <= hi
    assert lo >= 0
