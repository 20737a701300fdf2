"""Loss functions and per-example statistics on logits, shared by the unlearning methods.

All are differentiable; batch losses are batch means. Logits have shape (b, C). Sources:
SCRUB's DistillKL (meghdadk/SCRUB, thirdparty/repdistiller/distiller_zoo/KD.py), RUM's `ho_ret`
symmetric KL (kairanzhao/RUM, memorization_proxy/heldout_retrain.py), PDU's logit margin (Entesari
et al. 2025), the competition scorer's logit-scaled confidence, and the NeurIPS 2023 entries as their
teams released them (ported in xcadet/deepunlearn, `munl/unlearning/kgltop*.py`).
Deviation: probabilities are taken through log_softmax everywhere, so no 1e-10 clamping (RUM) is needed.
Imports only torch; no work at import time.
"""

import torch
import torch.nn.functional as F


def cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    example_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Batch-mean cross-entropy; with `example_weights` (b,), (1/b)·Σ_i w_i·CE_i.

    The weighted form divides by the batch size, not by Σ w (Seif's NeurIPS 2023 Machine Unlearning
    Challenge entry as the competition report, arXiv 2406.09073, summarizes it: per-example weights
    "averaged over the batch", in effect a batch-dependent learning rate).
    """
    if example_weights is None:
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    per = F.cross_entropy(logits, targets, reduction="none", label_smoothing=label_smoothing)  # (b,)
    return (example_weights.to(per) * per).sum() / per.numel()


def kl_to_teacher(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """SCRUB's DistillKL: T²·KL(softmax(t/T) ‖ softmax(s/T)), batch mean ("batchmean").

    The teacher logits are a target and are detached.
    """
    t = temperature
    log_s = F.log_softmax(student_logits / t, dim=1)
    log_t = F.log_softmax(teacher_logits.detach() / t, dim=1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * t * t


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """½[KL(p_a‖p_b) + KL(p_b‖p_a)] = ½ Σ_c (p_a − p_b)(log p_a − log p_b) per example.

    `reduction` "mean" (scalar) or "none" (shape (b,)). Used by RUM's `ho_ret` memorization proxy and
    by the Amnesiacs' NeurIPS 2023 Machine Unlearning Challenge entry as the competition report (arXiv
    2406.09073) summarizes it (CE + symmetric KL to the original model); detach either side as needed.
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    la, lb = F.log_softmax(logits_a, dim=1), F.log_softmax(logits_b, dim=1)
    per = 0.5 * ((la.exp() - lb.exp()) * (la - lb)).sum(dim=1)  # (b,)
    return per.mean() if reduction == "mean" else per


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """Batch mean of KL(p ‖ uniform) = log C − H(p), C = logits.shape[1]."""
    return logits.new_tensor(logits.shape[1]).log() - prediction_entropy(logits).mean()


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-example entropy H(softmax(z)) = −Σ_c p_c log p_c, shape (b,)."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def entropy_matching(logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """MSE(H(f(x)), H(f0(x))) between prediction entropies; the reference is detached.

    From Sebastian Oleszko's NeurIPS 2023 Machine Unlearning Challenge entry (`sebastian`; Kaggle
    write-up: the competition's discussion 459148).
    """
    return F.mse_loss(prediction_entropy(logits), prediction_entropy(reference_logits.detach()))


def logit_margin(logits: torch.Tensor, squared: bool = True) -> torch.Tensor:
    """Per-example logit margin m(z) = max_c z_c - mean_c z_c (squared by default), shape (batch,).

    m >= 0 and m = 0 iff all logits are equal; its gradient does not vanish on confident outputs
    (PDU, Entesari et al. 2025). Take `.mean()` for the batch loss.
    """
    m = logits.max(dim=1).values - logits.mean(dim=1)  # (batch,)
    return m.square() if squared else m


def true_label_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example z_y − mean_c z_c, shape (b,)."""
    return logits.gather(1, y[:, None])[:, 0] - logits.mean(dim=1)


def true_label_confidence(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logit-scaled confidence z_y − logsumexp_{j≠y} z_j = log p_y − log Σ_{j≠y} p_j, shape (b,).

    The competition scorer's statistic; finite however confident the logits are.
    """
    z_y = logits.gather(1, y[:, None])[:, 0]  # (b,)
    others = logits.scatter(1, y[:, None], float("-inf"))  # (b, C), true class masked out
    return z_y - torch.logsumexp(others, dim=1)


def quantile_hinge(values: torch.Tensor, reference: torch.Tensor, squared: bool = True) -> torch.Tensor:
    """One-sided 1-D transport of `values` (b,) down to the distribution of `reference` (1-D).

    With v_(i) the i-th smallest value and q_i = quantile(reference, (i + ½)/b), the loss is
    mean_i relu(v_(i) − q_i)² (or unsquared): only values above their target quantile are pushed down.
    Used by `sibl` (forget margins → validation margins). The reference is detached.
    """
    if values.ndim != 1 or reference.ndim != 1:
        raise ValueError(f"quantile_hinge needs 1-D tensors, got {tuple(values.shape)} and {tuple(reference.shape)}")
    ref = reference.detach().to(values.device, torch.promote_types(values.dtype, torch.float32))
    probs = (torch.arange(values.numel(), device=ref.device, dtype=ref.dtype) + 0.5) / values.numel()
    excess = F.relu(values.sort().values - torch.quantile(ref, probs))  # (b,)
    return excess.square().mean() if squared else excess.mean()


def dot_contrastive(features_a: torch.Tensor, features_b: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """−mean_{i,j} log_softmax_j(⟨a_i, b_j⟩ / T), features (n, d) and (m, d) (flattened from dim 1).

    Bounded below by log m: `fanchuan` (NeurIPS 2023, prize rank 1) minimises it between a forget batch and
    a detached random retain batch, spreading each forget example's similarity evenly over the retain batch.
    """
    logits = features_a.flatten(1) @ features_b.flatten(1).T / temperature  # (n, m)
    return -F.log_softmax(logits, dim=1).mean()
