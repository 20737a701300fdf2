"""Registry, aliases, broken method files, and --set parsing with the shared checks."""

import subprocess
import sys
from dataclasses import dataclass

import pytest

import methods
from methods._train_params import TrainParams
from methods.BaseMethod import BaseMethod, register, unregister
from tests.conftest import ROOT


def test_unknown_key_lists_known():
    with pytest.raises(ValueError, match="known methods: .*my_method"):
        methods.get_method("nope")


def test_duplicate_key_rejected():
    with pytest.raises(ValueError, match="already registered"):

        @register("my_method")
        class Other(BaseMethod):
            """x"""


@pytest.fixture
def tmp_method():
    @register("_test_tmp", aliases=("TMP", "Tmp_Alias"))
    class Tmp(BaseMethod):
        """Tmp."""

        param_aliases = {"step_size": "lr"}

        @dataclass
        class Params(TrainParams):
            opt: str = "sgd"
            flag: bool = False
            cap: int | None = None

    yield Tmp
    unregister("_test_tmp")


def test_lookup_is_case_insensitive_and_resolves_aliases(tmp_method):
    for name in ("_test_tmp", "_TEST_TMP", "tmp", "TMP", "tmp_alias"):
        assert methods.get_method(name) is tmp_method
    with pytest.raises(ValueError, match="already registered"):
        register("other", aliases=("tmp",))(type("Other", (BaseMethod,), {"__doc__": "x"}))
    with pytest.raises(ValueError, match="lower case"):
        register("Upper")


def test_unregister_removes_key_and_aliases(tmp_method):
    unregister("TMP")
    for name in ("_test_tmp", "tmp", "tmp_alias"):
        with pytest.raises(ValueError, match="unknown method"):
            methods.get_method(name)
    register("_test_tmp", aliases=("TMP",))(tmp_method)  # so the fixture can remove it again
    with pytest.raises(KeyError):
        unregister("never_registered")


def test_parse_overrides_types_and_aliases(tmp_method):
    got = methods.parse_overrides(
        tmp_method, ["step_size=1", "epochs=3", "opt=adam", "flag=true", "cap=None", "seed=4"]
    )
    assert got == {"lr": 1.0, "epochs": 3, "opt": "adam", "flag": True, "cap": None, "seed": 4}
    assert isinstance(got["lr"], float)
    assert tmp_method(step_size=0.5).params.lr == 0.5
    # a text field keeps the text when its literal reading is another type (pdu's cap=none, a mode named "1")
    assert methods.parse_overrides(tmp_method, ["opt=none"]) == {"opt": "none"}
    assert methods.parse_overrides(tmp_method, ["opt=True"]) == {"opt": "True"}
    assert methods.parse_overrides(tmp_method, ["opt=1"]) == {"opt": "1"}
    assert methods.parse_overrides(methods.get_method("pdu"), ["cap=none"]) == {"cap": "none"}
    cases = [
        (["lrr=1"], "unknown parameter 'lrr'.*valid: seed"),
        (["epochs=2.5"], "'epochs' expects int"),
        (["flag=3"], "'flag' expects bool"),
        (["lr"], "key=value"),
        (["lr=0.1", "lr=0.2"], "'lr' given twice"),
        (["lr=0.1", "step_size=0.2"], "'lr' given twice"),
        (["lr=1e999"], "'lr' must be a finite number"),
        (["lr=inf"], "'lr' must be a finite number"),
        (["lr=nan"], "'lr' must be a finite number"),
        (["lr=-1"], "lr must be > 0"),
        (["momentum=-3"], "momentum must be in \\[0, 1\\)"),
        (["momentum=1"], "momentum must be in \\[0, 1\\)"),
        (["weight_decay=-1"], "weight_decay must be >= 0"),
        (["optimizer=lbfgs"], "optimizer must be one of sgd, adam, adamw"),
        (["schedule=step"], "schedule must be one of"),
        (["sam=both"], "sam must be one of"),
        (["rho=-0.1"], "rho must be >= 0"),
        (["seed=-1"], "seed must be an integer in \\[0, 2\\*\\*64\\)"),
        (["seed=18446744073709551616"], "seed must be an integer"),
    ]
    for items, message in cases:
        with pytest.raises(ValueError, match=message):
            methods.parse_overrides(tmp_method, items)
    with pytest.raises(ValueError, match="lr must be a finite number"):
        tmp_method(lr=float("nan"))  # the dict path is checked too
    with pytest.raises(ValueError, match="unknown parameter"):
        tmp_method(bogus=1)


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


def test_a_broken_method_file_is_reported_and_the_others_work(tmp_path):
    """A method file with a syntax error (or a failing import) must not take down --list or other methods."""
    import shutil

    root = tmp_path / "kit"
    shutil.copytree(
        ROOT,
        root,
        ignore=shutil.ignore_patterns(
            ".venv",
            "cifar-10-batches-py",
            "artifacts",
            "results",
            ".git",
            "__pycache__",
            "submissions",
            "*.npy",
            "*.pth",
        ),
    )
    (root / "methods" / "broken_syntax.py").write_text("def oops(:\n    pass\n")
    (root / "methods" / "broken_import.py").write_text("import not_a_real_package_xyz\n")
    out = subprocess.run([sys.executable, "main.py", "--list"], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "my_method" in out.stdout and "sibl" in out.stdout
    assert "broken_syntax: SyntaxError in methods/broken_syntax.py line 1" in out.stdout
    assert "broken_import: ModuleNotFoundError" in out.stdout and "not_a_real_package_xyz" in out.stdout
    out = subprocess.run([sys.executable, "main.py", "-m", "broken_syntax"], cwd=root, capture_output=True, text=True)
    assert out.returncode == 2 and "failed to import: SyntaxError" in out.stderr and "Traceback" not in out.stderr


#: one out-of-range value per shared check (BaseMethod.COMMON_CHECKS), each refused by every method that has the field
_BAD = {
    "epochs": 0,
    "lr": 0.0,
    "momentum": 1.0,
    "weight_decay": -1.0,
    "batch_size": 0,
    "optimizer": "lion",
    "schedule": "step",
    "sam": "both",
    "rho": -0.1,
    "sam_lambda": -1.0,
    "max_update": -1e-3,
    "fresh_max_update": -1e-3,
    "epoch_fraction": 0.0,
    "time_factor": 0.0,
    "min_steps": -1,
    "kd_T": 0.0,
    "impair_steps": -1,
    "repair_steps": -1,
    "signal_batches": 0,
}


@pytest.mark.parametrize("key", methods.available_methods())
def test_shared_checks_refuse_bad_values(key):
    from methods.BaseMethod import COMMON_CHECKS

    assert set(_BAD) == set(COMMON_CHECKS) - {"seed"}
    cls = methods.get_method(key)
    for name in set(cls.defaults()) & set(_BAD):
        with pytest.raises(ValueError, match=name):
            cls.make_params(**{name: _BAD[name]})
    for name in {"epoch_fraction", "time_factor"} & set(cls.defaults()):
        with pytest.raises(ValueError, match=name):
            cls.make_params(**{name: 1.5})


#: the literature's image-classification methods, the eight NeurIPS 2023 entries and the Kaggle template:
#: each runs its published algorithm and nothing the kit adds
PUBLISHED = (
    "ft",
    "ft_l1",
    "ga",
    "ng",
    "scrub",
    "wfisher",
    "rl_og",
    "salun",
    "rum",
    "sharp_minmax",
    "my_method",
    "fanchuan",
    "kookmin",
    "seif",
    "sebastian",
    "ct",
    "amnesiacs",
    "sun",
    "forget",
)
#: kit mechanisms no published method has: step caps, entry noise, step floors (off = 0)
KIT_MECHANISMS = ("max_update", "fresh_max_update", "noised_max_update", "init_noise", "min_steps")


def test_every_method_says_where_it_comes_from():
    from methods.BaseMethod import ORIGINS

    for key, cls in methods.all_method_handlers().items():
        assert cls.origin in ORIGINS, f"{key}: origin {cls.origin!r} is not one of {ORIGINS}"
    for key in PUBLISHED:
        assert methods.get_method(key).origin == "published", key
    assert {methods.get_method(k).origin for k in ("sibl", "pdu")} == {"ported"}


@pytest.mark.parametrize("key", [k for k, c in methods.all_method_handlers().items() if c.origin == "published"])
def test_published_methods_run_no_kit_mechanism_by_default(key):
    defaults = methods.get_method(key).defaults()
    on = {name: defaults[name] for name in KIT_MECHANISMS if defaults.get(name)}
    assert not on, f"{key} is published but ships the kit's {on}: its release has none of them"


@pytest.mark.parametrize("key", [k for k, c in methods.all_method_handlers().items() if c.origin == "published"])
def test_published_methods_tune_no_kit_mechanism(key):
    """A committed record is tuned over the search space: a kit mechanism there would enter the record."""
    searched = set(methods.get_method(key).search_space) & set(KIT_MECHANISMS)
    assert not searched, f"{key} is published but its search space tunes the kit's {sorted(searched)}"
