"""--leaderboard --forget-seeds on the CLI: its answers to bad input, and end to end on the tiny preset."""

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

import main as cli
from eval.harness import runs, seed_study
from methods.BaseMethod import BaseMethod, register, unregister


@pytest.mark.parametrize(
    "args, message",
    [
        (["--forget-seeds", "1,a"], "--forget-seeds takes comma-separated integers, e.g. 1,2,3; got 'a'"),
        (["--forget-seeds", "1,,2"], "got '' in '1,,2'"),
        (["--forget-seeds", "1,2.5"], "got '2.5'"),
        (["--forget-seeds", "1,2,1"], "--forget-seeds: seed 1 is given twice"),
        (["--forget-seeds", "3"], "give at least two seeds, got '3'"),
        (["--forget-seeds=-1,2"], "every seed must be in \\[0, 2\\*\\*32\\), got -1"),
        (["--forget-seeds", "1,2", "--forget-seed", "3"], "cannot be combined with --forget-seed"),
        (["--forget-seeds", "1,2", "--forget-class", "3"], "cannot be combined with --forget-class"),
        (["--forget-seeds", "1,2", "--forget-set", "mem-high"], "cannot be combined with --forget-set"),
        (["--forget-seeds", "1,2", "--forget-frac", "2"], "--forget-frac must be in \\(0, 1\\)"),
    ],
)
def test_bad_forget_seeds_exit_cleanly_before_any_work(args, message, refused, tmp_path):
    err = refused(["--leaderboard", "none", "--preset", "tiny", "--results-dir", str(tmp_path), *args])
    assert re.search(message, err), err


def test_forget_seeds_needs_the_leaderboard(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["-m", "none", "--preset", "tiny", "--forget-seeds", "1,2"])
    assert e.value.code == 2 and "use it with --leaderboard" in capsys.readouterr().err


@dataclass
class _P(BaseMethod.Params):
    scale: float = 0.01  # std of the weight noise


@pytest.fixture
def noisy_methods():
    """Two near-free methods (weight noise) and one that fails on its first call only, i.e. on forget seed 1."""
    calls = {"flaky": 0}

    def noise(self, net):
        import torch

        with torch.no_grad():
            for p in net.parameters():
                p.add_(self.params.scale * torch.randn(p.shape, generator=self.generator()))
        net.eval()

    @register("_rk_small")
    class Small(BaseMethod):
        """Weight noise 0.01 (forget-seeds test)."""

        Params = _P

        def run(self, net, retain_loader, forget_loader, val_loader):
            noise(self, net)

    @register("_rk_big")
    class Big(Small):
        """Weight noise 0.05 (forget-seeds test)."""

        @dataclass
        class Params(_P):
            scale: float = 0.05

    @register("_rk_flaky")
    class Flaky(Small):
        """Fails on its first call (forget-seeds test)."""

        def run(self, net, retain_loader, forget_loader, val_loader):
            calls["flaky"] += 1
            if calls["flaky"] == 1:
                raise RuntimeError("flaky first call")
            noise(self, net)

    yield
    for key in ("_rk_small", "_rk_big", "_rk_flaky"):
        unregister(key)


def test_one_leaderboard_per_forget_seed_then_a_resumable_summary(
    noisy_methods, one_thread, home, data_root, tmp_path, monkeypatch, capsys
):
    results = tmp_path / "results"
    argv = [
        "--leaderboard",
        "_rk_small",
        "_rk_big",
        "_rk_flaky",
        "--forget-seeds",
        "1,2",
        "--preset",
        "tiny",
        "--quiet",
        "--bootstrap",
        "0",
        "--home",
        str(home),
        "--data-root",
        str(data_root),
        "--results-dir",
        str(results),
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "=== forget seed 1 (1/2) ===" in out and "=== forget seed 2 (2/2) ===" in out
    assert "# Rankings across forget sets: preset `tiny`, forget seeds 1, 2" in out

    # each forget seed wrote the leaderboard `--leaderboard ... --forget-seed S` writes, in its own tag
    s1 = pd.read_csv(results / "tiny" / "leaderboard.csv").set_index("method")
    s2 = pd.read_csv(results / "tiny-forget-f0.1-s2" / "leaderboard.csv").set_index("method")
    assert s1.loc["_rk_flaky", "status"] == "failed" and "flaky first call" in s1.loc["_rk_flaky", "reason"]
    assert (s2["status"] == "ok").all() and set(s2.index) == set(s1.index) == {
        "_rk_small",
        "_rk_big",
        "_rk_flaky",
        "none",
        "retrain",
    }

    folder = results / "tiny-forget-seeds-1-2"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(seed_study.FILES)
    t = pd.read_csv(folder / "summary.csv").set_index("method")
    assert set(t.index) == set(s1.index)
    assert np.isnan(t.loc["_rk_flaky", "final_score_s1"]) and t.loc["_rk_flaky", "failed_on"] == "s1"
    assert t.loc["_rk_flaky", "final_score_s2"] == s2.loc["_rk_flaky", "final_score"]
    assert t.loc["_rk_flaky", "n_sets"] == 1 and (t.drop("_rk_flaky")["n_sets"] == 2).all()
    assert t.loc["retrain", "reference"] and t.loc["retrain", "rank_s1"] == 1
    assert t.loc["retrain", "final_score_s1"] == s1.loc["retrain", "final_score"]
    tau = pd.read_csv(folder / "kendall_tau.csv", index_col="forget_set")
    assert tau.shape == (2, 2) and list(tau.index) == ["s1", "s2"]
    assert "left out of τ" in (folder / "summary.md").read_text()

    # the same command again reuses every cached row; only the failed method is retried
    retried = []

    def no_runs(cls, *args, **kwargs):
        retried.append(cls.key)
        raise AssertionError("run_once called")

    monkeypatch.setattr(runs, "run_once", no_runs)
    assert cli.main(argv) == 0
    assert retried == ["_rk_flaky"]
    again = pd.read_csv(folder / "summary.csv").set_index("method")
    pd.testing.assert_series_equal(again["final_score_mean"], t["final_score_mean"])
