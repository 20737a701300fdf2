"""scripts/view_signal.py: the views' correlation table from a bank (uvt's signal)."""

import importlib.util
import re

import pytest
import torch

from tests.conftest import ROOT


def _script():
    spec = importlib.util.spec_from_file_location("view_signal", ROOT / "scripts" / "view_signal.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_table_has_every_view_and_correlations_in_range(kaggle_tiny, home, data_root, capsys):
    assert _script().main(["--preset", "kaggle-tiny", "--home", str(home), "--data-root", str(data_root)]) == 0
    assert torch.is_grad_enabled(), "the script must not switch autograd off for the process (in-process callers)"
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    names = [r.split(" | ")[0][2:] for r in rows]
    assert names[2:5] == ["the image itself", "the flip", "shift (+1, +1)"] and len(rows) == 2 + 2 + 6 + 1
    corrs = [float(r.split(" | ")[1]) for r in rows]
    assert all(-1 <= c <= 1 for c in corrs)
    assert re.search(r"Retrained models' mean statistic on the forget set: -?\d+\.\d\d", out)


def test_too_few_retrained_models_are_refused():
    with pytest.raises(SystemExit):
        _script().main(["--retrained", "1"])
