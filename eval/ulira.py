"""U-LiRA: a per-example likelihood-ratio attack that tells unlearned models from retrained ones.

Source: Hayes, Shumailov, Triantafillou, Khalifa, Papernot, "Inexact unlearning needs more careful
evaluations to avoid a false sense of privacy", 2024, arXiv 2403.01218 (U-LiRA); also used by
DeepUnlearn (xcadet/deepunlearn). Written from the paper's description, not from its code.

For every forget example the attacker fits one Gaussian to the statistic of unlearned models and one
to that of retrained models (the statistic is the official metric's logit-scaled confidence,
``log p_y - log sum_{j!=y} p_j``, the same ``(n_models, n_examples)`` arrays `eval.metrics` scores),
then calls a target model "unlearned" when ``log N(x; mu_u, s_u) > log N(x; mu_r, s_r)``. The
attack accuracy on a balanced set of targets is 0.5 when the two groups cannot be told apart and 1
when they are perfectly separable.

Protocol: leave one pair out. The paper attacks target models that are not among its shadow models.
Here the runs and the bank are the only models, so each is a target in turn: for pair k (unlearned
model ``k mod n_u``, retrained model ``k mod n_r``, ``k < max(n_u, n_r)``) both Gaussians are fitted
without the two targets, and both targets are attacked with that one rule. This is

* honest: no target is ever in the data its rule was fitted on (in-sample fits with 16 models call
  identical distributions separable well above chance);
* exactly unbiased at chance: under identical distributions the two targets are exchangeable given
  the rule, so the expected balanced accuracy is 0.5 for any group sizes (plain leave-one-out, which
  fits the target's own group on n - 1 models and the other on n, is not);
* balanced: every pair holds one target of each class, so chance is 0.5 even when n_u != n_r;
* cheap: leave-one-out means and variances have closed forms, so all pairs and examples are
  evaluated at once as ``(n_pairs, n_examples)`` arrays.

Deviations from the paper: there, each target example's shadow models differ (random forget sets);
here every forget example sees the same runs and retrained models, so examples share their models.
A likelihood ratio of exactly 0 (e.g. both groups constant at the same value) counts as half right.

Degenerate spreads: a standard deviation is floored at ``max(min_std, min_std_ratio * max(s_u, s_r))``
(defaults 1e-3 and 0.01, the official metric's "peaky" ratio), so a group of identical runs becomes
a narrow but finite Gaussian: runs that are all the same are told apart from retraining (accuracy
near 1), while two groups constant at the same value score 0.5.
"""

from __future__ import annotations

import numpy as np

from eval.metrics import _validate_outputs

__all__ = ["MIN_STD", "MIN_STD_RATIO", "ulira_accuracies", "ulira_forgetting_score"]

MIN_STD = 1e-3  # absolute floor on a fitted standard deviation (units of the statistic)
MIN_STD_RATIO = 0.01  # relative floor: 1% of the larger spread, the official metric's peaky ratio


def _leave_one_out(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (ddof 1) of every column without row i, both (n, n_examples)."""
    n = x.shape[0]
    m = x.mean(axis=0)  # (n_examples,)
    d = x - m  # (n, n_examples)
    ss = np.sum(d * d, axis=0)  # (n_examples,)
    mean = m - d / (n - 1)  # (n, n_examples)
    ss_out = np.maximum(ss - d * d * (n / (n - 1)), 0.0)  # sum of squares about the n - 1 mean
    return mean, np.sqrt(ss_out / (n - 2))


def _log_likelihood_ratio(x, mu_u, s_u, mu_r, s_r) -> np.ndarray:
    """``log N(x; mu_u, s_u) - log N(x; mu_r, s_r)``, elementwise."""
    zu = (x - mu_u) / s_u
    zr = (x - mu_r) / s_r
    return np.log(s_r / s_u) + 0.5 * (zr * zr - zu * zu)


def ulira_accuracies(
    outputs_unlearned, outputs_retrained, *, min_std: float = MIN_STD, min_std_ratio: float = MIN_STD_RATIO
) -> np.ndarray:
    """Per-example balanced accuracy of the U-LiRA attack, evaluated leaving one pair out.

    Parameters
    ----------
    outputs_unlearned : array-like of shape (n_models_u, n_examples)
        Statistic of every forget example under each unlearned model (the official metric's input).
    outputs_retrained : array-like of shape (n_models_r, n_examples)
        The same under each retrained model.
    min_std, min_std_ratio : float
        Floors on the fitted standard deviations (see the module docstring).

    Returns
    -------
    accuracy : ndarray of shape (n_examples,)
        In [0, 1]; 0.5 is chance (ideal), 1 perfectly separable. Each value is a mean over
        ``2 * max(n_models_u, n_models_r)`` attacked targets.

    Raises
    ------
    ValueError
        Shapes or values the official metric refuses, or fewer than 3 models in a group (a fit
        without the target needs two models).
    """
    u, r = _validate_outputs(outputs_unlearned, outputs_retrained)
    if min(len(u), len(r)) < 3:
        raise ValueError(
            f"U-LiRA needs at least 3 models per group (fits leave one out); got unlearned "
            f"{u.shape}, retrained {r.shape}"
        )
    mu_u, s_u = _leave_one_out(u)  # (n_u, n_examples)
    mu_r, s_r = _leave_one_out(r)  # (n_r, n_examples)
    k = np.arange(max(len(u), len(r)))
    iu, ir = k % len(u), k % len(r)  # pair k: unlearned iu[k], retrained ir[k]
    mu_u, s_u, mu_r, s_r = mu_u[iu], s_u[iu], mu_r[ir], s_r[ir]  # (n_pairs, n_examples)
    floor = np.maximum(min_std, min_std_ratio * np.maximum(s_u, s_r))
    s_u, s_r = np.maximum(s_u, floor), np.maximum(s_r, floor)
    llr_u = _log_likelihood_ratio(u[iu], mu_u, s_u, mu_r, s_r)  # targets that are unlearned
    llr_r = _log_likelihood_ratio(r[ir], mu_u, s_u, mu_r, s_r)  # targets that are retrained
    right = (np.sign(llr_u) + 1) / 2 + (1 - np.sign(llr_r)) / 2  # (n_pairs, n_examples); ties 1/2
    return right.mean(axis=0) / 2


def ulira_forgetting_score(accuracy) -> float:
    """Forgetting factor from U-LiRA: ``1 - 2 |acc - 0.5|``, acc the mean over forget examples.

    1 when the attack is at chance, 0 when it is always right (or always wrong, which is as
    informative). Clipped to [0, 1].

    Parameters
    ----------
    accuracy : array-like of shape (n_examples,) or float
        Per-example accuracies from `ulira_accuracies`, or their mean.

    Returns
    -------
    float in [0, 1]
    """
    acc = float(np.mean(accuracy))
    return float(np.clip(1.0 - 2.0 * abs(acc - 0.5), 0.0, 1.0))
