"""Registry of unlearning methods.

Every non-underscore module of this package is imported here, so adding a method is one file with a
`@register("key")` class: no list to edit. A file that fails to import (a syntax error, a missing
package) is recorded with its error and skipped, so the other methods, `--list` and the
leaderboard keep working. `all_method_handlers()` returns {key: class}; `broken_methods()` the
files that failed.
"""

import importlib
import pkgutil
import traceback

from methods._registry import all_method_handlers, broken_methods, get_method, record_broken, register, unregister
from methods.BaseMethod import BaseMethod, parse_overrides

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_") and _info.name != "BaseMethod":
        try:
            importlib.import_module(f"{__name__}.{_info.name}")
        except Exception as _exc:  # noqa: BLE001 (report any failure of one file, keep the others)
            _where = traceback.extract_tb(_exc.__traceback__)[-1] if _exc.__traceback__ else None
            _line = getattr(_exc, "lineno", None) or (_where.lineno if _where else "?")
            record_broken(_info.name, f"{type(_exc).__name__} in methods/{_info.name}.py line {_line}: {_exc}")


def available_methods() -> list[str]:
    """Sorted keys of all registered methods."""
    return list(all_method_handlers())


__all__ = [
    "BaseMethod",
    "all_method_handlers",
    "available_methods",
    "broken_methods",
    "get_method",
    "parse_overrides",
    "register",
    "unregister",
]
