"""End to end on the tiny preset, and the CLI's answers to bad input."""

import json
import os
from dataclasses import dataclass

import pytest

import main as cli
from methods.BaseMethod import BaseMethod, register, unregister


def _result(run, key):
    return json.loads((run.results / f"{key}.json").read_text())


def test_end_to_end_reference_rows(run, capsys):
    for key in ("none", "my_method", "retrain"):
        assert run("-m", key) == 0
    out = capsys.readouterr().out
    assert "FINAL SCORE" in out and "forgetting quality F" in out
    none, ft, re = (_result(run, k) for k in ("none", "my_method", "retrain"))
    # identical runs are "peaky": the scorer gives them epsilon 50, i.e. F = 0
    assert none["F"] == 0 and none["final_score"] == 0
    assert re["F"] > 0.05 and re["final_score"] > none["final_score"]
    assert re["n_runs"] == 3 and re["n_retrained"] == 4 and len(re["run_times_s"]) == 3
    assert re["time_ratio"] is not None and not re["rejected"]  # retrain is exempt from the rule
    assert 0 <= ft["F"] <= 1 and ft["score_ci95"][0] <= ft["score_ci95"][1]
    import numpy as np

    with np.load(run.results / "retrain.npz") as f:
        assert f["unlearned_stat"].shape == (3, 50) and f["retrained_stat"].shape == (4, 50)


def test_dict_batches_and_mlrc_metric(run):
    assert run("-m", "my_method", "--dict-batches", "--metric", "mlrc") == 0
    r = _result(run, "my_method")
    assert r["metric"] == "mlrc" and r["dict_batches"]


def test_report_and_json_carry_tow_ulira_klom(run, capsys):
    assert run("-m", "my_method", "--metric", "ulira") == 0
    out = capsys.readouterr().out
    for label in ("ToW ", "ToW-MIA", "loss MIA", "U-LiRA accuracy", "KLoM p50 / p95 / p99"):
        assert label in out, label
    r = _result(run, "my_method")
    assert r["metric"] == "ulira" and r["F"] == pytest.approx(1 - 2 * abs(r["ulira_acc"] - 0.5))
    for key in ("tow", "tow_mia", "mia", "klom_p50", "klom_p95", "klom_p99"):
        assert 0 <= r[key] < float("inf"), key
    assert run("-m", "my_method", "--metric", "klom") == 0
    k = _result(run, "my_method")
    assert k["metric"] == "klom" and 0 <= k["F"] <= 1 and k["ulira_acc"] == pytest.approx(r["ulira_acc"])


def test_runs_resume(run, capsys):
    assert run("-m", "my_method", "--set", "epochs=1") == 0
    r = _result(run, "my_method")
    from pathlib import Path

    files = sorted(Path(r["run_dir"]).glob("run_*.npz"))
    assert len(files) == 3
    files[1].unlink()
    stamps = {f: f.stat().st_mtime_ns for f in (files[0], files[2])}
    assert run("-m", "my_method", "--set", "epochs=1") == 0
    assert files[1].exists()
    assert all(f.stat().st_mtime_ns == t for f, t in stamps.items()), "finished runs must be reused"


def test_list(capsys):
    assert cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "my_method" in out and "retrain" in out and "not a valid entry" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["-m", "nope"], "unknown method 'nope'; known methods: .*my_method"),
        (["-m", "my_method", "--set", "epochz=3"], "unknown parameter 'epochz'"),
        (["-m", "my_method", "--set", "epochs=abc"], "'epochs' expects int"),
        (["-m", "my_method", "--set", "lr=-1"], "lr must be > 0"),
        (["-m", "my_method", "--set", "lr=1e999"], "'lr' must be a finite number"),
        (["-m", "my_method", "--set", "lr=nan"], "'lr' must be a finite number"),
        (["-m", "my_method", "--set", "momentum=-3"], "momentum must be in \\[0, 1\\)"),
        (["-m", "my_method", "--set", "lr=0.1", "lr=0.2"], "'lr' given twice"),
        (["-m", "my_method", "--seed", "-1"], "--seed must be in \\[0, 2\\*\\*63\\)"),
        (["-m", "my_method", "--seed", str(2**70)], "--seed must be in"),
        (["-m", "my_method", "--runs", "1"], "--runs must be at least 2"),
        (["-m", "my_method", "--preset", "huge"], "invalid choice: 'huge'"),
        (["-m", "my_method", "--preset", "tiny", "--forget-frac", "1.5"], "--forget-frac must be in \\(0, 1\\)"),
        (["-m", "my_method", "--preset", "tiny", "--forget-class", "10"], "--forget-class must be in \\[0, 10\\)"),
        (["-m", "my_method", "--preset", "tiny", "--forget-class", "1", "--forget-size", "5"], "cannot be combined"),
        ([], "choose a method"),
        (["--leaderboard", "ft", "--set", "lr=banana", "nosuch=1", "--preset", "tiny"], "--set changes one method"),
        (["-m", "ft", "--preset", "tiny", "--metric", "ulira", "--runs", "2"], "--metric ulira .* got 2 runs"),
        (["-m", "ft", "--preset", "tiny", "--metric", "ulira", "--retrained", "2"], "and 2 retrained models"),
        (["--leaderboard", "ft", "--preset", "tiny", "--metric", "ulira", "--runs", "2"], "--metric ulira"),
        (["-m", "ft", "--preset", "tiny", "--requests", "100000"], "--requests 100000: the forget set has only"),
    ],
)
def test_bad_input_exits_cleanly(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    import re

    assert re.search(message, err), err


def test_missing_data_message(tmp_path, home, monkeypatch, capsys):
    from data import cifar10

    monkeypatch.setattr(
        cifar10, "_download", lambda root: (_ for _ in ()).throw(cifar10.DataError(cifar10._how_to_provide(root)))
    )
    code = cli.main(
        ["-m", "none", "--preset", "tiny", "--quiet", "--data-root", str(tmp_path / "empty"), "--home", str(home)]
    )
    assert code == 1
    assert "cifar-10-python.tar.gz" in capsys.readouterr().err


@dataclass
class _P(BaseMethod.Params):
    mode: str = "raise"  # raise | nan | exit | ok


@pytest.fixture
def broken_method():
    @register("_broken")
    class Broken(BaseMethod):
        """Fails on purpose."""

        Params = _P

        def run(self, net, retain_loader, forget_loader, val_loader):
            import sys

            import torch

            if self.params.mode == "raise":
                raise RuntimeError("boom")
            if self.params.mode == "exit":
                sys.exit(3)
            with torch.no_grad():
                for p in net.parameters():
                    if self.params.mode == "nan":
                        p.fill_(float("nan"))
                    else:
                        p.add_(0.01 * torch.randn(p.shape, generator=self.generator()))

    yield
    unregister("_broken")


@pytest.mark.parametrize(
    "mode, reason", [("raise", "RuntimeError: boom"), ("nan", "NaN"), ("exit", "called sys.exit(3)")]
)
def test_failing_method_is_reported_and_the_last_good_result_kept(run, broken_method, mode, reason, capsys):
    assert run("-m", "_broken", "--set", "mode=ok") == 0
    good_json, good_npz = (run.results / "_broken.json").read_bytes(), (run.results / "_broken.npz").read_bytes()
    assert run("-m", "_broken", "--set", f"mode={mode}") == 1
    err = capsys.readouterr().err
    assert reason in err and "previous result beside it is kept" in err and "Traceback" not in err
    failed = json.loads((run.results / "_broken.failed.json").read_text())
    assert failed["status"] == "failed" and reason in failed["reason"]
    assert (run.results / "_broken.json").read_bytes() == good_json, "the good result is not overwritten"
    assert (run.results / "_broken.npz").read_bytes() == good_npz
    assert run("-m", "_broken", "--set", "mode=ok") == 0
    assert not (run.results / "_broken.failed.json").exists(), "a success clears the stale failure"


def test_results_dir_naming_a_file_is_refused_before_any_work(tmp_path, home, data_root, refused):
    blocker = tmp_path / "results"
    blocker.write_text("I am a file")
    for flag, path in (("--results-dir", blocker), ("--home", blocker / "sub")):
        err = refused(
            [
                "-m",
                "my_method",
                "--preset",
                "tiny",
                "--quiet",
                "--data-root",
                str(data_root),
                "--home",
                str(home),
                "--results-dir",
                str(tmp_path / "ok"),
                flag,
                str(path),
            ]
        )
        assert "is a file, not a folder" in err or "not writable" in err, err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_artifacts_folder_is_refused_before_any_work(tmp_path, data_root, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    with pytest.raises(SystemExit):
        cli.main(["-m", "none", "--preset", "tiny", "--home", str(ro), "--data-root", str(data_root)])
    assert "not writable" in capsys.readouterr().err


def test_ctrl_c_says_how_to_resume(run, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    from eval.harness.api import method

    monkeypatch.setattr(method, "evaluate_runs", interrupted)
    assert run("-m", "my_method") == 130
    err = capsys.readouterr().err
    assert "interrupted; rerun the same command to resume" in err and "Traceback" not in err


def test_aliases_and_case_resolve_on_the_cli(run):
    assert run("-m", "MY_METHOD", "--set", "epochs=1") == 0
    assert _result(run, "my_method")["params"]["epochs"] == 1


def test_forget_protocol_options_make_their_own_bank(run, tiny_bank, capsys):
    assert run("-m", "none", "--forget-class", "3", "--runs", "2", "--retrained", "2") == 0
    out = capsys.readouterr().out
    assert "forget set: class 3" in out
    r = json.loads((run.results.parent / "tiny-forget-class3" / "none.json").read_text())
    assert r["bank"]["key"] != tiny_bank.key and r["forget"] == "class 3"
    assert r["accuracy"]["forget_retrained"] < 0.05, "retrained without class 3, they (almost) never predict it"


def test_a_bank_build_says_its_cost_before_it_starts(run, tiny_bank, tmp_path, capsys):
    """`--retrained 100000` used to start days of training without a word: the missing models and their time,
    from the models already built, are said before the first one trains."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(tiny_bank.dir, home / "banks" / tiny_bank.dir.name)
    assert run("-m", "none", "--retrained", "5", "--home", str(home)) == 0
    out = capsys.readouterr().out
    assert f"bank {tiny_bank.dir.name}: 1 of 6 models to train, about " in out, out
    assert f"(measured in {tiny_bank.dir.name})" in out and "same command resumes" in out
    assert run("-m", "none", "--retrained", "5", "--home", str(home)) == 0
    assert "models to train" not in capsys.readouterr().out, "nothing to build, nothing said"


@pytest.mark.parametrize("board", [False, True], ids=["method", "leaderboard"])
def test_a_full_disk_is_said_plainly_and_leaves_nothing_partial(run, tiny_bank, monkeypatch, capsys, board):
    """A full disk used to end in a raw OSError traceback (a board: every later row failed, blamed on it)."""
    import errno

    from eval import io

    real = io.os.replace

    def full(src, dst):  # the write fails after the temporary file is made, as ENOSPC would
        if str(dst).endswith(".npz") and "/runs/" in str(dst):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(io.os, "replace", full)
    args = ("--leaderboard", "my_method") if board else ("-m", "my_method")
    assert run(*args, "--seed", "12345") == 1
    err = capsys.readouterr().err
    assert "error: the disk is full: No space left on device" in err and "run the same command again" in err
    assert "Traceback" not in err
    assert not list(tiny_bank.dir.glob("runs/*/.*.tmp")), "no temporary file left behind"
    monkeypatch.setattr(io.os, "replace", real)
    assert run(*args, "--seed", "12345") == 0, "with space again, the same command finishes"
