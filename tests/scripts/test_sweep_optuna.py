"""scripts/sweep.py --optuna: a seeded TPE search over a method's search_space, resumed from its SQLite
study, failed trials scored 0, trials.csv and search.png written; one real trial through main.py."""

import importlib.util
import json
import math
import sqlite3

import pandas as pd
import pytest
import torch

import methods
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


def _parse(argv):
    sets, i = {}, argv.index("--set") + 1
    while i < len(argv) and not argv[i].startswith("--"):
        k, v = argv[i].split("=", 1)
        sets[k] = v
        i += 1
    return argv[argv.index("--results-dir") + 1], sets


class FakeMain:
    """Stands in for main.main: writes a result JSON whose final score is a known function of lr;
    `plan` maps a call number to "raise", "exit", "nan", "reject" or "interrupt"."""

    def __init__(self, plan=None):
        self.calls, self.plan = [], plan or {}

    def __call__(self, argv):
        self.calls.append(argv)
        what = self.plan.get(len(self.calls))
        if what == "raise":
            raise RuntimeError("the method blew up")
        if what == "interrupt":
            return 130
        if what == "exit":
            print("FAILED: loss is NaN", file=__import__("sys").stderr)
            return 1
        res_dir, sets = _parse(argv)
        lr = float(sets["lr"])
        score = {"nan": float("nan"), "reject": 0.0}.get(what, 0.1 - abs(math.log10(lr / 0.02)) / 10)
        rec = {
            "final_score": score,
            "F": 0.2,
            "time_ratio": 0.5 if what == "reject" else 0.1,
            "rejected": what == "reject",
            "ra_ratio": 1.0,
            "ta_ratio": 1.0,
            "accuracy": {"forget_unlearned": 0.6},
        }
        out = ROOT / res_dir if not res_dir.startswith("/") else __import__("pathlib").Path(res_dir)
        (out / "tiny").mkdir(parents=True, exist_ok=True)
        (out / "tiny" / "my_method.json").write_text(json.dumps(rec))
        return 0


def _run(mod, tmp_path, n, *more):
    return mod.main(
        ["-m", "my_method", "--preset", "tiny", "--runs", "2", "--optuna", str(n), "--out", str(tmp_path), *more]
    )


def _db_trials(tmp_path):
    with sqlite3.connect(tmp_path / "tiny" / "my_method" / "optuna.db") as con:
        return con.execute("SELECT number, state FROM trials ORDER BY number").fetchall()


def test_search_resumes_and_scores_failures_zero(space, tmp_path, monkeypatch, capsys):
    mod = _sweep()
    fake = FakeMain({2: "raise", 3: "reject", 4: "exit"})
    monkeypatch.setattr(mod.cli, "main", fake)
    assert _run(mod, tmp_path, 3) == 0
    assert len(fake.calls) == 3 and _db_trials(tmp_path) == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert all(c[c.index("--forget-seed") + 1] == "1" for c in fake.calls)
    assert _run(mod, tmp_path, 4) == 0  # N is the total: one trial is missing
    assert len(fake.calls) == 4 and len(_db_trials(tmp_path)) == 4
    assert _run(mod, tmp_path, 5) == 0 and len(fake.calls) == 5
    assert _run(mod, tmp_path, 5) == 0 and len(fake.calls) == 5  # complete: nothing to run

    folder = tmp_path / "tiny" / "my_method" / "my_method-tiny-forget1-runs2"
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


def test_nan_score_and_fixed_values(space, tmp_path, monkeypatch):
    mod = _sweep()
    fake = FakeMain({1: "nan"})
    monkeypatch.setattr(mod.cli, "main", fake)
    assert _run(mod, tmp_path, 2, "--set", "epochs=1", "--forget-seed", "3", "--sampler-seed", "7") == 0
    assert all(_parse(c)[1]["epochs"] == "1" and "3" == c[c.index("--forget-seed") + 1] for c in fake.calls)
    table = pd.read_csv(tmp_path / "tiny" / "my_method" / "my_method-tiny-forget3-runs2-epochs=1" / "trials.csv")
    assert "epochs" not in table and table.loc[0, "score"] == 0 and table.loc[0, "reason"] == "final score is nan"


def test_best_scored_on_held_out_forget_seeds(space, tmp_path, monkeypatch):
    mod = _sweep()
    fake = FakeMain()
    monkeypatch.setattr(mod.cli, "main", fake)
    assert _run(mod, tmp_path, 1, "--score-seeds", "2", "3") == 0
    assert [c[c.index("--forget-seed") + 1] for c in fake.calls] == ["1", "2", "3"]
    assert _parse(fake.calls[1])[1] == _parse(fake.calls[0])[1]  # the best trial's values
    held = pd.read_csv(tmp_path / "tiny" / "my_method" / "my_method-tiny-forget1-runs2" / "held_out.csv")
    assert list(held["forget_seed"]) == [2, 3] and held["final_score"].notna().all()


def test_interrupt_fails_the_trial_and_the_rerun_finishes(space, tmp_path, monkeypatch):
    mod = _sweep()
    fake = FakeMain({2: "interrupt"})
    monkeypatch.setattr(mod.cli, "main", fake)
    assert _run(mod, tmp_path, 3) == 130
    assert _db_trials(tmp_path) == [(0, "COMPLETE"), (1, "FAIL")]
    assert _run(mod, tmp_path, 3) == 0
    assert [s for _, s in _db_trials(tmp_path)] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    from eval.harness import tuning  # a killed process leaves its trial RUNNING: failed on resume

    tuning.open_study(tmp_path / "tiny" / "my_method" / "optuna.db", "my_method-tiny-forget1-runs2").ask()
    assert _run(mod, tmp_path, 4) == 0
    assert [s for _, s in _db_trials(tmp_path)][4:] == ["FAIL", "COMPLETE"]


def test_refusals(space, tmp_path, monkeypatch, capsys):
    mod = _sweep()
    monkeypatch.setattr(mod.cli, "main", FakeMain())
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


@pytest.fixture
def one_thread():
    """One torch thread for the real trial (2 threads on a busy 2-core machine run 10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_one_real_trial(space, one_thread, home, data_root, tmp_path):
    """The objective is main.py's final score (its JSON), with F and the time ratio kept (main.py builds
    the tiny bank in the session's artifacts folder if no earlier test did)."""
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


def test_first_trial_is_the_defaults(space, tmp_path, monkeypatch, capsys):
    mod = _sweep()
    fake = FakeMain()
    monkeypatch.setattr(mod.cli, "main", fake)
    assert _run(mod, tmp_path, 2) == 0
    assert _parse(fake.calls[0])[1] == {"lr": "0.001", "epochs": "1"}  # MyMethod's Params defaults
    assert _parse(fake.calls[1])[1] != _parse(fake.calls[0])[1]
    assert "trial 0 is the method's defaults" in capsys.readouterr().out


def test_defaults_outside_a_narrowed_range_are_not_queued(monkeypatch):
    from eval.harness import tuning

    cls = methods.get_method("my_method")
    dists = tuning.distributions(cls, {"lr": ("log", 0.03, 0.05), "epochs": ("int", 1, 2)})
    assert tuning.defaults(cls, dists) is None
    assert tuning.defaults(cls, tuning.distributions(cls, SPACE)) == {"lr": 0.001, "epochs": 1}
