"""Every method's `search_space` (the tuning ranges next to its defaults) passes
`BaseMethod.validate_search_space`, and the check refuses malformed spaces."""

import warnings
from dataclasses import dataclass

import pytest

import methods
from methods._train_params import TrainParams
from methods.BaseMethod import BaseMethod

NOTHING_TO_TUNE = ("none", "retrain")


@pytest.mark.parametrize("key", methods.available_methods())
def test_declared_search_space_is_valid(key):
    cls = methods.get_method(key)
    space = cls.validate_search_space()
    if not space and key not in NOTHING_TO_TUNE:
        warnings.warn(f"method {key!r} declares no search_space: `scripts/sweep.py --optuna` cannot tune it")


class Tmp(BaseMethod):
    """Not registered: only its Params matter here."""

    key = "_tmp_space"
    param_aliases = {"eta": "lr"}

    @dataclass
    class Params(TrainParams):
        alpha: float = 0.5
        steps: int = 10
        mode: str = "a"
        flag: bool = False
        cap: int | None = None


GOOD = {
    "lr": ("log", 1e-3, 0.1),
    "epochs": ("int", 1, 3),
    "alpha": ("float", 0.1, 0.9),
    "steps": ("log", 2, 64),
    "mode": ("choice", ["a", "b"]),
    "flag": ("choice", [False, True]),
    "optimizer": ("choice", ("sgd", "adam")),
}


def test_a_good_space_passes():
    assert Tmp.validate_search_space(GOOD) is GOOD
    assert Tmp.validate_search_space({}) == {}


@pytest.mark.parametrize(
    "space, match",
    [
        ({"lr": ("log", 0.02, 0.1)}, "default lr=0.01 is outside"),
        ({"alpha": ("float", 0.6, 0.9)}, "default alpha=0.5 is outside"),
        ({"mode": ("choice", ["b", "c"])}, "default mode='a' is not among"),
        ({"flag": ("choice", [0, 1])}, "default flag=False is not among"),  # 0 is not False here
        ({"nope": ("float", 0, 1)}, "'nope' is not a parameter; valid: .*alpha"),
        ({"eta": ("log", 1e-3, 0.1)}, "canonical name 'lr'"),
        ({"seed": ("int", 0, 9)}, "'seed' cannot be tuned"),
        ({"alpha": ("float", 0.9, 0.1)}, "lo < hi"),
        ({"lr": ("log", 0.0, 0.1)}, "must be positive"),
        ({"epochs": ("float", 1, 3)}, "not a float parameter"),
        ({"epochs": ("int", 1, 2.5)}, "integer ends"),
        ({"steps": ("log", 2.0, 64)}, "integer ends"),
        ({"flag": ("int", 0, 1)}, "integer ends"),
        ({"cap": ("int", 1, 4)}, "default cap=None is outside"),
        ({"alpha": ("uniform", 0, 1)}, "kind one of float, log, int, choice"),
        ({"alpha": ("float", 0, float("inf"))}, "finite numbers"),
        ({"mode": ("choice", ["a"])}, "two or more distinct values"),
        ({"momentum": ("float", 0.5, 1.0)}, r"momentum=1.0 \(in the range\) is refused: momentum must be in \[0, 1\)"),
        ({"optimizer": ("choice", ["sgd", "lion"])}, "optimizer='lion' .* refused"),
        ([("lr", ("log", 1e-3, 0.1))], "must be a dict"),
    ],
)
def test_bad_spaces_are_refused(space, match):
    with pytest.raises(ValueError, match=match):
        Tmp.validate_search_space(space)


def test_the_class_attribute_is_the_default():
    class WithSpace(Tmp):
        search_space = {"alpha": ("float", 0.6, 0.9)}

    with pytest.raises(ValueError, match="search_space of method '_tmp_space'"):
        WithSpace.validate_search_space()
