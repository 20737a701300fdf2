"""Forget requests that arrive over time: per-request random streams, a running saliency map, an "unseen" check.

`request_seeds(seed, n)` (defined in `BaseMethod`, re-exported) gives the seeds of n requests by
`BaseMethod.run_requests`' rule (request 0 uses the run's seed, request j > 0 a seed drawn from a stream
offset from it; None stays None, i.e. fresh randomness), so a method that overrides `run_requests`
keeps the default's streams and no two requests share one. `RunningSaliency` keeps a saliency map across
requests and updates it with each
request's score instead of recomputing it: S_1 = ŝ_1, S_j = decay·S_{j−1} + ŝ_j, ŝ_j = s_j / Σ s_j (each
request's score normalised to unit total, so requests of different sizes, batches or gradient scales
weigh the same; decay 1 is a running sum, decay < 1 lets old requests fade). `accuracy_gap` is the
check after an unlearning step: forget-probe accuracy minus validation-probe accuracy of the current
model (eval mode; a retrained model classifies its forget set about as well as unseen data).
Imports only torch and project method modules.
"""

import math

import torch

from methods._common import device_of, eval_mode, unpack
from methods.BaseMethod import request_seeds  # noqa: F401  (re-exported: the requests' seed rule, defined once)


def seeded_generator(seed: int | None, device="cpu") -> torch.Generator:
    """A torch.Generator seeded with `seed`, or freshly when it is None."""
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g


def normalised(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{name: s / Σ_all s}: a saliency map scaled to unit total (all-zero maps stay zero)."""
    total = sum(float(s.double().sum()) for s in scores.values())
    return {n: (s / total if total > 0 else s.clone()) for n, s in scores.items()}


class RunningSaliency:
    """S_j = decay·S_{j−1} + ŝ_j with ŝ_j = `normalised`(s_j); `update(scores)` returns the new map."""

    def __init__(self, decay: float = 1.0):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.decay, self.map, self.updates = float(decay), None, 0

    def update(self, scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        fresh = normalised(scores)
        if self.map is None:
            self.map = fresh
        else:
            self.map = {n: self.decay * self.map[n] + fresh[n] for n in fresh}
        self.updates += 1
        return self.map


@torch.no_grad()
def probe_hits(net: torch.nn.Module, batches) -> tuple[int, int]:
    """(correct, examples) of `net` (eval mode) over `batches` [(x, y)]."""
    device, hit, count = device_of(net), 0, 0
    with eval_mode(net):
        for batch in batches:
            x, y = unpack(batch, device)
            hit += int((net(x).argmax(-1) == y).sum())
            count += len(y)
    return hit, count


def probe_accuracy(net: torch.nn.Module, batches) -> float:
    """Accuracy of `net` (eval mode) over `batches` [(x, y)]."""
    hit, count = probe_hits(net, batches)
    return hit / max(count, 1)


def accuracy_gap(net: torch.nn.Module, forget_probe, val_probe) -> dict:
    """{"gap": acc(forget_probe) − acc(val_probe), "se", "forget_acc", "val_acc"} of the current model;
    se = sqrt(f(1−f)/n_f + v(1−v)/n_v), the binomial standard error of that difference: a gap within
    about one se is what two samples of the same accuracy show."""
    (hf, nf), (hv, nv) = probe_hits(net, forget_probe), probe_hits(net, val_probe)
    f, v = hf / max(nf, 1), hv / max(nv, 1)
    se = math.sqrt(f * (1 - f) / max(nf, 1) + v * (1 - v) / max(nv, 1))
    return {"gap": f - v, "se": se, "forget_acc": f, "val_acc": v}
