"""The method contract and the registry.

Every unlearning method is a `BaseMethod` subclass registered with `@register("key")`:

    @register("my_method")
    class MyMethod(BaseMethod):
        '''One line that `main.py --list` shows.'''

        @dataclass
        class Params(BaseMethod.Params):
            epochs: int = 2        # passes over the retain set

        def run(self, net, retain_loader, forget_loader, val_loader):
            ...                    # change net in place, end with net.eval()

Hyperparameters live in the nested `Params` dataclass (one place, with defaults); `--set key=value`
overrides are checked against its field types by `parse_overrides`. This file imports only the
standard library and torch, so the notebook generator can paste it into a Kaggle notebook whole.
"""
import ast
import dataclasses
import types
import typing
from dataclasses import dataclass

import torch

_METHODS: dict[str, type["BaseMethod"]] = {}


def register(key: str):
    """Class decorator: add a method to the registry under `key` (rejects duplicates)."""
    def add(cls):
        if key in _METHODS and _METHODS[key] is not cls:
            raise ValueError(f"method {key!r} already registered by {_METHODS[key].__module__}")
        cls.key = key
        _METHODS[key] = cls
        return cls
    return add


def all_method_handlers() -> dict[str, type["BaseMethod"]]:
    """All registered methods as {key: class}, sorted by key."""
    return dict(sorted(_METHODS.items()))


def get_method(key: str) -> type["BaseMethod"]:
    """The class registered under `key`; ValueError listing the known keys otherwise."""
    if key not in _METHODS:
        raise ValueError(f"unknown method {key!r}; known methods: {', '.join(sorted(_METHODS))}")
    return _METHODS[key]


class BaseMethod:
    """Base class of all unlearning methods.

    Subclasses set `Params` (a dataclass deriving from `BaseMethod.Params`) and implement `run`.
    `__init__` only builds `self.params`; `run` does all the work. Learned or logged state that a
    run produces goes in `self.log_` (a JSON-serialisable dict the evaluator stores per run).
    """

    key: str = ""
    #: False for reference rows (e.g. `retrain`) that are not valid competition entries; they are
    #: exempt from the efficiency rule.
    valid_entry: bool = True

    @dataclass
    class Params:
        seed: int | None = None  # None: fresh randomness on every run (the scorer needs run-to-run variety)

    def __init__(self, **overrides):
        names = [f.name for f in dataclasses.fields(self.Params)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for method {self.key!r}; "
                             f"valid: {', '.join(names)}")
        self.params = self.Params(**overrides)
        self.log_: dict = {}

    @classmethod
    def summary(cls) -> str:
        """First line of the class docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    @classmethod
    def defaults(cls) -> dict:
        """Default hyperparameters as a dict."""
        return dataclasses.asdict(cls.Params())

    def configure(self, recipe) -> None:
        """Hook: receive the preset's training recipe before `run` (only `retrain` needs it)."""

    def generator(self, device="cpu") -> torch.Generator:
        """A torch.Generator seeded from `params.seed`, or freshly when the seed is None."""
        g = torch.Generator(device=device)
        if self.params.seed is None:
            g.seed()
        else:
            g.manual_seed(self.params.seed)
        return g

    def run(self, net: torch.nn.Module, retain_loader, forget_loader, val_loader) -> None:
        """Unlearn the forget set: change `net` in place and leave it in eval mode."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# --set key=value parsing, checked against the Params field types

def _allowed_types(annotation) -> tuple:
    if isinstance(annotation, (types.UnionType,)) or typing.get_origin(annotation) is typing.Union:
        return tuple(t for t in typing.get_args(annotation))
    return (annotation,)


def coerce_value(name: str, raw, annotation):
    """Convert `raw` (a string from the CLI or a Python value) to the field's type or raise ValueError."""
    value = raw
    if isinstance(raw, str):
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = {"true": True, "false": False, "none": None}.get(raw.lower(), raw)
    allowed = _allowed_types(annotation)
    if value is None and type(None) in allowed:
        return None
    for t in allowed:
        if t is type(None):
            continue
        if t is bool:
            if isinstance(value, bool):
                return value
        elif t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        elif t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        elif t is str and isinstance(value, str):
            return value
    names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
    raise ValueError(f"parameter {name!r} expects {names}, got {raw!r}")


def parse_overrides(cls: type[BaseMethod], items) -> dict:
    """Parse ["key=value", ...] (or a dict) into typed overrides for `cls.Params`.

    Raises ValueError naming the bad key (with the valid ones) or the bad value.
    """
    pairs = items.items() if isinstance(items, dict) else []
    if not isinstance(items, dict):
        pairs = []
        for item in items or []:
            if "=" not in item:
                raise ValueError(f"--set expects key=value, got {item!r}")
            k, v = item.split("=", 1)
            pairs.append((k.strip(), v.strip()))
    hints = typing.get_type_hints(cls.Params)
    out = {}
    for k, v in pairs:
        if k not in hints:
            raise ValueError(f"unknown parameter {k!r} for method {cls.key!r}; valid: {', '.join(hints)}")
        out[k] = coerce_value(k, v, hints[k])
    cls(**out)  # runs Params.__post_init__ range checks now, before any work
    return out
