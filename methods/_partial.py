"""Partial training: layers chosen by module type, training only some of them, and fractions of an epoch.

The NeurIPS 2023 Machine Unlearning Challenge (Kaggle) entries, as the competition report summarizes them
(Triantafillou et al. 2024, arXiv 2406.09073), reset "the first conv and the fc layer" (`amnesiacs`),
"the fc layer" and fine-tune "a random subset of layers (not BatchNorm)" (`sun`), or reset "a random
subset of layers" (`forget`). Layers are chosen by module type, never by attribute name, so one method
runs on the cpu preset's SmallResNet (`stem.0`, `layer1.conv1`, ..., `fc`), the tests' TinyCNN
(`features.0`, ...) and torchvision's ResNet-18 (`conv1`, `layer1.0.conv1`, ..., `fc`) alike:

- `weight_layers(net)`: the modules that hold parameters of their own (Conv, Linear, and BatchNorm
  unless `batchnorm=False`), in `named_modules` order; `first_conv(net)` the first `nn.Conv2d`,
  `last_linear(net)` the last `nn.Linear` (the classifier head).
- `random_layers(names, k, generator)`: k of them without replacement, drawn from the generator.
- `layer_parameters(net, names)`: the parameters of those modules (for `build_optimizer(parameters=)`),
  `layer_masks(net, names)`: {parameter name: bool mask}, True inside them (for `_noise.add_weight_noise_`).
- `only_trainable(net, params)`: a context in which every other parameter has requires_grad False
  (autograd then skips their gradients and stops at the earliest trainable layer), flags restored on exit.
- `PartialEpochs(loader, fraction, min_steps)`: each "epoch" yields max(min_steps, round(fraction ·
  len(loader))) batches, at least one, from fresh passes over `loader` (its shuffle; several passes when
  min_steps exceeds the loader), so a cut epoch sees a different subset every time and a tiny data set
  still gets `min_steps` steps.
- `fresh_layer_optimizer(p, net, fresh, fresh_max_update)`: `build_optimizer`'s optimizer (SAM included)
  whose per-tensor step cap (`_trust`) is `fresh_max_update` on the parameters `fresh` (re-initialised
  layers, which must travel far from their random draw), optional other caps on other groups, and
  `p.max_update` on the rest, so a learning rate that is safe for the trained layers of one network does
  not freeze the fresh ones.
Imports the standard library, torch and `_common` / `_train_params` / `_trust`.
"""

import contextlib
import dataclasses
import itertools

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from methods._common import cycle
from methods._train_params import build_optimizer
from methods._trust import SplitStepCap


def weight_layers(net: nn.Module, batchnorm: bool = True) -> list[str]:
    """Names of the modules with parameters of their own, in named_modules order (BatchNorm dropped if asked)."""
    return [
        name
        for name, m in net.named_modules()
        if any(True for _ in m.parameters(recurse=False)) and (batchnorm or not isinstance(m, _BatchNorm))
    ]


def _module_of_type(net: nn.Module, kind, first: bool) -> str:
    names = [name for name, m in net.named_modules() if isinstance(m, kind)]
    if not names:
        raise ValueError(f"{type(net).__name__} has no {kind.__name__}")
    return names[0] if first else names[-1]


def first_conv(net: nn.Module) -> str:
    """Name of the first nn.Conv2d in named_modules order (the stem convolution)."""
    return _module_of_type(net, nn.Conv2d, first=True)


def last_linear(net: nn.Module) -> str:
    """Name of the last nn.Linear in named_modules order (the classifier head, "fc")."""
    return _module_of_type(net, nn.Linear, first=False)


def random_layers(names: list[str], k: int, generator: torch.Generator) -> list[str]:
    """`k` of `names` (clipped to [0, len(names)]) drawn without replacement from `generator`, in `names` order."""
    k = max(0, min(int(k), len(names)))
    picked = torch.randperm(len(names), generator=generator, device=generator.device)[:k].tolist()
    return [names[i] for i in sorted(picked)]


def layer_parameters(net: nn.Module, names) -> list[nn.Parameter]:
    """The parameters of the modules `names` (everything inside a container), each once, in net.parameters() order."""
    modules = dict(net.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ValueError(f"unknown module names {unknown}")
    chosen = {id(p) for n in names for p in modules[n].parameters()}
    return [p for p in net.parameters() if id(p) in chosen]


def layer_masks(net: nn.Module, names) -> dict[str, torch.Tensor]:
    """{parameter name: bool tensor} for every parameter of `net`: True inside the modules `names`, False elsewhere."""
    chosen = {id(p) for p in layer_parameters(net, names)}
    return {n: torch.full_like(p, id(p) in chosen, dtype=torch.bool) for n, p in net.named_parameters()}


@contextlib.contextmanager
def only_trainable(net: nn.Module, params):
    """Inside: requires_grad False on every parameter of `net` not in `params`; the previous flags on exit."""
    keep = {id(p) for p in params}
    flags = [(p, p.requires_grad) for p in net.parameters()]
    try:
        for p, _ in flags:
            if id(p) not in keep:
                p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class PartialEpochs:
    """`PartialEpochs(loader, fraction, min_steps=0)`: iterating gives max(1, min_steps, round(fraction ·
    len(loader))) batches from fresh passes over `loader`; fraction 1 and min_steps <= len(loader) is one pass."""

    def __init__(self, loader, fraction: float, min_steps: int = 0):
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"an epoch fraction must be in (0, 1], got {fraction}")
        if min_steps < 0:
            raise ValueError(f"min_steps must be >= 0, got {min_steps}")
        self.loader, self.steps = loader, max(1, int(min_steps), round(fraction * len(loader)))

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        return itertools.islice(cycle(self.loader), self.steps)


def fresh_layer_optimizer(p, net: nn.Module, fresh, fresh_max_update: float, parameters=None, more_caps=()):
    """`build_optimizer(p, net, parameters)` with step cap `fresh_max_update` on the tensors in `fresh`, the
    caps of `more_caps` [(tensors, max_update)] on theirs, and `p.max_update` on the rest (`parameters`,
    default all of net's). A tensor in several groups takes the first. Returns a `SplitStepCap`."""
    params = list(parameters if parameters is not None else net.parameters())
    taken, caps = set(), []
    for group, cap in [(fresh, fresh_max_update), *more_caps]:
        ids = {id(q) for q in group} - taken
        caps.append(([q for q in params if id(q) in ids], cap))
        taken |= ids
    caps.append(([q for q in params if id(q) not in taken], getattr(p, "max_update", 0.0)))
    base = build_optimizer(dataclasses.replace(p, max_update=0.0), net, parameters=params)
    return SplitStepCap(base, caps)


def last_k_layers(net: nn.Module, k: int) -> tuple[list[str], list[str]]:
    """The last `k` Conv2d/Linear layers counted backwards, as Goel et al. release them (shash42/Evaluating-
    Inexact-Unlearning `getRetrainLayers`): Conv2d, BatchNorm and Linear modules in registration order,
    reversed, walked until k Conv2d/Linear ones are passed (the classifier first, shortcut convs counted).
    Returns (the counted Conv2d/Linear names, the BatchNorm names passed on the way: trained, never counted)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    walk = [(n, m) for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, _BatchNorm))]
    counted, passed = [], []
    for name, module in reversed(walk):
        if len(counted) >= k:
            break
        (passed if isinstance(module, _BatchNorm) else counted).append(name)
    return counted, passed
