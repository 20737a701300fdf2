"""The method registry: keys, aliases, lookup, and method files that failed to import.

Keys are lower case; a method may declare aliases (the sharp-unlearn flags `FT`, `RL`, `NG`, ...).
Lookup is case-insensitive and resolves aliases. A method file that raises on import is recorded
here (`record_broken`) instead of taking the whole package down: `--list` shows it with its error
and asking for it gives that error, while every other method keeps working. Stdlib only.
"""

_METHODS: dict[str, type] = {}
_ALIASES: dict[str, str] = {}  # lower-case alias -> key
_BROKEN: dict[str, str] = {}  # module name -> why it failed to import


def register(key: str, aliases: tuple[str, ...] = ()):
    """Class decorator: add a method under `key` (lower case) and `aliases` (any case).

    Raises ValueError when the key or an alias is already taken by another class.
    """
    if key != key.lower() or not key:
        raise ValueError(f"method keys are lower case, got {key!r}")

    def add(cls):
        for name in (key, *aliases):
            owner = _lookup(name)
            if owner is not None and owner is not cls:
                raise ValueError(f"method {name!r} already registered by {owner.__module__}")
        cls.key = key
        cls.aliases = tuple(aliases)
        _METHODS[key] = cls
        for alias in aliases:
            if alias.lower() != key:
                _ALIASES[alias.lower()] = key
        return cls

    return add


def unregister(key: str) -> None:
    """Remove a method and its aliases (for tests and interactive sessions); KeyError if unknown."""
    cls = _lookup(key)
    if cls is None:
        raise KeyError(f"method {key!r} is not registered")
    del _METHODS[cls.key]
    for alias in [a for a, k in _ALIASES.items() if k == cls.key]:
        del _ALIASES[alias]


def _lookup(name: str):
    name = name.lower()
    return _METHODS.get(_ALIASES.get(name, name))


def get_method(name: str) -> type:
    """The class registered under `name` or one of its aliases, any case.

    ValueError listing the known keys otherwise, or giving the import error of a broken method file.
    """
    cls = _lookup(name)
    if cls is not None:
        return cls
    if name.lower() in _BROKEN:
        raise ValueError(f"method {name!r} cannot be used: its file failed to import: {_BROKEN[name.lower()]}")
    raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(_METHODS))}")


def all_method_handlers() -> dict[str, type]:
    """All registered methods as {key: class}, sorted by key."""
    return dict(sorted(_METHODS.items()))


def record_broken(module: str, reason: str) -> None:
    """Note that method file `module` failed to import, and why."""
    _BROKEN[module.lower()] = reason


def broken_methods() -> dict[str, str]:
    """{module name: import error} of the method files that failed to import."""
    return dict(sorted(_BROKEN.items()))
