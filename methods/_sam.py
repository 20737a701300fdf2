"""SAM / ASAM as an optimizer wrapper, with the sharp-unlearn min/max variant.

SAM: Foret et al. 2021, arXiv 2010.01412; ASAM: Kwon et al. 2021, arXiv 2102.11600; the wrapper
follows davda54/sam as copied into sharp-unlearn (HaoranTang/sharp-unlearn, sam/sam.py#L22-L95).
One step on one batch: g0 = ∇L(w); e = ρ·T(w)²⊙g0 / ‖T(w)⊙g0‖₂ (T(w) = |w| for ASAM, else 1; the
norm joint over all parameters); g1 = ∇L(w + e) on the same batch; w restored exactly; the base
optimizer steps with g = g0 + s·λ·(g1 − g0), s = +1 for "min" (λ = 1: plain SAM, g = g1), −1 for
"max" (descend the loss while maximising sharpness). Deviation: BN running statistics are frozen in
the second pass by snapshotting and restoring the BN buffers (robust to momentum None, the cumulative
average) instead of setting momentum 0. Composes with MaskedOptimizer(SAM(...), net, masks), whose
closure masks the gradients of both passes. Imports only torch.
"""

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from methods._wrapped import OptimizerWrapper

SAM_MODES = ("min", "max")


class SAM(OptimizerWrapper):
    """`SAM(base_optimizer, net, rho, adaptive, mode, lam)`; `step(closure)` needs a closure that zeroes
    the gradients, computes the loss, calls backward and returns the loss."""

    def __init__(
        self,
        base_optimizer: torch.optim.Optimizer,
        net: torch.nn.Module,
        rho: float = 0.1,
        adaptive: bool = False,
        mode: str = "min",
        lam: float = 1.0,
    ):
        if mode not in SAM_MODES:
            raise ValueError(f"SAM mode must be 'min' or 'max', got {mode!r}")
        if rho < 0:
            raise ValueError(f"SAM rho must be >= 0, got {rho}")
        super().__init__(base_optimizer)
        self.net = net
        self.rho, self.adaptive, self.mode, self.lam = float(rho), bool(adaptive), mode, float(lam)

    def _sam_bn_buffers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(buffer, copy) for every BatchNorm running statistic of `net`."""
        return [
            (b, b.detach().clone())
            for m in self.net.modules()
            if isinstance(m, _BatchNorm)
            for b in m.buffers(recurse=False)
        ]

    def step(self, closure=None):
        """One SAM step on the closure's batch; returns the loss of the first (unperturbed) pass."""
        if closure is None:
            raise RuntimeError(
                "SAM.step needs a closure that zero-grads, computes the loss, calls "
                "backward() and returns the loss (it is evaluated twice on the same batch)"
            )
        with torch.enable_grad():
            loss = closure()
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not params:
            return loss
        with torch.no_grad():
            g0 = [p.grad.detach().clone() for p in params]
            w0 = [p.detach().clone() for p in params]
            home = params[0].device
            scaled = [(p.abs() * g if self.adaptive else g) for p, g in zip(params, g0)]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s).to(home) for s in scaled])) + 1e-12
            for p, g in zip(params, g0):
                e = g * (self.rho / norm.to(p.device))
                p.add_(e * p.square() if self.adaptive else e)
        bn = self._sam_bn_buffers()
        with torch.enable_grad():
            closure()
        sign = 1.0 if self.mode == "min" else -1.0
        with torch.no_grad():
            for buf, saved in bn:  # only the first pass updates BN running statistics
                buf.copy_(saved)
            for p, w, g in zip(params, w0, g0):
                g1 = p.grad if p.grad is not None else torch.zeros_like(g)  # unused in pass 2: zero gradient
                p.copy_(w)
                p.grad = g + (sign * self.lam) * (g1 - g)
        self.base_optimizer.step()
        return loss


def with_sam(
    optimizer: torch.optim.Optimizer,
    net: torch.nn.Module,
    sam: str | None,
    rho: float = 0.1,
    adaptive: bool = False,
    lam: float = 1.0,
) -> torch.optim.Optimizer:
    """`optimizer` unchanged when `sam` is None, else SAM(optimizer, net, rho, adaptive, sam, lam)."""
    if sam is None:
        return optimizer
    if sam not in SAM_MODES:
        raise ValueError(f"sam must be None, 'min' or 'max', got {sam!r}")
    return SAM(optimizer, net, rho, adaptive, sam, lam)
