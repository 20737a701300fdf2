"""The frozen original model ("teacher"): a snapshot of the network at the entry of `run()`.

SCRUB (meghdadk/SCRUB) and the distillation entries to the NeurIPS 2023 Machine Unlearning Challenge
(Kaggle; `amnesiacs`, `forget`) compare the student with θ₀. A method sees only what `run()` receives,
so the kit's contract asks for a deep copy taken at entry, kept in eval mode and never in an optimizer
(its parameters have requires_grad False, so it cannot drift even if passed to one by mistake). Imports
only the standard library and torch.
"""

import copy

import torch


def frozen_copy(net: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of `net` in eval mode, every parameter with requires_grad False and no .grad."""
    frozen = copy.deepcopy(net).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
        p.grad = None
    return frozen


class Teacher:
    """`Teacher(net)` snapshots `net`; `teacher(x)` returns its logits under no_grad in eval mode."""

    def __init__(self, net: torch.nn.Module):
        self.module = frozen_copy(net)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.module.eval()  # re-asserted per call: BN must read, never update, its running statistics
        with torch.no_grad():
            return self.module(x)
