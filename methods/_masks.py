"""Update masks for sparse unlearning: which parameter entries a method may change.

`make_mask(net, method, sparsity, ...)` returns {parameter name: bool tensor shaped like it}; True marks
an entry that **may change**, so sparsity 0.9 leaves 10% of each masked tensor free to move. It
implements the six rules of OpenUnlearning PR #159's `SparsityManager.create_mask` (SIBL), with the
kit's corrections (listed in `methods/sibl.py`):

    layerwise_magnitude  per tensor, the largest (1-s)·n entries by |w| (exact count, not a tie-prone quantile)
    magnitude_sampling   one global threshold: the s-quantile of |w| pooled from a per-tensor sample of
                         min(n, max(1000, n // 10)) entries (drawn with `generator`), each sample weighted
                         by its tensor's inverse sampling rate (the released unweighted pool over-represents
                         small tensors, e.g. 2% instead of 10% kept on the cpu model), then |w| > threshold
    random               per tensor, exactly round((1-s)·n) entries drawn with `generator`
    structured           per tensor, whole output units: conv filters W[o, :, :, :] and linear rows W[o, :]
                         ranked by mean |W[o]|; keeps the top round((1-s)·out), at least one (the released
                         rule skipped 4-D conv weights and so left them fully trainable)
    gradual              cubic schedule (Zhu & Gupta 2017): s_cur = s + (s_init - s)(1 - min(step/total, 1))^3,
                         then layerwise magnitude at s_cur, nested inside `prev_mask` when given (the mask
                         only shrinks); the caller recomputes it every outer step (released: called once
                         with step 0, hence dense)
    movement             per tensor, the largest (1-s)·n entries of |w ⊙ g| for gradients `grads` of the
                         forget loss (a SNIP/SalUn-style saliency; released: no gradients, hence magnitude)

Which tensors follow the rule: every parameter with ndim >= 2 (conv and linear weights). 1-D
parameters (biases, BatchNorm weight and bias) follow it only with `include_1d=True`, each ranked on
its own (global pooling would keep every BN scale, whose magnitude is ~1); otherwise they are all-True
(free), as released. Frozen parameters (requires_grad False) are all-False. Building a mask never
changes the weights. Imports only torch; no work at import time.
"""

import torch

METHODS = ("layerwise_magnitude", "magnitude_sampling", "random", "structured", "gradual", "movement")


def cubic_sparsity(step: int, total_steps: int, final: float, initial: float = 0.0) -> float:
    """Zhu & Gupta's cubic schedule: `initial` at step 0, `final` from `total_steps` on."""
    frac = min(max(step, 0) / max(total_steps, 1), 1.0)
    return final + (initial - final) * (1.0 - frac) ** 3


def _keep_count(n: int, sparsity: float) -> int:
    """Entries (or units) kept free at `sparsity`: round((1-s)·n), at least one."""
    return max(1, min(n, int(round((1.0 - sparsity) * n))))


def top_k_mask(score: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask shaped like `score` with True at its k largest entries (ties broken by position)."""
    flat = score.flatten()
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.topk(flat, k, sorted=False).indices] = True
    return keep.view_as(score)


def _structured(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Whole output units of a weight (filters of a conv, rows of a linear) by mean |W[o]|."""
    if w.ndim == 1:
        return top_k_mask(w.abs(), _keep_count(w.numel(), sparsity))
    unit_score = w.detach().abs().flatten(1).mean(1)  # (out_units,)
    units = top_k_mask(unit_score, _keep_count(len(unit_score), sparsity))  # (out_units,)
    return units.view(-1, *([1] * (w.ndim - 1))).expand_as(w).clone()  # (out, in, kh, kw)


def make_mask(
    net: torch.nn.Module,
    method: str = "layerwise_magnitude",
    sparsity: float = 0.9,
    *,
    grads: dict | None = None,
    generator: torch.Generator | None = None,
    include_1d: bool = False,
    step: int = 0,
    total_steps: int = 1,
    initial_sparsity: float = 0.0,
    prev_mask: dict | None = None,
) -> dict[str, torch.Tensor]:
    """Update mask of `net`: {name: bool tensor}, True = the entry may change.

    Parameters
    ----------
    method : one of `METHODS`.
    sparsity : fraction of each followed tensor that is frozen, in [0, 1).
    grads : {name: gradient of the forget loss}, required by `movement`.
    generator : randomness of `random` and `magnitude_sampling` (on the parameters' device).
    include_1d : whether biases and BatchNorm parameters follow the rule (else they are free).
    step, total_steps, initial_sparsity, prev_mask : the `gradual` schedule and the mask it shrinks.
    """
    if method not in METHODS:
        raise ValueError(f"unknown sparsity method {method!r}; supported: {', '.join(METHODS)}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if method == "movement" and grads is None:
        raise ValueError("sparsity method 'movement' needs the forget-loss gradients (grads=...)")
    named = dict(net.named_parameters())
    followed = {n: p for n, p in named.items() if p.requires_grad and (p.ndim >= 2 or include_1d)}
    masks = {
        n: torch.zeros_like(p, dtype=torch.bool) if not p.requires_grad else torch.ones_like(p, dtype=torch.bool)
        for n, p in named.items()
    }
    s = sparsity
    if method == "gradual":
        s = cubic_sparsity(step, total_steps, sparsity, initial_sparsity)
    with torch.no_grad():
        if method == "magnitude_sampling":
            big = {n: p for n, p in followed.items() if p.ndim >= 2}
            samples, weights = [], []
            for p in big.values():
                flat = p.detach().abs().flatten()
                m = min(flat.numel(), max(1000, flat.numel() // 10))
                idx = torch.randperm(flat.numel(), generator=generator, device=flat.device)[:m]
                samples.append(flat[idx].float())
                weights.append(torch.full((m,), flat.numel() / m, device=flat.device))  # inverse sampling rate
            if samples and s > 0:
                values, order = torch.cat(samples).sort()  # (n_sample,)
                cum = torch.cat(weights)[order].cumsum(0)  # (n_sample,)
                tau = values[int(torch.searchsorted(cum, s * cum[-1]).clamp_max(len(values) - 1))]
                for n, p in big.items():
                    masks[n] = p.detach().abs() > tau
            for n, p in followed.items():
                if p.ndim < 2:
                    masks[n] = top_k_mask(p.detach().abs(), _keep_count(p.numel(), s))
            return masks
        for n, p in followed.items():
            w = p.detach()
            if method == "structured":
                masks[n] = _structured(w, s)
            elif method == "random":
                k = _keep_count(w.numel(), s)
                keep = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
                keep[torch.randperm(w.numel(), generator=generator, device=w.device)[:k]] = True
                masks[n] = keep.view_as(w)
            else:
                score = w.abs()
                if method == "movement":
                    g = grads.get(n)
                    score = score * (g.detach().abs() if g is not None else torch.zeros_like(score))
                k = _keep_count(w.numel(), s)
                if method == "gradual" and prev_mask is not None and n in prev_mask:
                    inside = prev_mask[n].to(w.device)
                    score = torch.where(inside, score.float(), torch.full_like(score.float(), -1.0))
                    k = min(k, int(inside.sum()))
                masks[n] = top_k_mask(score, k)
    return masks


def mask_density(masks: dict, net: torch.nn.Module, include_1d: bool = False) -> float:
    """Fraction of True entries over the tensors that follow the rule (ndim >= 2, plus 1-D if asked)."""
    named = dict(net.named_parameters())
    kept = total = 0
    for n, m in masks.items():
        if named[n].requires_grad and (named[n].ndim >= 2 or include_1d):
            kept += int(m.sum())
            total += m.numel()
    return kept / max(total, 1)


def changed_fraction(net: torch.nn.Module, reference: dict, include_1d: bool = False) -> float:
    """Fraction of entries that differ from `reference` ({name: tensor}), over ndim >= 2 parameters."""
    changed = total = 0
    for n, p in net.named_parameters():
        if n in reference and (p.ndim >= 2 or include_1d):
            changed += int((p.detach() != reference[n]).sum())
            total += p.numel()
    return changed / max(total, 1)


def restore_masked_(net: torch.nn.Module, masks: dict, reference: dict) -> None:
    """Set every entry outside the mask back to `reference` exactly (masked weights do not move)."""
    with torch.no_grad():
        for n, p in net.named_parameters():
            if n in masks and n in reference:
                torch.where(masks[n], p, reference[n], out=p)  # in place: one pass, no temporary
