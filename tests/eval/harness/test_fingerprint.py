"""Cache keys follow the code a cache depends on: found from imports, blind to comments and docstrings."""

import shutil

import pytest

from eval.harness.fingerprint import code_fingerprint, import_closure
from tests.conftest import ROOT

BANK_CODE = ["eval.harness.bank_models", "data.archs.small_resnet"]  # the cpu bank's key


@pytest.fixture
def kit(tmp_path):
    """A copy of the project's code (no data, no artifacts) that a test may edit."""
    for name in ("methods", "data", "eval"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "cifar-10-*"))
    return tmp_path


def test_bank_key_covers_the_model_definitions_and_training_code_found_from_imports():
    closure = import_closure(BANK_CODE)
    for module in (
        "data.models",
        "data.archs.small_resnet",
        "data.splits",
        "methods._train_recipe",
        "methods._train_loop",
        "eval.outputs",
    ):
        assert module in closure
    for module in ("data.archs.resnet18", "data.archs.tiny_cnn", "data.archs.airbench"):
        assert module not in closure, f"{module}: another architecture does not change this bank"
    for module in ("methods.sibl", "methods.BaseMethod", "eval.io", "eval.scoring"):
        assert module not in closure, f"{module} does not change a bank model"


def test_comments_and_docstrings_do_not_change_the_key_code_does(kit):
    before = code_fingerprint(BANK_CODE, kit)
    models = kit / "data" / "archs" / "small_resnet.py"
    text = models.read_text()
    models.write_text(
        text.replace('"""The `cpu` preset', '"""Reworded: the `cpu` preset', 1).replace(
            "        super().__init__()", "        super().__init__()  # a new comment", 1
        )
    )
    assert code_fingerprint(BANK_CODE, kit) == before
    models.write_text(text.replace("nn.AdaptiveAvgPool2d(1)", "nn.AdaptiveMaxPool2d(1)", 1))
    assert code_fingerprint(BANK_CODE, kit) != before, "a changed model definition must invalidate its banks"


def test_a_new_architecture_leaves_the_other_banks_valid(kit):
    before = code_fingerprint(BANK_CODE, kit)
    (kit / "data" / "archs" / "wide_cnn.py").write_text((kit / "data" / "archs" / "tiny_cnn.py").read_text())
    assert code_fingerprint(BANK_CODE, kit) == before


def test_a_run_key_covers_its_own_method_not_the_others(kit):
    roots = ["methods.MyMethod", "eval.harness.unlearn"]
    before = code_fingerprint(roots, kit)
    sibl = kit / "methods" / "sibl.py"
    sibl.write_text(sibl.read_text().replace("MARGIN_TARGETS = (", "MARGIN_TARGETS_X = 1\nMARGIN_TARGETS = (", 1))
    assert code_fingerprint(roots, kit) == before
    loop = kit / "methods" / "_train_loop.py"
    loop.write_text(loop.read_text() + "\n\nEXTRA = 1\n")
    assert code_fingerprint(roots, kit) != before, "a shared block the method imports is part of its key"


def test_type_only_imports_do_not_count(kit):
    splits = kit / "data" / "splits.py"
    assert "TYPE_CHECKING" in splits.read_text()
    assert "data.presets" not in import_closure(["data.splits"], kit), "splits only names Preset as a type"
