"""Parameter importance as the mean squared mini-batch gradient (a diagonal Fisher estimate).

SSD (Foster et al. 2024) measures how much each parameter matters to a dataset by the squared gradient of
the mean cross-entropy of each mini-batch, summed over the batches and divided by their number (its
release adapts Avalanche's EWC importance). The network runs in eval mode (BN statistics read, never
updated) and its train/eval flags are restored; gradients come from torch.autograd.grad, so `.grad`
and the weights are left as they were.
"""

import torch
import torch.nn.functional as F

from methods._common import device_of, eval_mode, unpack
from methods._pergrad import per_example_grads, trainable


def batch_gradient_importance(net: torch.nn.Module, loader, loss_fn=None) -> dict[str, torch.Tensor]:
    """{parameter name: mean over the batches of (∇ loss(batch))²} for the parameters that require grad;
    `loss_fn(net, x, y)` defaults to the batch-mean cross-entropy."""
    loss_fn = loss_fn or (lambda m, x, y: F.cross_entropy(m(x), y))
    named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    acc = {n: torch.zeros_like(p, dtype=torch.promote_types(p.dtype, torch.float32)) for n, p in named}
    device, batches = device_of(net), 0
    flags = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        with torch.enable_grad():
            for batch in loader:
                x, y = unpack(batch, device)
                grads = torch.autograd.grad(loss_fn(net, x, y), [p for _, p in named], allow_unused=True)
                for (n, _), g in zip(named, grads):
                    if g is not None:
                        acc[n] += g.square()
                batches += 1
    finally:
        for m, flag in flags:
            m.training = flag
    return {n: a / max(batches, 1) for n, a in acc.items()}


#: below this many parameters per-example gradients come from `torch.func.vmap` (faster on the cpu preset's
#: 78k-parameter net: 0.56 s against 0.87 s for 64 examples), above it from a loop of one backward pass per
#: example and class (faster on ResNet-18: 11 s against 22-25 s for 32 examples; one thread each)
VMAP_MAX_PARAMETERS = 1_000_000


def predictive_fisher_diagonal(net: torch.nn.Module, batches) -> tuple[dict, int]:
    """({parameter name: mean over examples of Σ_y p_y(x)·(∇ log p_y(x))²}, number of examples): the diagonal
    of the Fisher under the model's own predictive distribution, every class weighted by its detached
    probability, one example at a time (Golatkar et al.'s `hessian`), in eval mode, `.grad` untouched."""
    named = trainable(net)
    acc = {n: torch.zeros_like(p, dtype=torch.promote_types(p.dtype, torch.float32)) for n, p in named}
    small = sum(p.numel() for _, p in named) < VMAP_MAX_PARAMETERS
    device, count = device_of(net), 0
    with eval_mode(net), torch.enable_grad():
        for batch in batches:
            x, _ = unpack(batch, device)
            with torch.no_grad():
                probs = F.softmax(net(x), dim=1)  # (b, C)
            if small:
                for c in range(probs.shape[1]):
                    target = torch.full((len(x),), c, dtype=torch.long, device=device)
                    (g,) = per_example_grads(net, x, target, flat=False)
                    for n in acc:
                        acc[n] += torch.einsum("b,b...->...", probs[:, c], g[n].square())
            else:
                params = [p for _, p in named]
                for i in range(len(x)):
                    logits = net(x[i : i + 1])
                    for c in range(probs.shape[1]):
                        target = torch.tensor([c], device=device)
                        grads = torch.autograd.grad(
                            F.cross_entropy(logits, target), params, retain_graph=True, allow_unused=True
                        )
                        for (n, _), g in zip(named, grads):
                            if g is not None:
                                acc[n] += probs[i, c] * g.square()
            count += len(x)
    return {n: a / max(count, 1) for n, a in acc.items()}, count
