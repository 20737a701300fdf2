"""The method contract, its hyperparameters and their checks.

Every unlearning method is a `BaseMethod` subclass registered with `@register("key")`:

    @register("my_method")
    class MyMethod(BaseMethod):
        '''One line that `main.py --list` shows.'''

        @dataclass
        class Params(BaseMethod.Params):
            epochs: int = 2        # passes over the retain set

        def run(self, net, retain_loader, forget_loader, val_loader):
            ...                    # change net in place, end with net.eval()

Hyperparameters live in the nested `Params` dataclass (one place, with defaults). One name per
concept across all methods (`epochs`, `lr`, `optimizer`, `schedule`, `momentum`, `weight_decay`,
`batch_size`, and `sam`, `rho`, `adaptive`, `sam_lambda` for SAM), so their range checks are
written once here (`COMMON_CHECKS`) and run for every method that has the field; a method adds
its own in `Params.__post_init__`. A method may accept its paper's names as `param_aliases`
({"eta_theta": "lr"}). `--set key=value` overrides are parsed by `parse_overrides`.

Tuning ranges sit next to the defaults, as the class attribute `search_space` (2-5 parameters, the
ones that matter; `scripts/sweep.py --optuna N` searches them, every method with the same budget):

        search_space = {"lr": ("log", 1e-3, 0.3),        # log-uniform, 0 < lo < hi
                        "epochs": ("int", 1, 3),          # integers lo..hi (inclusive)
                        "alpha": ("float", 0.3, 0.9),     # uniform on [lo, hi]
                        "kind": ("choice", ["a", "b"])}   # one of the values

Names are canonical `Params` fields (not `seed`), each range contains the default, and both ends
and every choice pass the parameter checks; `validate_search_space` checks all that (ValueError
naming the problem). A method with nothing to tune (`none`, `retrain`) keeps `{}`.

This file imports only the standard library, torch and the registry, so the notebook generator can
paste it into a Kaggle notebook whole.
"""

import ast
import dataclasses
import math
import types
import typing
from dataclasses import dataclass

import torch

from methods._registry import all_method_handlers, get_method, register, unregister

SEED_LIMIT = 2**64  # torch.Generator.manual_seed takes seeds in [0, 2**64)
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "onecycle", "constant")
SEARCH_KINDS = ("float", "log", "int", "choice")
ORIGINS = ("published", "ported", "ours", "reference")  # the kinds of range a `search_space` entry may have


def _in(options):
    return lambda v: v in options, f"one of {', '.join(map(str, options))}"


#: checks shared by every method that has the field: {name: (predicate, what it must be)}
COMMON_CHECKS = {
    "seed": (lambda v: 0 <= v < SEED_LIMIT, "an integer in [0, 2**64) or None"),
    "epochs": (lambda v: v >= 1, ">= 1"),
    "lr": (lambda v: v > 0, "> 0"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "batch_size": (lambda v: v >= 1, ">= 1"),
    "optimizer": _in(OPTIMIZERS),
    "schedule": _in(SCHEDULES),
    "sam": _in((None, "min", "max")),
    "rho": (lambda v: v >= 0, ">= 0"),
    "sam_lambda": (lambda v: v >= 0, ">= 0"),
    "max_update": (lambda v: v >= 0, ">= 0 (0: no cap)"),
    "fresh_max_update": (lambda v: v >= 0, ">= 0 (0: no cap)"),
    "epoch_fraction": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "time_factor": (lambda v: 0 < v <= 1, "in (0, 1] (1: the released epochs)"),
    "min_steps": (lambda v: v >= 0, ">= 0"),
    "kd_T": (lambda v: v > 0, "> 0"),
    "impair_steps": (lambda v: v >= 0, ">= 0"),
    "repair_steps": (lambda v: v >= 0, ">= 0"),
    "signal_batches": (lambda v: v >= 1, ">= 1"),
}


class BaseMethod:
    """Base class of all unlearning methods.

    Subclasses set `Params` (a dataclass deriving from `BaseMethod.Params`) and implement `run`.
    `__init__` only builds `self.params`; `run` does all the work. Learned or logged state that a
    run produces goes in `self.log_` (a JSON-serialisable dict the evaluator stores per run).
    """

    key: str = ""
    aliases: tuple[str, ...] = ()
    #: False for reference rows (e.g. `retrain`) that are not valid competition entries; they are
    #: exempt from the efficiency rule.
    valid_entry: bool = True
    #: where the algorithm comes from: "published" (a paper's or a team's release, run as published: no
    #: kit mechanism such as a step cap, entry noise or a step floor), "ported" (a published method
    #: adapted to image classifiers, each adaptation documented and ablated), "ours" (anything goes,
    #: documented) or "reference" (`none`, `retrain`)
    origin: str = "ours"
    #: the paper's names for canonical parameters, e.g. {"eta_theta": "lr"}
    param_aliases: dict[str, str] = {}
    #: tuning ranges next to the defaults: {param: ("float", lo, hi) | ("log", lo, hi) | ("int", lo, hi)
    #: | ("choice", [values])} (see the module docstring; checked by `validate_search_space`)
    search_space: dict = {}

    @dataclass
    class Params:
        seed: int | None = None  # None: fresh randomness on every run (the scorer needs run-to-run variety)

    def __init__(self, **overrides):
        self.params = self.make_params(**overrides)
        self.log_: dict = {}

    @classmethod
    def make_params(cls, **overrides):
        """`Params` with `overrides` (aliases resolved), every check run; ValueError naming the problem."""
        overrides = cls.resolve_aliases(overrides)
        names = [f.name for f in dataclasses.fields(cls.Params)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(unknown)} for method {cls.key!r}; valid: {', '.join(names)}"
            )
        params = cls.Params(**overrides)
        for f in dataclasses.fields(params):
            value = getattr(params, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number, got {value}")
            check = COMMON_CHECKS.get(f.name)
            if check is not None and value is not None and not check[0](value):
                raise ValueError(f"{f.name} must be {check[1]}, got {value!r}")
        return params

    @classmethod
    def resolve_aliases(cls, overrides: dict) -> dict:
        """Overrides with the paper's names mapped to the canonical ones (both given: ValueError)."""
        out = {}
        for k, v in overrides.items():
            name = cls.param_aliases.get(k, k)
            if name in out:
                raise ValueError(f"parameter {name!r} given twice (as {k!r} and {name!r})")
            out[name] = v
        return out

    @classmethod
    def validate_search_space(cls, space: dict | None = None) -> dict:
        """`space` (default: the method's `search_space`) checked against `Params`; returned as is.

        Raises ValueError naming the method and the parameter unless: every name is a `Params` field
        in its canonical spelling (not `seed`: each run needs its own); each entry is ("float", lo, hi)
        on a float field, ("log", lo, hi) with 0 < lo, ("int", lo, hi) with integer ends, or
        ("choice", [at least two values]); lo < hi, both finite; the default lies in [lo, hi] or among
        the choices; and both ends and every choice pass the parameter checks (`make_params`)."""
        space = cls.search_space if space is None else space
        where = f"search_space of method {cls.key or cls.__name__!r}"
        if not isinstance(space, dict):
            raise ValueError(f"{where} must be a dict {{param: (kind, ...)}}, got {type(space).__name__}")
        hints = typing.get_type_hints(cls.Params)
        defaults = cls.defaults()
        for name, spec in space.items():
            if name not in hints:
                canonical = cls.param_aliases.get(name)
                hint = (
                    f"; use its canonical name {canonical!r}"
                    if canonical
                    else f"; valid: {', '.join(n for n in hints if n != 'seed')}"
                )
                raise ValueError(f"{where}: {name!r} is not a parameter{hint}")
            if name == "seed":
                raise ValueError(f"{where}: 'seed' cannot be tuned (every run needs its own seed)")
            kind = spec[0] if isinstance(spec, (tuple, list)) and spec else None
            if kind not in SEARCH_KINDS:
                raise ValueError(
                    f"{where}: {name!r} must be (kind, ...) with kind one of {', '.join(SEARCH_KINDS)}, got {spec!r}"
                )
            allowed, default = _allowed_types(hints[name]), defaults[name]
            if kind == "choice":
                if len(spec) != 2 or not isinstance(spec[1], (list, tuple)) or len(set(map(repr, spec[1]))) < 2:
                    raise ValueError(
                        f"{where}: {name!r} must be ('choice', [two or more distinct values]), got {spec!r}"
                    )
                values = list(spec[1])
                if not any(type(v) is type(default) and v == default for v in values):
                    raise ValueError(f"{where}: the default {name}={default!r} is not among the choices {values}")
            else:
                if len(spec) != 3 or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in spec[1:]
                ):
                    raise ValueError(f"{where}: {name!r} must be ({kind!r}, lo, hi) with finite numbers, got {spec!r}")
                lo, hi = spec[1], spec[2]
                if not lo < hi:
                    raise ValueError(f"{where}: {name!r} needs lo < hi, got {spec!r}")
                if kind == "log" and lo <= 0:
                    raise ValueError(f"{where}: the log range of {name!r} must be positive, got {spec!r}")
                if kind == "float" and float not in allowed:
                    raise ValueError(
                        f"{where}: {name!r} is not a float parameter: use ('int', lo, hi) or "
                        f"('choice', [...]), got {spec!r}"
                    )
                if float not in allowed and not (int in allowed and type(lo) is int and type(hi) is int):
                    raise ValueError(f"{where}: {name!r} is an integer parameter: {spec!r} needs integer ends")
                if isinstance(default, bool) or not isinstance(default, (int, float)) or not lo <= default <= hi:
                    raise ValueError(f"{where}: the default {name}={default!r} is outside the range {spec!r}")
                values = [lo, hi]
            for v in values:
                try:
                    cls.make_params(**{name: coerce_value(name, v, hints[name])})
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{where}: {name}={v!r} (in the range) is refused: {exc}") from None
        return space

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

    def run_requests(self, net: torch.nn.Module, retain_loaders, forget_loaders, val_loader):
        """Unlearn forget requests that arrive one after another; a generator.

        Request j gives `retain_loaders[j]` (the data still kept after it: the original retain set
        plus the requests still to come) and `forget_loaders[j]` (that request's examples). After
        request j is processed it yields j, and `net` is then the model a user would hold at that
        time (the sequential-requests evaluation scores it). The default calls `run` once per
        request, each with its own random stream: request 0 uses `params.seed`, request j > 0 a
        seed drawn from it (or fresh when the seed is None), so no two requests share a stream.
        A method that carries state across requests (`ams`) overrides this."""
        if len(retain_loaders) != len(forget_loaders):
            raise ValueError(f"{len(retain_loaders)} retain loaders for {len(forget_loaders)} forget requests")
        base = self.params
        try:
            for j, (seed, retain, forget) in enumerate(
                zip(request_seeds(base.seed, len(forget_loaders)), retain_loaders, forget_loaders)
            ):
                self.params = dataclasses.replace(base, seed=seed)
                self.run(net, retain, forget, val_loader)
                yield j
        finally:
            self.params = base


def request_seeds(seed: int | None, n: int) -> list[int | None]:
    """Seeds of n sequential requests: [seed, s_1, ..., s_{n-1}], the s_j drawn from a stream of their own
    (seeded by the run's seed plus a fixed offset), so no two requests share a stream; all None (fresh
    randomness per request) when the seed is None."""
    if seed is None:
        return [None] * n
    stream = torch.Generator().manual_seed((seed + 0x9E3779B97F4A7C15) % SEED_LIMIT)
    return [seed] + [int(torch.randint(0, 2**62, (1,), generator=stream)) for _ in range(n - 1)]


# ---------------------------------------------------------------------------------------------
# --set key=value parsing, checked against the Params field types


def _allowed_types(annotation) -> tuple:
    if isinstance(annotation, (types.UnionType,)) or typing.get_origin(annotation) is typing.Union:
        return tuple(t for t in typing.get_args(annotation))
    return (annotation,)


_WORDS = {"true": True, "false": False, "none": None}
_NON_FINITE = ("nan", "inf", "+inf", "-inf", "infinity", "-infinity")


def coerce_value(name: str, raw, annotation):
    """Convert `raw` (a string from the CLI or a Python value) to the field's type or raise ValueError."""
    value = raw
    allowed = _allowed_types(annotation)
    if isinstance(raw, str):
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            low = raw.lower()
            # nan/inf only mean numbers for float fields (to be refused below); elsewhere they are text
            value = float(low) if float in allowed and low in _NON_FINITE else _WORDS.get(low, raw)
    if value is None and type(None) in allowed:
        return None
    if isinstance(raw, str) and str in allowed and not any(type(value) is t for t in allowed):
        return raw  # a text field takes the text as given: cap=none, mode=1, flag=true
    for t in allowed:
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError(f"parameter {name!r} must be a finite number, got {raw!r}")
            return float(value)
        if t in (bool, int, str) and type(value) is t:
            return value
    names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
    raise ValueError(f"parameter {name!r} expects {names}, got {raw!r}")


def parse_overrides(cls: type[BaseMethod], items) -> dict:
    """Parse ["key=value", ...] (or a dict) into typed overrides for `cls.Params`, aliases resolved.

    Raises ValueError naming the bad key (with the valid ones), a key given twice, or the bad value;
    every range check runs now, before any work.
    """
    if isinstance(items, dict):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items or []:
            if "=" not in item:
                raise ValueError(f"--set expects key=value, got {item!r}")
            k, v = item.split("=", 1)
            pairs.append((k.strip(), v.strip()))
    hints = typing.get_type_hints(cls.Params)
    out = {}
    for k, v in pairs:
        name = cls.param_aliases.get(k, k)
        if name not in hints:
            raise ValueError(f"unknown parameter {k!r} for method {cls.key!r}; valid: {', '.join(hints)}")
        if name in out:
            raise ValueError(f"parameter {name!r} given twice")
        out[name] = coerce_value(name, v, hints[name])
    cls.make_params(**out)
    return out


__all__ = [
    "BaseMethod",
    "COMMON_CHECKS",
    "SEARCH_KINDS",
    "all_method_handlers",
    "coerce_value",
    "get_method",
    "parse_overrides",
    "register",
    "request_seeds",
    "unregister",
]
