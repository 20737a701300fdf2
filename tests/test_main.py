"""End to end on the tiny preset, and the CLI's answers to bad input."""
import json
from dataclasses import dataclass

import pytest

import main as cli
from methods.BaseMethod import BaseMethod, register, _METHODS


@pytest.fixture
def run(home, data_root, tmp_path):
    def _run(*args):
        return cli.main(["--preset", "tiny", "--quiet", "--home", str(home), "--data-root", str(data_root),
                         "--results-dir", str(tmp_path / "results"), "--bootstrap", "5", *args])
    _run.results = tmp_path / "results" / "tiny"
    return _run


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


@pytest.mark.parametrize("args, message", [
    (["-m", "nope"], "unknown method 'nope'; known methods: .*my_method"),
    (["-m", "my_method", "--set", "epochz=3"], "unknown parameter 'epochz'"),
    (["-m", "my_method", "--set", "epochs=abc"], "'epochs' expects int"),
    (["-m", "my_method", "--set", "lr=-1"], "lr must be > 0"),
    (["-m", "my_method", "--runs", "1"], "--runs must be at least 2"),
    (["-m", "my_method", "--preset", "huge"], "invalid choice: 'huge'"),
    ([], "choose a method"),
])
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
    monkeypatch.setattr(cifar10, "_download", lambda root: (_ for _ in ()).throw(
        cifar10.DataError(cifar10._how_to_provide(root))))
    code = cli.main(["-m", "none", "--preset", "tiny", "--quiet", "--data-root", str(tmp_path / "empty"),
                     "--home", str(home)])
    assert code == 1
    assert "materialize.py" in capsys.readouterr().err


@dataclass
class _P(BaseMethod.Params):
    mode: str = "raise"


@pytest.fixture
def broken_method():
    @register("_broken")
    class Broken(BaseMethod):
        """Fails on purpose."""
        Params = _P

        def run(self, net, retain_loader, forget_loader, val_loader):
            if self.params.mode == "raise":
                raise RuntimeError("boom")
            import torch
            with torch.no_grad():
                for p in net.parameters():
                    p.fill_(float("nan"))
    yield
    _METHODS.pop("_broken")


@pytest.mark.parametrize("mode, reason", [("raise", "RuntimeError: boom"), ("nan", "NaN")])
def test_failing_method_is_reported(run, broken_method, mode, reason, capsys):
    assert run("-m", "_broken", "--set", f"mode={mode}") == 1
    assert reason in capsys.readouterr().err
    r = _result(run, "_broken")
    assert r["status"] == "failed" and reason in r["reason"]
