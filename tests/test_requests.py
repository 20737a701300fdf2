"""Sequential forget requests: the cut into requests, the prefix splits, the default run_requests, the CLI."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from eval.harness.requests import plan_requests, request_chunks
from methods.BaseMethod import BaseMethod


def test_request_chunks_partition_the_forget_set():
    idx = np.arange(100, 150) * 3
    parts = request_chunks(idx, 3)
    assert [len(p) for p in parts] == [17, 17, 16]
    assert np.array_equal(np.sort(np.concatenate(parts)), idx)  # each example in exactly one request
    assert all(np.all(np.diff(p) > 0) for p in parts)
    assert all(np.array_equal(a, b) for a, b in zip(parts, request_chunks(idx, 3)))  # deterministic
    assert not np.array_equal(parts[0], np.sort(idx)[:17])  # a random cut, not the first examples
    for bad in (0, 51):
        with pytest.raises(ValueError, match="--requests must be between 1 and"):
            request_chunks(idx, bad)


def test_plan_prefixes_keep_later_requests_in_the_retain_set(tiny_splits):
    plan = plan_requests(tiny_splits, 2, bank_factory=lambda s: s.protocol)
    first, last = plan.splits
    assert last is tiny_splits and plan.banks == [first.protocol, tiny_splits.protocol]
    assert np.array_equal(first.forget_idx, plan.chunks[0])
    n = len(tiny_splits.retain_y) + len(tiny_splits.forget_y)
    assert len(first.retain_y) + len(first.forget_y) == n  # same training subset
    assert len(first.retain_y) == len(tiny_splits.retain_y) + len(plan.chunks[1])
    assert first.fingerprint() != tiny_splits.fingerprint()  # so the prefix has a bank of its own


class _Recorder(BaseMethod):
    key = "recorder"

    @dataclass
    class Params(BaseMethod.Params):
        pass

    def run(self, net, retain_loader, forget_loader, val_loader):
        self.seen = getattr(self, "seen", []) + [(self.params.seed, retain_loader, forget_loader)]


def test_default_run_requests_gives_each_request_its_own_seed():
    m = _Recorder(seed=5)
    assert list(m.run_requests(None, ["r0", "r1", "r2"], ["f0", "f1", "f2"], "v")) == [0, 1, 2]
    seeds = [s for s, _, _ in m.seen]
    assert seeds[0] == 5 and len(set(seeds)) == 3
    assert [(r, f) for _, r, f in m.seen] == [("r0", "f0"), ("r1", "f1"), ("r2", "f2")]
    assert m.params.seed == 5  # restored afterwards
    again = _Recorder(seed=5)
    list(again.run_requests(None, ["r0", "r1", "r2"], ["f0", "f1", "f2"], "v"))
    assert [s for s, _, _ in again.seen] == seeds  # reproducible
    with pytest.raises(ValueError, match="2 retain loaders for 1 forget requests"):
        list(m.run_requests(None, ["a", "b"], ["c"], "v"))


def test_cli_scores_each_request_against_its_own_bank(run, tiny_bank, capsys):
    assert run("-m", "my_method", "--requests", "2") == 0
    out = capsys.readouterr().out
    assert "| 1 (+25) | 25 |" in out and "| 2 (+25) | 50 |" in out
    rec = json.loads((run.results / "my_method.requests-2.json").read_text())
    first, last = rec["rows"]
    assert rec["banks"][-1] == tiny_bank.key and rec["banks"][0] != tiny_bank.key
    assert (first["n_union"], last["n_union"]) == (25, 50)
    # the last request is scored against the usual bank's retrained models
    assert run("-m", "my_method") == 0
    single = json.loads((run.results / "my_method.json").read_text())
    assert last["accuracy"]["forget_retrained"] == pytest.approx(single["accuracy"]["forget_retrained"])
    assert all(0 <= r["F"] <= 1 and r["runtime_mean_s"] > 0 for r in rec["rows"])
    run_dir = rec["run_dir"]
    stamps = sorted(p.stat().st_mtime_ns for p in Path(run_dir).glob("run_*.npz"))
    assert len(stamps) == 3
    assert run("-m", "my_method", "--requests", "2") == 0  # cached: no run recomputed
    assert sorted(p.stat().st_mtime_ns for p in Path(run_dir).glob("run_*.npz")) == stamps
    again = json.loads((run.results / "my_method.requests-2.json").read_text())
    assert [r["score"] for r in again["rows"]] == [r["score"] for r in rec["rows"]]


@pytest.mark.parametrize(
    "args, message",
    [
        (["-m", "ft", "--requests", "0"], "--requests must be >= 1"),
        (["--leaderboard", "ft", "--requests", "2"], "use it with -m NAME"),
        (["-m", "ft", "--requests", "51"], "the forget set has only 50 examples"),
    ],
)
def test_cli_refuses_bad_requests(run, args, message, capsys):
    with pytest.raises(SystemExit):
        run(*args)
    assert message in capsys.readouterr().err
