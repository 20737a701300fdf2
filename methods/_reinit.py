"""Re-initialisation from the architecture's own initialisers (each module's `reset_parameters`).

- `reset_all(net, seed)`: the whole network, as `reset_weights` in methods/_train_recipe.py did (retrain).
- `reinit_modules(net, select, generator)`: chosen layers, every module inside a chosen container
  included (entries to the NeurIPS 2023 Machine Unlearning Challenge on Kaggle reset the first conv and
  the fc layer (Amnesiacs), the fc layer alone (Sun), or random layers (Kyungpook/LG's "Forget")).
- `reinit_entries(net, masks, generator)`: chosen entries of parameters (low-saliency or low-norm
  weights), each drawn from a reset copy of the parameter's owning module.
All draws happen inside torch.random.fork_rng, seeded from `seed` or from one draw of `generator`,
so the global RNG is untouched and a given seed reproduces the result. When the network is on CUDA
every visible CUDA device is forked, because torch.manual_seed seeds them all.
Imports only the standard library and torch.
"""

import contextlib
import copy

import torch


@contextlib.contextmanager
def _reinit_rng(net: torch.nn.Module, seed: int | None):
    """Forked torch RNG (CPU, plus CUDA when `net` is there) seeded with `seed` (None: fresh)."""
    on_cuda = any(p.device.type == "cuda" for p in net.parameters())
    devices = list(range(torch.cuda.device_count())) if on_cuda else []
    with torch.random.fork_rng(devices=devices):
        if seed is None:
            torch.seed()
        else:
            torch.manual_seed(seed)
        yield


def _reinit_seed(generator: torch.Generator | None) -> int | None:
    """One seed drawn from `generator` (None stays None: a fresh seed)."""
    if generator is None:
        return None
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))


def _reinit_module_(module: torch.nn.Module) -> bool:
    """Reset one module's own parameters and running statistics; whether it had any to reset."""
    did = False
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
        did = True
    if hasattr(module, "reset_running_stats"):
        module.reset_running_stats()
        did = True
    return did


def reset_all(net: torch.nn.Module, seed: int | None = None) -> None:
    """Re-initialise every module with `reset_parameters` / `reset_running_stats`, from `seed`."""
    with _reinit_rng(net, seed):
        for module in net.modules():
            _reinit_module_(module)


def reinit_modules(net: torch.nn.Module, select, generator: torch.Generator | None = None) -> list[str]:
    """Reset the modules chosen by `select` (names from net.named_modules(), or predicate(name, module)).

    A chosen container resets every module inside it. Returns the names of the modules actually reset
    (those with `reset_parameters` or `reset_running_stats`), in named_modules order.
    """
    modules = dict(net.named_modules())
    if callable(select):
        chosen = [n for n, m in modules.items() if select(n, m)]
    else:
        chosen = list(select)
        unknown = [n for n in chosen if n not in modules]
        if unknown:
            valid = [n for n in modules if n][:12]
            raise ValueError(f"unknown module names {unknown}; valid names include {valid}")
    picked = {id(sub) for n in chosen for sub in modules[n].modules()}
    done = []
    with _reinit_rng(net, _reinit_seed(generator)):
        for name, module in modules.items():
            if id(module) in picked and _reinit_module_(module):
                done.append(name)
    return done


def reinit_entries(net: torch.nn.Module, masks: dict, generator: torch.Generator | None = None) -> float:
    """Set p = where(mask, fresh, p) for each parameter in `masks` (True = re-initialise that entry).

    `fresh` is the parameter of a deep copy of its owning module after that copy's `reset_parameters`.
    Entries outside the mask stay bit-identical. Returns the re-initialised fraction of the entries of
    the tensors named in `masks`.
    """
    named, modules = dict(net.named_parameters()), dict(net.named_modules())
    owners: dict[str, list[tuple[str, str]]] = {}  # owner module name -> [(parameter name, attribute)]
    for name in masks:
        if name not in named:
            raise ValueError(f"masks name an unknown parameter {name!r}")
        owner, _, attr = name.rpartition(".")
        if not hasattr(modules[owner], "reset_parameters"):
            raise ValueError(f"module {owner!r} owning {name!r} has no reset_parameters")
        owners.setdefault(owner, []).append((name, attr))
    changed = total = 0
    with _reinit_rng(net, _reinit_seed(generator)), torch.no_grad():
        for owner in sorted(owners, key=list(modules).index):  # fixed order: reproducible draws
            fresh = copy.deepcopy(modules[owner])
            fresh.reset_parameters()
            for name, attr in owners[owner]:
                p, m = named[name], masks[name].to(named[name].device, torch.bool)
                p.copy_(torch.where(m, getattr(fresh, attr).to(p.dtype), p))
                changed += int(m.sum())
                total += p.numel()
    return changed / max(total, 1)


def kaiming_normal_layers(net: torch.nn.Module, names, generator: torch.Generator | None = None) -> None:
    """Weights of the modules `names` from torch.nn.init.kaiming_normal_ at its defaults (fan_in, gain √2),
    biases 0 (Goel et al.'s `_reinit`, not the architecture's own initialisers), drawn from `generator`."""
    modules = dict(net.named_modules())
    with _reinit_rng(net, _reinit_seed(generator)), torch.no_grad():
        for name in names:
            torch.nn.init.kaiming_normal_(modules[name].weight)
            if getattr(modules[name], "bias", None) is not None:
                modules[name].bias.zero_()
