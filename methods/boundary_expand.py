"""`boundary_expand`: send the forget set to an extra shadow class, then prune the shadow class away.

Paper: Chen, Gao, Liu, Peng, Wang, "Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting
the Decision Boundary", CVPR 2023, arXiv 2303.11570; code: the authors' release (mirrored at
TY-LEE-KR/Boundary-Unlearning-Code, `boundary_unlearning.py` `boundary_expanding`), ported to random
forget sets by OPTML-Group/Unlearn-Saliency (`unlearn/boundary_ex.py`).

Method, as released. The classifier (the last nn.Linear) is widened to K + 1 outputs: rows 0..K−1 copy the
original's, the shadow row is xavier-normal with bias 0 (the release's `init_params`). Every parameter,
in train mode, minimises CE towards the shadow class K on the forget set only, SGD lr 1e-5, momentum 0.9,
no weight decay, 10 epochs in batches of 64, no augmentation. The network is then pruned back to K
outputs by dropping the shadow row; the features keep their trained weights. (SalUn's port keeps the
K + 1 outputs and initialises the shadow row with PyTorch's default; the kit scores K-way networks, as
the paper does.) Its main setting is class-wise (`--forget-class K`); on a random forget set every
example goes to the one shadow class (SalUn's use).

Budget: the 10 epochs scale with the preset's retraining (E/30, `_released`); `time_factor` multiplies them
(1: as released). No step cap (`--set max_update=...`).
"""

import torch
from torch import nn

from methods._partial import last_linear
from methods._train_loop import train_steps
from methods._train_params import build_optimizer
from methods.BaseMethod import register
from methods.boundary_shrink import BoundaryUnlearning, forget_batches


def widened(head: nn.Linear, generator: torch.Generator) -> nn.Linear:
    """`head` with one more output: its rows copied, the new row xavier-normal (from `generator`) and bias 0."""
    wide = nn.Linear(head.in_features, head.out_features + 1, bias=head.bias is not None).to(head.weight)
    with torch.no_grad():
        shadow = torch.empty(1, head.in_features)
        bound = (2.0 / (head.in_features + head.out_features + 1)) ** 0.5  # xavier normal's std, gain 1
        wide.weight[:-1] = head.weight
        wide.weight[-1:] = shadow.normal_(0.0, bound, generator=generator).to(head.weight)
        if head.bias is not None:
            wide.bias[:-1] = head.bias
            wide.bias[-1] = 0.0
    return wide


def _set_module(net: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, attr, module)


@register("boundary_expand", aliases=("BoundaryExpand", "BE"))
class BoundaryExpand(BoundaryUnlearning):
    """Train the forget set towards an extra shadow class on a widened classifier, then drop that class."""

    def run(self, net, retain_loader, forget_loader, val_loader):
        p = self.params
        g = self.generator("cpu")
        name = last_linear(net)
        head = net.get_submodule(name)
        shadow = head.out_features
        wide = widened(head, g)
        loader = forget_batches(forget_loader, p.batch_size, g)

        def to_shadow(m, x, y):
            return nn.functional.cross_entropy(m(x), torch.full_like(y, shadow))

        _set_module(net, name, wide)
        try:
            steps = self.steps(p.epochs, loader)
            opt = build_optimizer(p, net)
            self.log_["loss"] = train_steps(net, self.take(self.stream(loader, g), steps), to_shadow, opt)
            self.log_["steps"] = steps
        finally:
            _set_module(net, name, head)  # pruned back: the original module, its K rows from the trained head
        with torch.no_grad():
            head.weight.copy_(wide.weight[:-1])
            if head.bias is not None:
                head.bias.copy_(wide.bias[:-1])
        net.eval()
