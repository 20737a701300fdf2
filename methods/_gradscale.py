"""Per-parameter gradient scaling as an optimizer wrapper: g ← s ⊙ g before every step.

`GradScaleOptimizer(base, net, scales)` multiplies the loss gradient of each named parameter by its
scale (a number, or a tensor broadcastable to the parameter for entry-wise scales) before the base
optimizer steps. With a closure the scaling happens inside it, every time it runs, so both passes of
a SAM wrapper see scaled gradients (SAM's ascent direction and its final gradient), and the per-tensor
step cap of `_trust.StepCap` then bounds the step that results; wrap the optimizer `build_optimizer`
returns. Weight decay, added by the base optimizer, is not scaled (the NeurIPS 2023 `kookmin` entry
scales the gradient in the backward pass, before SGD adds its decay). Parameters without an entry keep
their gradient. Param groups, state and defaults are shared with the base (the davda54/sam pattern of
`_sam` and `_masked_optimizer`), so LR schedulers can be built on the wrapper. Imports only torch.
"""

import torch

from methods._wrapped import OptimizerWrapper


class GradScaleOptimizer(OptimizerWrapper):
    """`GradScaleOptimizer(base_optimizer, net, scales)`; scales = {parameter name: float or tensor}."""

    def __init__(self, base_optimizer: torch.optim.Optimizer, net: torch.nn.Module, scales: dict):
        named = dict(net.named_parameters())
        unknown = [n for n in scales if n not in named]
        if unknown:
            raise ValueError(f"scales name unknown parameters: {unknown[:5]}")
        super().__init__(base_optimizer)
        self.scales = []  # (parameter, scale as a tensor on its device)
        for n, s in scales.items():
            s = torch.as_tensor(s, dtype=named[n].dtype, device=named[n].device)
            try:
                fits = torch.broadcast_shapes(s.shape, named[n].shape) == named[n].shape
            except RuntimeError:
                fits = False
            if not fits:
                raise ValueError(f"scale {n!r} of shape {tuple(s.shape)} does not broadcast to {tuple(named[n].shape)}")
            self.scales.append((named[n], s))

    @torch.no_grad()
    def scale_grads_(self) -> None:
        """Multiply every scaled parameter's .grad by its scale, in place."""
        for p, s in self.scales:
            if p.grad is not None:
                p.grad.mul_(s)

    def step(self, closure=None):
        """The base step on scaled gradients; with a closure (zero grads, loss, backward, return loss)
        they are scaled each time it runs. Returns the closure's loss (None without a closure)."""
        if closure is None:
            self.scale_grads_()
            return self.base_optimizer.step()

        def scaled_closure():
            with torch.enable_grad():
                out = closure()
            self.scale_grads_()
            return out

        return self.base_optimizer.step(scaled_closure)
