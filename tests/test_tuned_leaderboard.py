"""--leaderboard --tuned DIR: each method runs with the `best.json` of its Optuna search (scripts/sweep.py),
the others with their defaults; bad folders and files are refused before any work."""

import json
import re
from dataclasses import dataclass

import pandas as pd
import pytest

import main as cli
from eval.harness import tuned_records
from methods.BaseMethod import BaseMethod, register, unregister


@dataclass
class _P(BaseMethod.Params):
    scale: float = 0.01  # std of the weight noise


class _Noise(BaseMethod):
    """Weight noise (tuned-leaderboard test)."""

    Params = _P
    search_space = {"scale": ("log", 1e-3, 0.1)}

    def run(self, net, retain_loader, forget_loader, val_loader):
        import torch

        with torch.no_grad():
            for p in net.parameters():
                p.add_(self.params.scale * torch.randn(p.shape, generator=self.generator()))
        net.eval()


@pytest.fixture
def noisy():
    """Two near-free methods, one of which gets a search result in the tests."""
    for key in ("_tu_a", "_tu_b"):
        register(key)(type(f"Noise{key}", (_Noise,), {"__doc__": _Noise.__doc__}))
    yield
    for key in ("_tu_a", "_tu_b"):
        unregister(key)


def _best(folder, method="_tu_a", preset="tiny", tokens=("scale=0.002",), forget_seed=1, name="s"):
    path = folder / preset / method / name / "best.json"
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps(
            {
                "method": method,
                "preset": preset,
                "forget_seed": forget_seed,
                "runs": 2,
                "trials": 3,
                "tokens": list(tokens),
                "final_score": 0.5,
            }
        )
    )
    return path


def test_load_picks_the_preset_and_refuses_ambiguity(tmp_path):
    _best(tmp_path)
    _best(tmp_path, preset="cpu")
    _best(tmp_path, method="_tu_b", preset="cpu")
    found = tuned_records.load(tmp_path, "tiny", ["_tu_a", "_tu_b"])
    assert list(found) == ["_tu_a"] and found["_tu_a"].tokens == ("scale=0.002",)
    assert found["_tu_a"].forget_seed == 1 and found["_tu_a"].trials == 3
    _best(tmp_path, name="other")
    with pytest.raises(ValueError, match="2 searches of '_tu_a' on preset 'tiny'"):
        tuned_records.load(tmp_path, "tiny", ["_tu_a"])
    with pytest.raises(ValueError, match="no folder"):
        tuned_records.load(tmp_path / "nope", "tiny", ["_tu_a"])


def test_notes_say_what_is_tuned_and_what_is_not_held_out(tmp_path):
    _best(tmp_path)
    found = tuned_records.load(tmp_path, "tiny", ["_tu_a"])
    lines = tuned_records.notes(found, ["_tu_a", "_tu_b"], forget_seed=1)
    assert "`_tu_a` scale=0.002 (3 trials × 2 runs on forget seed 1" in lines[0]
    assert lines[1] == "**Defaults** (no search found): `_tu_b`."
    assert lines[2].startswith("**Not held out**: `_tu_a`")
    assert len(tuned_records.notes(found, ["_tu_a"], forget_seed=2)) == 1
    long = tuned_records.Tuned("m", ("lr=0.05176340429875833", "T=9", "proxy=none"), 1, 6, 8, 0.1, tmp_path)
    assert long.describe().startswith("`m` lr=0.05176 T=9 proxy=none (6 trials × 8 runs")


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not a search result"),
        (
            json.dumps({"method": "_tu_a", "preset": "tiny", "forget_seed": 1, "tokens": ["nope=1"]}),
            "best.json: .*nope",
        ),
    ],
)
def test_bad_search_files_exit_cleanly_before_any_work(noisy, content, message, tmp_path, refused):
    path = tmp_path / "t" / "tiny" / "_tu_a" / "s" / "best.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    err = refused(
        [
            "--leaderboard",
            "_tu_a",
            "--preset",
            "tiny",
            "--tuned",
            str(tmp_path / "t"),
            "--results-dir",
            str(tmp_path / "r"),
        ]
    )
    assert re.search(message, err), err


def test_tuned_needs_the_leaderboard(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["-m", "none", "--preset", "tiny", "--tuned", "x"])
    assert e.value.code == 2 and "use it with --leaderboard" in capsys.readouterr().err


def test_tuned_leaderboard_runs_the_tuned_values_beside_the_defaults(noisy, home, data_root, tmp_path, capsys):
    _best(tmp_path / "tuning", forget_seed=1)
    results = tmp_path / "results"
    argv = [
        "--leaderboard",
        "_tu_a",
        "_tu_b",
        "--preset",
        "tiny",
        "--forget-seed",
        "2",
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
    assert cli.main([*argv, "--tuned", str(tmp_path / "tuning")]) == 0
    assert "tuned parameters from" in capsys.readouterr().out
    plain = pd.read_csv(results / "tiny-forget-f0.1-s2" / "leaderboard.csv").set_index("method")
    folder = results / "tiny-forget-f0.1-s2-tuned"
    tuned_t = pd.read_csv(folder / "leaderboard.csv").set_index("method")
    assert json.loads(plain.loc["_tu_a", "params"])["scale"] == 0.01
    assert json.loads(tuned_t.loc["_tu_a", "params"])["scale"] == 0.002
    assert tuned_t.loc["_tu_a", "final_score"] != plain.loc["_tu_a", "final_score"]
    assert tuned_t.loc["_tu_b", "params"] == plain.loc["_tu_b", "params"]  # no search: its defaults
    assert tuned_t.loc["_tu_b", "cached"] and tuned_t.loc["retrain", "cached"]  # rows shared with the plain board
    md = (folder / "leaderboard.md").read_text()
    assert "**Tuned** with `scripts/sweep.py --optuna`: `_tu_a` scale=0.002" in md
    assert "**Defaults** (no search found): `_tu_b`" in md and "Not held out" not in md


def test_a_presets_committed_record_runs_by_default_and_published_runs_the_defaults(
    noisy, home, data_root, tmp_path, capsys, monkeypatch
):
    """benchmarks/tuned/<preset>/: -m and --leaderboard run a method's record, --set goes over it, --published
    runs the published defaults; each says which values ran."""
    monkeypatch.setattr(tuned_records, "RECORDS", tmp_path / "records")
    _best(tmp_path / "records", forget_seed=1)
    results = tmp_path / "results"
    common = [
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

    def scale(*extra):
        assert cli.main(["-m", "_tu_a", *common, *extra]) == 0
        return json.loads((results / "tiny" / "_tu_a.json").read_text())["params"]["scale"]

    assert scale() == 0.002
    assert "values: the record `_tu_a` scale=0.002" in capsys.readouterr().out
    assert scale("--set", "scale=0.004") == 0.004
    assert scale("--published") == 0.01
    assert "values: _tu_a's published defaults" in capsys.readouterr().out
    assert cli.main(["--leaderboard", "_tu_a", "_tu_b", *common]) == 0
    board = pd.read_csv(results / "tiny" / "leaderboard.csv").set_index("method")
    assert json.loads(board.loc["_tu_a", "params"])["scale"] == 0.002
    assert json.loads(board.loc["_tu_b", "params"])["scale"] == 0.01
    assert "**Tuned** with `scripts/sweep.py --optuna`: `_tu_a`" in (results / "tiny" / "leaderboard.md").read_text()
    assert cli.main(["--leaderboard", "_tu_a", *common, "--published"]) == 0
    published = pd.read_csv(results / "tiny-published" / "leaderboard.csv").set_index("method")
    assert json.loads(published.loc["_tu_a", "params"])["scale"] == 0.01
    assert "**Published defaults**" in (results / "tiny-published" / "leaderboard.md").read_text()
