"""Masked optimisation: entries outside an update mask do not move at all, bit for bit.

`MaskedOptimizer(base, net, masks)` wraps any torch optimizer (or the SAM wrapper). Gradients are
masked before the base step (inside the closure when one is given, so both SAM passes see masked
gradients), and after it every masked-out entry is copied back from a snapshot taken at
construction and the optimizer state shaped like the parameter (momentum_buffer, exp_avg,
exp_avg_sq, max_exp_avg_sq, ...) is zeroed there, which also cancels coupled (SGD, Adam) and
decoupled (AdamW) weight decay. This is SalUn's fix a6e89fd ("Fix weight decay (#33)",
`_restore_masked_params` in Classification/unlearn/RL.py) generalised. It fixes what the RUM and
sharp-unlearn releases get wrong: gradient masking alone lets weight decay and momentum move frozen
weights; sharp-unlearn's Sharp MinMax forget step masks only the second SAM gradient, and its GA+SAM
masks after the step (no effect); masks must act before the step. Param groups, state and defaults
are shared with the base (the davda54/sam pattern), so LR schedulers can be built on the wrapper.
Imports only torch and project method modules.
"""

import torch

from methods._masks import restore_masked_
from methods._wrapped import OptimizerWrapper


class MaskedOptimizer(OptimizerWrapper):
    """`MaskedOptimizer(base_optimizer, net, masks)`; masks = {parameter name: bool, True = may change}.

    Parameters without an entry are free. The masked-out entries keep their values at construction.
    """

    def __init__(self, base_optimizer: torch.optim.Optimizer, net: torch.nn.Module, masks: dict):
        named = dict(net.named_parameters())
        unknown = [n for n in masks if n not in named]
        if unknown:
            raise ValueError(f"masks name unknown parameters: {unknown[:5]}")
        super().__init__(base_optimizer)
        self.net = net
        self.masks = {}
        for n, m in masks.items():
            if tuple(m.shape) != tuple(named[n].shape):
                raise ValueError(f"mask {n!r} has shape {tuple(m.shape)}, parameter has {tuple(named[n].shape)}")
            m = m.to(named[n].device, torch.bool)
            if not bool(m.all()):  # all-True masks are free: nothing to enforce
                self.masks[n] = m
        self._frozen = [(named[n], ~m) for n, m in self.masks.items()]  # (parameter, masked-out entries)
        self.reference = {n: named[n].detach().clone() for n in self.masks}

    @torch.no_grad()
    def _mask_grads(self) -> None:
        for p, out in self._frozen:
            if p.grad is not None:
                p.grad.masked_fill_(out, 0)  # masked_fill, not multiply: a NaN gradient there stays out

    def step(self, closure=None):
        """Masked base step; with a closure (zero grads, loss, backward, return loss) its gradients are
        masked each time it runs. Returns the closure's loss (None without a closure)."""
        if closure is None:
            self._mask_grads()
            loss = self.base_optimizer.step()
        else:

            def masked_closure():
                with torch.enable_grad():
                    out = closure()
                self._mask_grads()
                return out

            loss = self.base_optimizer.step(masked_closure)
        restore_masked_(self.net, self.masks, self.reference)
        with torch.no_grad():
            for p, out in self._frozen:
                for key, value in self.base_optimizer.state.get(p, {}).items():
                    if key != "step" and torch.is_tensor(value) and value.shape == p.shape:
                        value.masked_fill_(out, 0)
        return loss
