"""scripts/probe_defaults.py: one row per run with finiteness and accuracies, a failing method reported."""

import importlib.util

from tests.conftest import ROOT


def _probe():
    spec = importlib.util.spec_from_file_location("probe_defaults", ROOT / "scripts" / "probe_defaults.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_probe_prints_a_row_per_run(kaggle_tiny, home, data_root, capsys):
    assert (
        _probe().main(
            [
                "-m",
                "my_method",
                "none",
                "--preset",
                "kaggle-tiny",
                "--runs",
                "1",
                "--home",
                str(home),
                "--data-root",
                str(data_root),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("original") and out[2].startswith("my_method run 0") and "yes" in out[2]
    original, unchanged = out[1].split()[1:4], out[3].split()[4:7]
    assert out[3].startswith("none run 0") and unchanged == original, "none leaves the original as it is"
    share = {row.split()[0]: float(row.split()[-1].rstrip("%")) for row in out[2:4]}  # % of one retraining
    assert 0 < share["my_method"] < 100 and share["none"] < 0.5 * share["my_method"], share
    assert (
        _probe().main(
            [
                "-m",
                "none",
                "--preset",
                "kaggle-tiny",
                "--set",
                "epochs=1",
                "--home",
                str(home),
                "--data-root",
                str(data_root),
            ]
        )
        == 0
    )
    assert "skipped: unknown parameter 'epochs'" in capsys.readouterr().out


def test_probe_reports_a_diverging_method(kaggle_tiny, home, data_root, capsys):
    assert (
        _probe().main(
            [
                "-m",
                "my_method",
                "--preset",
                "kaggle-tiny",
                "--runs",
                "1",
                "--set",
                "lr=1e30",
                "max_update=0",
                "epochs=1",
                "--home",
                str(home),
                "--data-root",
                str(data_root),
            ]
        )
        == 0
    )
    assert "failed: the unlearned model gives NaN or infinite logits" in capsys.readouterr().out
