"""scripts/sweep.py: a grid over --set values gives one scored row per point."""

import importlib.util

import pandas as pd
import pytest

from tests.conftest import ROOT


def _sweep():
    spec = importlib.util.spec_from_file_location("sweep", ROOT / "scripts" / "sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_grid_is_the_cartesian_product():
    g = _sweep().grid(["a=1,2", "b=x"])
    assert g == [{"a": "1", "b": "x"}, {"a": "2", "b": "x"}]
    with pytest.raises(SystemExit):
        _sweep().grid(["nokey"])


def test_points_are_one_configuration_each():
    assert _sweep().points(["", "a=1;b=2", "c=x"]) == [{}, {"a": "1", "b": "2"}, {"c": "x"}]
    with pytest.raises(SystemExit, match="--points"):
        _sweep().points(["a=1;nokey"])


def test_extra_space_adds_ranges_of_the_methods_own_fields():
    import methods

    cls = methods.get_method("fanchuan")
    assert _sweep().extra_space(cls, ["time_factor=float:0.3:1"]) == {"time_factor": ("float", 0.3, 1.0)}
    for bad in ("nosuch=float:0:1", "time_factor=float:1:0.3", "time_factor=normal:0:1", "time_factor=0.5"):
        with pytest.raises(ValueError, match="--space"):
            _sweep().extra_space(cls, [bad])


def test_sweep_scores_every_point(tiny_bank, home, data_root, tmp_path, capsys):
    rc = _sweep().main(
        [
            "-m",
            "my_method",
            "--preset",
            "tiny",
            "--runs",
            "2",
            "--grid",
            "epochs=1,2",
            "--set",
            "lr=0.01",
            "--out",
            str(tmp_path),
            "--home",
            str(home),
            "--data-root",
            str(data_root),
            "--bootstrap",
            "0",
        ]
    )
    assert rc == 0
    table = pd.read_csv(tmp_path / "tiny" / "my_method" / "sweep.csv")
    assert list(table["point"]) == ["epochs=1", "epochs=2"]
    assert table["F"].between(0, 1).all() and table["runtime_mean_s"].gt(0).all()
    assert "| point" in capsys.readouterr().out
