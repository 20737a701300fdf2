"""Registry and --set parsing."""
from dataclasses import dataclass

import pytest

import methods
from methods.BaseMethod import BaseMethod, register, _METHODS


def test_unknown_key_lists_known():
    with pytest.raises(ValueError, match="known methods: .*my_method"):
        methods.get_method("nope")


def test_duplicate_key_rejected():
    with pytest.raises(ValueError, match="already registered"):
        @register("my_method")
        class Other(BaseMethod):
            """x"""


def test_register_and_defaults():
    @register("_test_tmp")
    class Tmp(BaseMethod):
        """Tmp."""
        @dataclass
        class Params(BaseMethod.Params):
            lr: float = 0.1
            epochs: int = 2
            opt: str = "sgd"
            flag: bool = False
            cap: int | None = None
    try:
        assert methods.get_method("_test_tmp") is Tmp
        assert Tmp.defaults() == {"seed": None, "lr": 0.1, "epochs": 2, "opt": "sgd", "flag": False, "cap": None}
        got = methods.parse_overrides(Tmp, ["lr=1", "epochs=3", "opt=adam", "flag=true", "cap=None", "seed=4"])
        assert got == {"lr": 1.0, "epochs": 3, "opt": "adam", "flag": True, "cap": None, "seed": 4}
        assert isinstance(got["lr"], float)
        with pytest.raises(ValueError, match="unknown parameter 'lrr'.*valid: seed, lr"):
            methods.parse_overrides(Tmp, ["lrr=1"])
        with pytest.raises(ValueError, match="'epochs' expects int"):
            methods.parse_overrides(Tmp, ["epochs=2.5"])
        with pytest.raises(ValueError, match="'flag' expects bool"):
            methods.parse_overrides(Tmp, ["flag=3"])
        with pytest.raises(ValueError, match="key=value"):
            methods.parse_overrides(Tmp, ["lr"])
        with pytest.raises(ValueError, match="unknown parameter"):
            Tmp(bogus=1)
    finally:
        _METHODS.pop("_test_tmp")


def test_range_checks_run_at_parse_time():
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        methods.parse_overrides(methods.get_method("my_method"), ["epochs=0"])


def test_every_method_file_registers_one_key():
    from pathlib import Path
    pkg = Path(methods.__file__).parent
    files = {p.stem for p in pkg.glob("*.py") if not p.stem.startswith("_") and p.stem != "BaseMethod"}
    modules = {cls.__module__.split(".")[-1] for cls in methods.all_method_handlers().values()}
    assert files == modules
    assert len(methods.available_methods()) == len(files)
