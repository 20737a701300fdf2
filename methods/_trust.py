"""Scale-robust steps: cap each tensor's change per step relative to its own norm (a trust ratio).

A learning rate tuned on one network does not transfer: on the `cpu` preset's small SGD-trained
ResNet an SGD step of 0.02 is gentle, on the Kaggle ResNet-18 trained with Adam at 1e-4 it diverges
within a few dozen steps (heavy-ball SGD beyond the edge of stability grows the error geometrically).
`StepCap(optimizer, max_update)` bounds every optimizer step, per parameter tensor, to
‖Δw‖ ≤ max_update · ref(w), ref(w) = ‖w‖ for weights (ndim ≥ 2) and max(‖w‖, √numel) for vectors
(BatchNorm scales and shifts, biases: a zero-initialised bias still gets room, as if its entries were
of size 1). A step that is not too large passes bit for bit; a larger one is scaled down, so an
unstable direction can only oscillate with bounded amplitude instead of blowing up. This is the
per-layer trust ratio of LARS (You, Gitman & Ginsburg 2017) used as a cap, not as a rescaling:
methods keep their own step sizes where those are safe. `cap_update_` applies the same rule to an
update a method computes by hand (`sibl`'s outer step). Imports only torch.
"""

import torch

from methods._wrapped import OptimizerWrapper


def step_reference(w: torch.Tensor) -> float:
    """The norm a tensor's step is measured against: ‖w‖, at least √numel for a vector (a bias or BN
    parameter near 0 would otherwise allow no step)."""
    n = float(w.detach().norm())
    return max(n, w.numel() ** 0.5) if w.ndim < 2 else n


@torch.no_grad()
def cap_update_(params, before, max_update: float) -> int:
    """Scale `params[i] - before[i]` down to norm `max_update · ref(before[i])` where it is larger, in place.

    Returns how many tensors were capped. A non-finite change is left alone (the caller's check reports it).
    Norms are taken list-wide (`torch._foreach_norm`): this runs after every step.
    """
    params, before = list(params), list(before)
    if not params:
        return 0
    deltas = torch._foreach_sub(params, before)
    sizes = torch.stack(torch._foreach_norm(deltas))  # (n_tensors,)
    refs = torch.stack(
        [torch.clamp(n, min=w.numel() ** 0.5) if w.ndim < 2 else n for n, w in zip(torch._foreach_norm(before), before)]
    )
    over = ((sizes > max_update * refs) & torch.isfinite(sizes)).nonzero().flatten().tolist()
    for i in over:
        params[i].copy_(before[i] + deltas[i] * (max_update * refs[i] / sizes[i]))
    return len(over)


class SplitStepCap(OptimizerWrapper):
    """`SplitStepCap(base_optimizer, caps)`, caps = [(parameters, max_update)]: after every base step each
    subset's tensors are capped at their own max_update of their norm (0: no cap; `cap_update_`).

    Param groups, state and defaults are the base's (the davda54/sam pattern, so LR schedulers can be
    built on the wrapper); `capped_steps` counts the steps in which at least one tensor was capped,
    `steps` all steps. Re-initialised layers need more room than trained ones (`_partial.fresh_layer_optimizer`).
    """

    def __init__(self, base_optimizer: torch.optim.Optimizer, caps):
        super().__init__(base_optimizer)
        self.caps = [(list(params), float(cap)) for params, cap in caps if cap and len(list(params))]
        self.steps = self.capped_steps = 0

    def step(self, closure=None):
        """The base step, then each subset's cap; returns the base step's loss."""
        before = [[p.detach().clone() for p in params] for params, _ in self.caps]
        loss = self.base_optimizer.step(closure)
        self.steps += 1
        capped = sum(cap_update_(params, saved, cap) for (params, cap), saved in zip(self.caps, before))
        self.capped_steps += capped > 0
        return loss


class StepCap(SplitStepCap):
    """`StepCap(optimizer, max_update)`: every tensor of the optimizer's param groups capped at
    `max_update` of its norm after each step (`SplitStepCap` with one subset)."""

    def __init__(self, base_optimizer: torch.optim.Optimizer, max_update: float):
        if not max_update > 0:
            raise ValueError(f"max_update must be > 0, got {max_update}")
        self.max_update = float(max_update)
        super().__init__(base_optimizer, [([p for g in base_optimizer.param_groups for p in g["params"]], max_update)])


def with_step_cap(optimizer: torch.optim.Optimizer, max_update: float | None) -> torch.optim.Optimizer:
    """`optimizer` unchanged when `max_update` is None or 0, else StepCap(optimizer, max_update)."""
    return optimizer if not max_update else StepCap(optimizer, max_update)
