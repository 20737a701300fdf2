"""The local leaderboard on the tiny preset: files, CSV schema, cached rows, a failing method."""

import io
import math

import numpy as np
import pandas as pd
import pytest

import methods
from data.presets import get_preset
from eval.harness import leaderboard, row, runs
from methods.BaseMethod import BaseMethod, register, unregister

FAIL_KEY = "lb_test_always_fails"
FILES = ["leaderboard.csv", "leaderboard.md", *leaderboard.PLOTS]


EXIT_KEY = "lb_test_exits"
LEAK_KEY = "lb_test_leaks_float64"


def _register_failing():
    @register(FAIL_KEY)
    class AlwaysFails(BaseMethod):
        """Raises on purpose (leaderboard test)."""

        def run(self, net, retain_loader, forget_loader, val_loader):
            raise RuntimeError("deliberate failure")

    @register(EXIT_KEY)
    class Exits(BaseMethod):
        """Calls sys.exit() on purpose (leaderboard test)."""

        def run(self, net, retain_loader, forget_loader, val_loader):
            import sys

            sys.exit("bye")

    @register(LEAK_KEY)
    class Leaks(BaseMethod):
        """Leaves torch's default dtype at float64 on purpose (leaderboard test): every later row would fail."""

        def run(self, net, retain_loader, forget_loader, val_loader):
            import torch

            torch.set_default_dtype(torch.float64)


def _small() -> dict:
    """The methods' own small test settings (as in the contract test), to keep this test quick."""
    return {
        k: cls.test_overrides() for k, cls in methods.all_method_handlers().items() if hasattr(cls, "test_overrides")
    }


@pytest.fixture(scope="module")
def first(tiny_splits, tiny_bank, tmp_path_factory):
    """One tiny leaderboard over every registered method plus a method that always fails."""
    results = tmp_path_factory.mktemp("lb-results")
    _register_failing()
    try:
        names = methods.available_methods()
        out = leaderboard.run_leaderboard(
            names, get_preset("tiny"), tiny_splits, tiny_bank, results_dir=results, bootstrap=5, overrides=_small()
        )
    finally:
        unregister(FAIL_KEY)
        unregister(EXIT_KEY)
        unregister(LEAK_KEY)
    # a snapshot: the cache test below rewrites the files in the same folder
    out["csv_text"] = (results / "tiny" / "leaderboard.csv").read_text()
    return out, results / "tiny", names


def test_all_files_written(first):
    out, folder, _ = first
    assert sorted(p.name for p in out["files"]) == sorted(FILES)
    for name in leaderboard.PLOTS:
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = out["markdown"]
    assert md.startswith("# Local leaderboard: preset `tiny`")
    assert "F's ceiling depends on the number of models" in md and "4 retrained models" in md


def test_csv_schema_and_reference_rows(first):
    out, folder, names = first
    t = pd.read_csv(io.StringIO(out["csv_text"]))
    assert list(t.columns) == row.COLUMNS
    assert set(t["method"]) == set(names) | {FAIL_KEY, EXIT_KEY}
    assert set(t["status"]) <= {"ok", "failed"}
    ok = t[t["status"] == "ok"].set_index("method")
    assert {"none", "retrain", "my_method"} <= set(ok.index)
    for col in (
        "final_score",
        "score",
        "F",
        "ra_ratio",
        "ta_ratio",
        "acc_forget",
        "forget_gap",
        "tow",
        "tow_mia",
        "mia",
        "runtime_s",
        "time_ratio",
        "final_ci_lo",
        "final_ci_hi",
        "retrain_time_s",
        "manifest_retrain_time_s",
        "manifest_time_ratio",
        "ulira_acc",
        "klom_p50",
        "klom_p95",
        "klom_p99",
    ):
        assert np.isfinite(ok[col].astype(float)).all(), col
    assert ((ok["ulira_acc"] >= 0) & (ok["ulira_acc"] <= 1) & (ok["klom_p50"] >= 0)).all()
    # identical runs are told apart from retraining; retraining itself is not (3 runs vs 4 models)
    assert ok.loc["none", "ulira_acc"] > 0.8 > ok.loc["retrain", "ulira_acc"]
    assert ok.loc["none", "klom_p50"] > ok.loc["retrain", "klom_p50"]
    assert "U-LiRA" in out["markdown"] and "KLoM p50 / p95 / p99" in out["markdown"]
    assert ((ok["F"] >= 0) & (ok["F"] <= 1)).all() and (ok["final_ci_lo"] <= ok["final_ci_hi"]).all()
    assert ((ok["tow"] > 0) & (ok["tow"] <= 1) & (ok["mia"] >= 0) & (ok["mia"] <= 1)).all()
    assert set(ok["efficiency"]) <= {"ok", "rejected", "exempt"}
    assert ok.loc["none", "final_score"] == 0 and ok.loc["none", "normalized_score"] == 0
    assert ok.loc["retrain", "final_score"] > 0 and ok.loc["retrain", "normalized_score"] == pytest.approx(1)
    assert ok.loc["retrain", "efficiency"] == "exempt" and ok.loc["retrain", "reference"]
    assert (ok["n_runs"] == 3).all() and (ok["n_retrained"] == 4).all()
    # sorted by final score, failed rows last
    assert list(t["final_score"][: len(ok)]) == sorted(ok["final_score"], reverse=True)
    assert (t["status"][len(ok) :] == "failed").all()


def test_failing_method_reported_others_finish(first):
    out, _, _ = first
    t = out["table"].set_index("method")
    assert t.loc[FAIL_KEY, "status"] == "failed"
    assert "RuntimeError: deliberate failure" in t.loc[FAIL_KEY, "reason"]
    assert (t.loc[t["status"] == "failed", "reason"].str.len() > 0).all()
    assert "deliberate failure" in out["markdown"]
    assert t.loc[EXIT_KEY, "status"] == "failed" and "called sys.exit('bye')" in t.loc[EXIT_KEY, "reason"]
    assert FAIL_KEY not in methods.available_methods()


def test_a_method_that_leaks_torch_settings_fails_alone(first):
    """A run that leaves torch.set_default_dtype(float64) behind fails with the change named; the settings are
    restored, so the methods after it (in name order) and the reference rows are unaffected."""
    import torch

    out, _, names = first
    t = out["table"].set_index("method")
    assert t.loc[LEAK_KEY, "status"] == "failed"
    assert "default dtype: torch.float32 -> torch.float64" in t.loc[LEAK_KEY, "reason"]
    assert torch.get_default_dtype() == torch.float32
    later = [n for n in names if n > LEAK_KEY]
    assert later and (t.loc[later, "status"] == "ok").all()
    assert (t.loc[["none", "retrain"], "status"] == "ok").all()


def test_retrain_costs_about_one_retraining_by_the_clock(first):
    """The efficiency rule's clock times slices of the same recipe: a real retraining must read ~100%."""
    t = first[0]["table"].set_index("method")
    assert 0.4 < t.loc["retrain", "time_ratio"] < 2.5, t.loc["retrain", "time_ratio"]
    assert t.loc["retrain", "efficiency"] == "exempt"


def test_cached_rows_reused_and_keyed_by_params(first, tiny_splits, tiny_bank, monkeypatch):
    out, folder, _ = first
    t = out["table"]
    ok = t.loc[t["status"] == "ok", "method"].tolist()
    calls = []

    def no_runs(cls, *args, **kwargs):
        calls.append(cls.key)
        raise AssertionError("run_once called")

    monkeypatch.setattr(runs, "run_once", no_runs)
    # `none` and `retrain` are added even when not named
    names = [m for m in ok if m not in leaderboard.REFERENCES]
    again = leaderboard.run_leaderboard(
        names, get_preset("tiny"), tiny_splits, tiny_bank, results_dir=folder.parent, bootstrap=5, overrides=_small()
    )
    assert calls == []
    t2 = again["table"]
    assert sorted(t2["method"]) == sorted(ok) and (t2["status"] == "ok").all() and t2["cached"].all()
    first_scores = t.set_index("method").loc[ok, ["final_score", "F", "mia", "tow"]]
    pd.testing.assert_frame_equal(
        t2.set_index("method").loc[ok, ["final_score", "F", "mia", "tow"]], first_scores, check_dtype=False
    )

    # changed hyperparameters are a different key: the method runs again (and here fails, reported)
    third = leaderboard.run_leaderboard(
        ["my_method"],
        get_preset("tiny"),
        tiny_splits,
        tiny_bank,
        results_dir=folder.parent,
        bootstrap=5,
        overrides={"my_method": {"epochs": 2}},
    )
    assert calls == ["my_method"]
    row = third["table"].set_index("method").loc["my_method"]
    assert row["status"] == "failed" and "run_once called" in row["reason"]
    assert '"epochs":2' in row["params"]


def test_normalized_scores_nan_safe():
    np.testing.assert_allclose(leaderboard.normalized_scores([0.0, 0.2, 0.4], 0.0, 0.4), [0, 0.5, 1])
    assert np.isnan(leaderboard.normalized_scores([0.1, 0.2], 0.3, 0.3)).all()
    assert np.isnan(leaderboard.normalized_scores([0.1], math.nan, 0.3)).all()


def test_every_metric_has_its_explanation():
    from eval.scoring import METRICS

    assert set(leaderboard.F_TEXT) == set(leaderboard.BOOTSTRAP_TEXT) == set(METRICS)
