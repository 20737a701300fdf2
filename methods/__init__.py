"""Registry of unlearning methods.

Every non-underscore module of this package is imported here, so adding a method is one file with a
`@register("key")` class: no list to edit. `all_method_handlers()` returns {key: class}.
"""
import importlib
import pkgutil

from methods.BaseMethod import (BaseMethod, all_method_handlers, get_method, parse_overrides,
                                register)

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")


def available_methods() -> list[str]:
    """Sorted keys of all registered methods."""
    return list(all_method_handlers())


__all__ = ["BaseMethod", "all_method_handlers", "available_methods", "get_method", "parse_overrides",
           "register"]
