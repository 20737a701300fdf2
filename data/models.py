"""Architectures by name: each is a module `data/archs/<name>.py` with `build(num_classes)`.

The registry is the folder itself (no list to edit), and `arch_module(name)` names the module a
cache key must cover: a bank fingerprints its own architecture's file, not the others'.
"""

import importlib
import pkgutil

from torch import nn

import data.archs


def architectures() -> list[str]:
    """The known architecture names (the modules of data/archs), sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(data.archs.__path__) if not m.name.startswith("_"))


def arch_module(arch: str) -> str:
    """The module that defines architecture `arch`; ValueError listing the known ones otherwise."""
    if arch not in architectures():
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(architectures())}")
    return f"data.archs.{arch}"


def build_model(arch: str, num_classes: int) -> nn.Module:
    """A freshly initialised model of architecture `arch`."""
    return importlib.import_module(arch_module(arch)).build(num_classes)
