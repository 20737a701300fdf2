"""Privacy and trade-off metrics reported beside the competition score: loss MIA, ToW, ToW-MIA.

Pure functions over arrays (per-example losses or logits, accuracies as fractions), in the
scikit-learn style; `eval.scoring.summarize` (ToW) and `eval.harness.row` (the MIA, ToW-MIA) compute
the inputs once from stored outputs.

* **Loss MIA** (the NeurIPS 2023 starting kit's "simple MIA"): per-example cross-entropy losses,
  members = forget examples (label 1), non-members = test examples (label 0), the larger group
  subsampled to the size of the smaller, a `LogisticRegression` on the 1-D loss scored by the mean
  accuracy over `StratifiedShuffleSplit(n_splits=10, random_state=0)`. 0.5 means the attacker cannot
  tell forget from test examples; the target is the retrained models' value, not 0.5.
* **ToW** (Zhao et al., "What makes unlearning hard and what to do about it", NeurIPS 2024, RUM:
  ``surgical_plugins/analysis.py``): the product over forget, retain and test of
  ``1 - |acc_unlearned - acc_retrained|``; in [0, 1], 1 means retrain-like.
* **ToW-MIA** (RUM: ``surgical_plugins/analysis_mia.py``): ToW with the forget-accuracy factor replaced
  by ``1 - |MIA_unlearned - MIA_retrained|``.

Checked against RUM's code (``analysis.py``, ``analysis_mia.py``): the same three factors, absolute
differences, the product, then the mean over seeds. Definitional choices (where the sources differ
from what the kit can compute):

* accuracies are fractions in [0, 1], not percentages, so the factors are ``1 - |diff|`` rather
  than ``1 - |diff| / 100`` (RUM's MIA factor is already a fraction);
* RUM compares seed s's unlearned model with seed s's retrained model. The kit's runs and retrained
  models are not paired, so each run is compared with the mean accuracies (and mean MIA) of the
  retrained bank, and ToW is the mean over runs; a retrained model compared with that mean scores
  close to 1, where pairing two retrained models would cost their run-to-run spread;
* the paper's ToW-MIA uses SalUn's SVC confidence "MIA-efficacy", whose shadow members are retain
  examples. The kit stores only forget and test outputs of each unlearned model, so
  `eval.harness.row` feeds `tow_mia` the loss MIA above instead; `tow_mia` itself accepts any MIA
  value in [0, 1];
* the loss MIA balances the groups with one seeded subsample (the starting kit shuffles without a
  seed and truncates the forget losses to the number of test losses), the same subsample for every
  model so that models are compared on the same examples.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

__all__ = ["cross_entropy_losses", "loss_mia_accuracy", "tow", "tow_mia"]


def cross_entropy_losses(logits, labels) -> np.ndarray:
    """Per-example cross-entropy loss ``logsumexp(z) - z_y`` of one or many models.

    Parameters
    ----------
    logits : array-like of shape (..., n_examples, n_classes)
        Raw model outputs; any leading axes (e.g. models) are kept.
    labels : array-like of int, shape (n_examples,)
        True classes.

    Returns
    -------
    losses : ndarray of shape (..., n_examples), float64
        Non-negative losses in nats.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim < 2 or z.shape[-2] != y.shape[0]:
        raise ValueError(
            f"logits of shape {z.shape} do not match labels of shape {y.shape}: expected (..., {y.shape[0]}, n_classes)"
        )
    picked = np.take_along_axis(z, np.broadcast_to(y[:, None], z.shape[:-1] + (1,)), axis=-1)[..., 0]  # (..., n)
    return logsumexp(z, axis=-1) - picked


def loss_mia_accuracy(member_losses, nonmember_losses, *, n_splits: int = 10, random_state: int = 0):
    """The starting kit's loss membership-inference attack: cross-validated attack accuracy.

    For each model, a logistic regression on the 1-D loss predicts member (1) or non-member (0);
    its accuracy is averaged over ``StratifiedShuffleSplit(n_splits, random_state=random_state)``
    (test fraction 0.1). The larger group is first subsampled, without replacement and with the
    same indices for every model, to the size of the smaller one, so chance level is 0.5.

    Parameters
    ----------
    member_losses : array-like of shape (n_members,) or (n_models, n_members)
        Per-example losses on examples the attacker should call members (the forget set).
    nonmember_losses : array-like of shape (n_nonmembers,) or (n_models, n_nonmembers)
        Per-example losses on non-members (the test set); same number of models.
    n_splits : int, default 10
        Cross-validation splits, as in the starting kit.
    random_state : int, default 0
        Seed of the splits and of the balancing subsample.

    Returns
    -------
    accuracy : float or ndarray of shape (n_models,)
        Mean cross-validated accuracy in [0, 1]; a float for 1-D inputs.
    """
    m = np.asarray(member_losses, dtype=np.float64)
    nm = np.asarray(nonmember_losses, dtype=np.float64)
    single = m.ndim == 1
    m, nm = np.atleast_2d(m), np.atleast_2d(nm)  # (n_models, n)
    if m.ndim != 2 or nm.ndim != 2 or m.shape[0] != nm.shape[0]:
        raise ValueError(
            f"member losses {np.shape(member_losses)} and non-member losses "
            f"{np.shape(nonmember_losses)} must be (n,) or (n_models, n) with the same n_models"
        )
    k = min(m.shape[1], nm.shape[1])
    if k < n_splits:
        raise ValueError(
            f"need at least {n_splits} examples per group for {n_splits} splits, "
            f"got {m.shape[1]} members and {nm.shape[1]} non-members"
        )
    if not (np.isfinite(m).all() and np.isfinite(nm).all()):
        raise ValueError("losses must be finite")
    rng = np.random.default_rng(random_state)
    m = m[:, np.sort(rng.choice(m.shape[1], k, replace=False))]  # (n_models, k)
    nm = nm[:, np.sort(rng.choice(nm.shape[1], k, replace=False))]  # (n_models, k)
    labels = np.r_[np.zeros(k, int), np.ones(k, int)]
    cv = StratifiedShuffleSplit(n_splits=n_splits, random_state=random_state)
    acc = np.array(
        [
            cross_val_score(LogisticRegression(), np.r_[nm_i, m_i][:, None], labels, cv=cv, scoring="accuracy").mean()
            for m_i, nm_i in zip(m, nm)
        ]
    )
    return float(acc[0]) if single else acc


def tow(acc_forget, acc_retain, acc_test, ref_forget, ref_retain, ref_test) -> np.ndarray:
    """Tug-of-war score: how closely the accuracies match the retrained reference.

    ``ToW = (1 - |a_F - r_F|) (1 - |a_R - r_R|) (1 - |a_T - r_T|)`` with accuracies as fractions.

    Parameters
    ----------
    acc_forget, acc_retain, acc_test : array-like, broadcastable, e.g. shape (n_runs,)
        Accuracies of the unlearned model(s) on forget, retain and test, in [0, 1].
    ref_forget, ref_retain, ref_test : array-like, broadcastable
        The retrained reference's accuracies (the kit passes the bank's means).

    Returns
    -------
    tow : ndarray, the broadcast shape
        Values in [0, 1]; 1 means retrain-like accuracies on all three splits.
    """
    a = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (acc_forget, acc_retain, acc_test, ref_forget, ref_retain, ref_test))
    )
    return (1 - np.abs(a[0] - a[3])) * (1 - np.abs(a[1] - a[4])) * (1 - np.abs(a[2] - a[5]))


def tow_mia(mia, acc_retain, acc_test, ref_mia, ref_retain, ref_test) -> np.ndarray:
    """ToW with the forget-accuracy factor replaced by the gap in membership-inference value.

    ``ToW-MIA = (1 - |m - m_r|) (1 - |a_R - r_R|) (1 - |a_T - r_T|)``.

    Parameters
    ----------
    mia : array-like, broadcastable, e.g. shape (n_runs,)
        MIA value of the unlearned model(s) on the forget set, in [0, 1] (the paper uses SalUn's
        MIA-efficacy; `eval.harness.row` passes `loss_mia_accuracy`).
    acc_retain, acc_test : array-like, broadcastable
        Accuracies of the unlearned model(s), in [0, 1].
    ref_mia, ref_retain, ref_test : array-like, broadcastable
        The same quantities for the retrained reference.

    Returns
    -------
    tow_mia : ndarray, the broadcast shape
        Values in [0, 1]; 1 means retrain-like.
    """
    return tow(mia, acc_retain, acc_test, ref_mia, ref_retain, ref_test)
