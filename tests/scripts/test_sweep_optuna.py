"""scripts/sweep.py --optuna: a seeded TPE search over a method's search_space, resumed from its SQLite
study, failed trials scored 0, trials.csv and search.png written, bad input refused before any trial; one real
trial through the evaluation API."""

import importlib.util
import json
import math
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

import methods
from eval.harness import api
from eval.harness.unlearn import MethodFailed
from tests.conftest import ROOT

SPACE = {"lr": ("log", 5e-4, 0.05), "epochs": ("int", 1, 2)}


def _sweep():
    spec = importlib.util.spec_from_file_location("sweep", ROOT / "scripts" / "sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def space(monkeypatch):
    """my_method with a known search space (whatever it declares itself)."""
    monkeypatch.setattr(methods.get_method("my_method"), "search_space", SPACE, raising=False)
    return SPACE


class FakeEvaluate:
    """Stands in for api.evaluate_method: a record whose final score is a known function of lr; `calls` keeps
    each call's --set values, forget seed and results folder; `plan` maps a call number to "raise", "fail",
    "nan", "reject", "interrupt" or "usage"."""

    def __init__(self, plan=None):
        self.calls, self.plan = [], plan or {}

    def __call__(self, method, sets, *, options, published, console):
        assert published, "a sweep scores the published defaults under its values"
        self.calls.append(
            {
                "sets": dict(t.split("=", 1) for t in sets),
                "forget_seed": options.forget_seed,
                "results_dir": options.results_dir,
            }
        )
        what = self.plan.get(len(self.calls))
        if what == "raise":
            raise RuntimeError("the method blew up")
        if what == "interrupt":
            raise KeyboardInterrupt
        if what == "usage":
            raise api.UsageError("--runs must be at least 2 (the metric compares distributions), got 1")
        if what == "fail":
            failed = Path(options.results_dir) / "tiny" / f"{method}.failed.json"
            raise api.EvaluationFailed(MethodFailed(method, "loss is NaN"), failed, kept=False)
        lr = float(self.calls[-1]["sets"]["lr"])
        score = {"nan": float("nan"), "reject": 0.0}.get(what, 0.1 - abs(math.log10(lr / 0.02)) / 10)
        rec = {
            "status": "ok",
            "final_score": score,
            "F": 0.2,
            "time_ratio": 0.5 if what == "reject" else 0.1,
            "rejected": what == "reject",
            "ra_ratio": 1.0,
            "ta_ratio": 1.0,
            "accuracy": {"forget_unlearned": 0.6},
        }
        return api.Record(method, rec, {}, Path(options.results_dir) / "tiny" / f"{method}.json")


@pytest.fixture
def fake(monkeypatch):
    """`fake(plan)`: a FakeEvaluate in place of the evaluation API's evaluate_method."""

    def _fake(plan=None):
        f = FakeEvaluate(plan)
        monkeypatch.setattr(api, "evaluate_method", f)
        return f

    return _fake


def _run(mod, tmp_path, n, *more):
    return mod.main(
        [
            "-m",
            "my_method",
            "--preset",
            "tiny",
            "--runs",
            "2",
            "--optuna",
            str(n),
            "--out",
            str(tmp_path),
            "--home",
            str(tmp_path / "home"),
            *more,
        ]
    )


def _db_trials(tmp_path):
    with sqlite3.connect(tmp_path / "tiny" / "my_method" / "optuna.db") as con:
        return con.execute("SELECT number, state FROM trials ORDER BY number").fetchall()


def test_search_resumes_and_scores_failures_zero(space, fake, tmp_path, capsys):
    mod = _sweep()
    fake = fake({2: "raise", 3: "reject", 4: "fail"})
    assert _run(mod, tmp_path, 3) == 0
    assert len(fake.calls) == 3 and _db_trials(tmp_path) == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert all(c["forget_seed"] == 1 for c in fake.calls)
    folder = tmp_path / "tiny" / "my_method" / "my_method-tiny-forget1-runs2"
    assert [c["results_dir"] for c in fake.calls] == [str(folder / f"trial{i:04d}") for i in range(3)]
    assert _run(mod, tmp_path, 4) == 0  # N is the total: one trial is missing
    assert len(fake.calls) == 4 and len(_db_trials(tmp_path)) == 4
    assert _run(mod, tmp_path, 5) == 0 and len(fake.calls) == 5
    assert _run(mod, tmp_path, 5) == 0 and len(fake.calls) == 5  # complete: nothing to run

    table = pd.read_csv(folder / "trials.csv")
    assert list(table["trial"]) == [0, 1, 2, 3, 4] and set(table["state"]) == {"COMPLETE"}
    assert {"lr", "epochs", "score", "F", "ratio", "rejected", "reason"} <= set(table.columns)
    assert table.loc[1, "score"] == 0 and "RuntimeError: the method blew up" in table.loc[1, "reason"]
    assert table.loc[2, "score"] == 0 and table.loc[2, "rejected"] and pd.isna(table.loc[2, "reason"])
    assert table.loc[3, "score"] == 0 and table.loc[3, "reason"] == "FAILED: loss is NaN"
    assert table["lr"].between(5e-4, 0.05).all() and table["epochs"].isin([1, 2]).all()
    assert table.loc[3, "lr"] != table.loc[0, "lr"]  # a resumed sampler does not replay the first points
    assert (folder / "search.png").stat().st_size > 1000

    out = capsys.readouterr().out
    best = table.loc[table["score"].idxmax()]
    line = out.split("reproduce: ")[-1].splitlines()[0]  # the last run's best: over all five trials
    assert line.startswith("python main.py -m my_method --preset tiny --runs 2 --forget-seed 1 --set ")
    sets = methods.parse_overrides(methods.get_method("my_method"), line.split("--set ")[1].split())
    assert sets == {"lr": best["lr"], "epochs": best["epochs"]}


def test_nan_score_and_fixed_values(space, fake, tmp_path):
    mod = _sweep()
    fake = fake({1: "nan"})
    assert _run(mod, tmp_path, 2, "--set", "epochs=1", "--forget-seed", "3", "--sampler-seed", "7") == 0
    assert all(c["sets"]["epochs"] == "1" and c["forget_seed"] == 3 for c in fake.calls)
    table = pd.read_csv(tmp_path / "tiny" / "my_method" / "my_method-tiny-forget3-runs2-epochs=1" / "trials.csv")
    assert "epochs" not in table and table.loc[0, "score"] == 0 and table.loc[0, "reason"] == "final score is nan"


def test_best_scored_on_held_out_forget_seeds(space, fake, tmp_path):
    mod = _sweep()
    fake = fake()
    assert _run(mod, tmp_path, 1, "--score-seeds", "2", "3") == 0
    assert [c["forget_seed"] for c in fake.calls] == [1, 2, 3]
    assert fake.calls[1]["sets"] == fake.calls[0]["sets"]  # the best trial's values
    held = pd.read_csv(tmp_path / "tiny" / "my_method" / "my_method-tiny-forget1-runs2" / "held_out.csv")
    assert list(held["forget_seed"]) == [2, 3] and held["final_score"].notna().all()


def test_interrupt_fails_the_trial_and_the_rerun_finishes(space, fake, tmp_path):
    mod = _sweep()
    fake({2: "interrupt"})
    assert _run(mod, tmp_path, 3) == 130
    assert _db_trials(tmp_path) == [(0, "COMPLETE"), (1, "FAIL")]
    assert _run(mod, tmp_path, 3) == 0
    assert [s for _, s in _db_trials(tmp_path)] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    from eval.harness import optuna_search  # a killed process leaves its trial RUNNING: failed on resume

    optuna_search.open_study(tmp_path / "tiny" / "my_method" / "optuna.db", "my_method-tiny-forget1-runs2").ask()
    assert _run(mod, tmp_path, 4) == 0
    assert [s for _, s in _db_trials(tmp_path)][4:] == ["FAIL", "COMPLETE"]


def test_refusals(space, fake, tmp_path, monkeypatch, capsys):
    mod = _sweep()
    fake()
    for argv, match in [
        (["--grid", "lr=0.1"], "--optuna and --grid are exclusive"),
        (["--set", "lr=0.01", "epochs=1"], "has nothing to tune: --set fixes every parameter"),
        (["--set", "nope=1"], "unknown parameter 'nope'"),
    ]:
        with pytest.raises(SystemExit):
            _run(mod, tmp_path, 2, *argv)
        assert match in capsys.readouterr().err
    monkeypatch.setattr(methods.get_method("my_method"), "search_space", {"lr": ("log", 0.05, 0.1)})
    with pytest.raises(SystemExit):
        _run(mod, tmp_path, 2)
    assert "default lr=0.001 is outside the range" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mod.main(["-m", "none", "--optuna", "2", "--out", str(tmp_path)])
    assert "declares no search_space" in capsys.readouterr().err


def test_one_real_trial(space, one_thread, home, data_root, tmp_path):
    """The objective is the record's final score (its JSON), with F and the time ratio kept (the evaluation
    builds the tiny bank in the session's artifacts folder if no earlier test did)."""
    mod = _sweep()
    assert (
        mod.main(
            [
                "-m",
                "my_method",
                "--preset",
                "tiny",
                "--runs",
                "2",
                "--optuna",
                "1",
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
        == 0
    )
    folder = tmp_path / "tiny" / "my_method" / "my_method-tiny-forget1-runs2"
    row = pd.read_csv(folder / "trials.csv").iloc[0]
    rec = json.loads(next((folder / "trial0000").glob("*/my_method.json")).read_text())
    assert row["state"] == "COMPLETE" and pd.isna(row["reason"])
    assert row["score"] == pytest.approx(rec["final_score"]) and row["F"] == pytest.approx(rec["F"])
    assert row["ratio"] == pytest.approx(rec["time_ratio"]) and rec["params"]["lr"] == pytest.approx(row["lr"])


def test_first_trial_is_the_defaults(space, fake, tmp_path, capsys):
    mod = _sweep()
    fake = fake()
    assert _run(mod, tmp_path, 2) == 0
    assert fake.calls[0]["sets"] == {"lr": "0.001", "epochs": "1"}  # MyMethod's Params defaults
    assert fake.calls[1]["sets"] != fake.calls[0]["sets"]
    assert "trial 0 is the method's defaults" in capsys.readouterr().out


def test_defaults_outside_a_narrowed_range_are_not_queued(monkeypatch):
    from eval.harness import optuna_search

    cls = methods.get_method("my_method")
    dists = optuna_search.distributions(cls, {"lr": ("log", 0.03, 0.05), "epochs": ("int", 1, 2)})
    assert optuna_search.defaults(cls, dists) is None
    assert optuna_search.defaults(cls, optuna_search.distributions(cls, SPACE)) == {"lr": 0.001, "epochs": 1}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--runs", "1"], "--runs must be at least 2"),
        (["--set", "nope=1"], "unknown parameter 'nope'"),
        (["--score-seeds", "2", "-1"], "--forget-seed must be in [0, 2**32)"),
        (["--bootstrap", "-1"], "--bootstrap must be >= 0"),  # a main.py flag passed on
        (["--", "--results-dir", "elsewhere"], "a sweep passes on main.py's evaluation options only"),
    ],
)
def test_bad_input_stops_the_sweep_before_any_trial_is_recorded(space, tmp_path, monkeypatch, capsys, argv, message):
    """A usage error exits 2 with its message before the study exists: it is never a completed trial scored 0."""
    mod = _sweep()
    monkeypatch.setattr(api, "evaluate_method", lambda *a, **k: pytest.fail("a configuration ran"))
    with pytest.raises(SystemExit) as e:
        _run(mod, tmp_path, 2, *argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not list(tmp_path.rglob("optuna.db")) and not list(tmp_path.rglob("trials.csv"))


def test_bad_grid_point_stops_the_sweep_before_any_point_runs(tmp_path, monkeypatch, capsys):
    mod = _sweep()
    monkeypatch.setattr(api, "evaluate_method", lambda *a, **k: pytest.fail("a configuration ran"))
    with pytest.raises(SystemExit) as e:
        mod.main(["-m", "my_method", "--preset", "tiny", "--grid", "epochs=1,x", "--out", str(tmp_path)])
    assert e.value.code == 2 and "'epochs' expects int" in capsys.readouterr().err
    assert not list(tmp_path.rglob("sweep.csv"))


def test_a_usage_error_inside_a_trial_fails_it_and_stops(space, fake, tmp_path, capsys):
    """Should bad input get past the checks, the trial is marked FAIL (it does not count) and the sweep exits 2."""
    mod = _sweep()
    fake({2: "usage"})
    with pytest.raises(SystemExit) as e:
        _run(mod, tmp_path, 3)
    assert e.value.code == 2 and "--runs must be at least 2" in capsys.readouterr().err
    assert _db_trials(tmp_path) == [(0, "COMPLETE"), (1, "FAIL")]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda db: db.write_bytes(b"this is not a database" * 100), "cannot be read as an Optuna study"),
        (lambda db: db.write_bytes(db.read_bytes()[:3000]), "cannot be read as an Optuna study"),
    ],
    ids=["corrupt", "truncated"],
)
def test_a_damaged_study_file_is_named_with_what_to_do(space, fake, tmp_path, capsys, damage, message):
    mod = _sweep()
    fake()
    assert _run(mod, tmp_path, 1) == 0
    db = tmp_path / "tiny" / "my_method" / "optuna.db"
    damage(db)
    before = db.read_bytes()
    capsys.readouterr()
    assert _run(mod, tmp_path, 2) == 1
    err = capsys.readouterr().err
    assert message in err and "git checkout --" in err and "Traceback" not in err, err
    assert db.read_bytes() == before, "the damaged file is left as it was, for the user to inspect"


def test_a_locked_study_file_says_so(space, fake, tmp_path, capsys):
    mod = _sweep()
    fake()
    assert _run(mod, tmp_path, 1) == 0
    con = sqlite3.connect(tmp_path / "tiny" / "my_method" / "optuna.db", timeout=0)
    con.execute("BEGIN EXCLUSIVE")  # another process writing
    try:
        capsys.readouterr()
        assert _run(mod, tmp_path, 2) == 1
    finally:
        con.rollback()
        con.close()
    err = capsys.readouterr().err
    assert "is locked by another process" in err and "Traceback" not in err, err
    assert _run(mod, tmp_path, 2) == 0, "once released, the same command resumes"


def test_an_unwritable_out_folder_is_refused_before_any_trial(space, fake, tmp_path, capsys):
    mod = _sweep()
    f = fake()
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(SystemExit) as e:
        mod.main(["-m", "my_method", "--preset", "tiny", "--runs", "2", "--optuna", "1", "--out", str(blocker)])
    assert e.value.code == 2 and "--out" in capsys.readouterr().err and not f.calls
