"""The base of every optimizer that acts around another one's step (SAM, a mask, a step cap, gradient scales).

The wrapper shares the base optimizer's param groups, state and defaults (the davda54/sam pattern), so an LR
scheduler built on the wrapper moves the base's learning rates and `state_dict` is the base's; `step` and
`zero_grad` go to the base unless a subclass acts around them.
"""

import torch


class OptimizerWrapper(torch.optim.Optimizer):
    """`OptimizerWrapper(base_optimizer)`: the base's step, with its param groups, state and defaults."""

    def __init__(self, base_optimizer: torch.optim.Optimizer):
        self.base_optimizer = base_optimizer
        super().__init__(base_optimizer.param_groups, base_optimizer.defaults)
        self.param_groups = base_optimizer.param_groups
        self.state = base_optimizer.state
        self.defaults = base_optimizer.defaults

    def step(self, closure=None):
        return self.base_optimizer.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none=set_to_none)
