"""Scale-out: the same evaluation in process, in worker processes, on Ray (local) and as shards gives the same
files and scores; a killed worker leaves no partial file and the re-run does only what is missing."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import main as cli
from eval.harness.tasks import parse_shard, shard
from tests.conftest import one_torch_thread

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"time_s", "reference_retrain_s", "log"}  # the only fields that differ between two runs of a task
COUNTS = ["--runs", "3", "--retrained", "3"]


@pytest.fixture(scope="module", autouse=True)
def one_thread_here():
    """Each worker and Ray task here gets one thread (2 workers on 2 cores, 1 CPU per task); so does the in-process
    reference: float reductions depend on the thread count, and "the same files" means bit for bit."""
    with one_torch_thread():
        yield


def _cli(home, results, data_root, *args):
    return cli.main(
        [
            "-m",
            "ft",
            "--preset",
            "tiny",
            "--quiet",
            "--home",
            str(home),
            "--data-root",
            str(data_root),
            "--results-dir",
            str(results),
            "--bootstrap",
            "5",
            *COUNTS,
            *args,
        ]
    )


def _files(home: Path) -> dict[str, Path]:
    return {str(p.relative_to(home)): p for p in home.rglob("*") if p.suffix in (".pt", ".npz")}


def _assert_same_files(a: Path, b: Path):
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    for name, pa in fa.items():
        if pa.suffix == ".pt":
            sa, sb = (torch.load(p, weights_only=True)["state_dict"] for p in (pa, fb[name]))
            assert all(torch.equal(sa[k], sb[k]) for k in sa), name
        else:
            with np.load(pa) as na, np.load(fb[name]) as nb:
                assert sorted(na.files) == sorted(nb.files), name
                for k in set(na.files) - TIMING:
                    assert np.array_equal(na[k], nb[k]), (name, k)


def _score(results: Path) -> dict:
    res = json.loads((results / "tiny" / "ft.json").read_text())
    return {k: res[k] for k in ("score", "F", "ra_ratio", "ta_ratio")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_root):
    """The in-process evaluation every executor is compared with."""
    root = tmp_path_factory.mktemp("in-process")
    assert _cli(root / "home", root / "results", data_root) == 0
    return root


def test_workers_give_the_same_files_and_score(reference, tmp_path, data_root):
    assert _cli(tmp_path / "home", tmp_path / "results", data_root, "--workers", "2") == 0
    _assert_same_files(reference / "home", tmp_path / "home")
    assert _score(tmp_path / "results") == _score(reference / "results")


def test_shards_cover_every_task_once_and_the_gather_scores(reference, tmp_path, data_root, capsys):
    home, results = tmp_path / "home", tmp_path / "results"
    for i in range(3):
        assert _cli(home, results, data_root, "--shard", f"{i}/3") == 0
        assert "run the command without --shard" in capsys.readouterr().out
    assert not (results / "tiny" / "ft.json").exists()  # shards compute, they do not score
    assert _cli(home, results, data_root, "--dry-run") == 0
    assert "0 bank and runs tasks would run" in capsys.readouterr().out
    assert _cli(home, results, data_root) == 0
    _assert_same_files(reference / "home", home)
    assert _score(results) == _score(reference / "results")


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray not installed (requirements-ray.txt)")
def test_ray_local_gives_the_same_files_and_score(reference, tmp_path, data_root):
    import ray

    try:
        assert _cli(tmp_path / "home", tmp_path / "results", data_root, "--ray", "local") == 0
    finally:
        ray.shutdown()
    _assert_same_files(reference / "home", tmp_path / "home")
    assert _score(tmp_path / "results") == _score(reference / "results")


def test_a_killed_worker_leaves_no_partial_file_and_the_rerun_does_only_the_rest(reference, tmp_path, data_root):
    home, results = tmp_path / "home", tmp_path / "results"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}  # two workers with one thread each, as in the reference
    cmd = [
        sys.executable,
        "main.py",
        "-m",
        "ft",
        "--preset",
        "tiny",
        "--quiet",
        "--home",
        str(home),
        "--data-root",
        str(data_root),
        "--results-dir",
        str(results),
        "--bootstrap",
        "5",
        *COUNTS,
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env
    )
    try:
        deadline = time.monotonic() + 600
        while len(list(home.glob("banks/*/models/*.pt"))) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, "the evaluation ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and both workers, wherever they are
        proc.wait()
    done = _files(home)
    assert len([p for p in done if p.endswith(".pt")]) >= 2
    for path in done.values():  # everything on disk is whole: atomic writes
        if path.suffix == ".pt":
            torch.load(path, weights_only=True)
        else:
            np.load(path).close()
    before = {name: path.stat().st_mtime_ns for name, path in done.items()}
    out = subprocess.run(cmd + ["--dry-run"], cwd=ROOT, capture_output=True, text=True, check=True, env=env).stdout
    stems = lambda part: {Path(p).stem for p in done if f"/{part}/" in p}  # noqa: E731
    n_models = len(stems("models") & stems("outputs"))  # a model counts once its outputs are written
    n_runs = len([p for p in done if "/runs/" in p])
    assert f"{(4 - n_models) + (3 - n_runs)} bank and runs tasks would run" in out
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True, env=env).returncode == 0
    assert all(path.stat().st_mtime_ns == before[name] for name, path in _files(home).items() if name in before)
    _assert_same_files(reference / "home", home)
    assert _score(results) == _score(reference / "results")


def test_leaderboard_dry_run_lists_every_method_and_reference(tmp_path, data_root, capsys):
    assert (
        cli.main(
            [
                "--leaderboard",
                "ft",
                "--preset",
                "tiny",
                "--quiet",
                "--home",
                str(tmp_path),
                "--data-root",
                str(data_root),
                "--results-dir",
                str(tmp_path / "r"),
                *COUNTS,
                "--dry-run",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "13 bank and runs tasks would run" in out  # 4 models + 3 runs of ft, none and retrain
    assert all(f"run {m} 002" in out for m in ("ft", "none", "retrain"))
    assert not (tmp_path / "banks").exists() or not list(tmp_path.glob("banks/*/models/*.pt"))


def test_shard_slices_partition_the_task_list(monkeypatch):
    from eval.harness import tasks

    monkeypatch.setattr(tasks, "is_done", lambda t: t in (4, 7))  # done tasks drop out of their shard
    slices = [shard(list(range(10)), i, 3) for i in range(3)]
    assert slices == [[0, 3, 6, 9], [1], [2, 5, 8]]
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "0"], "--workers must be >= 1"),
        (["--workers", "2", "--ray", "local"], "exclusive"),
        (["--shard", "3/3"], "--shard i/n"),
        (["--gpus-per-task", "-1", "--ray"], "--gpus-per-task"),
        (["--workers", "2", "--requests", "2"], "apply to -m NAME and --leaderboard"),
    ],
)
def test_bad_scale_out_options_are_refused(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["-m", "ft", "--preset", "tiny", *args])
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray not installed (requirements-ray.txt)")
def test_an_unreachable_ray_address_fails_fast_and_clearly(tmp_path, data_root, capsys):
    assert _cli(tmp_path, tmp_path / "r", data_root, "--ray", "127.0.0.1:1") == 1
    assert "no Ray cluster answers at 127.0.0.1:1" in capsys.readouterr().err
    assert not list(tmp_path.glob("banks/*/models/*.pt"))


class _KillsItsWorker:
    """A task whose process dies at once, as under the OOM killer or `kill -9`."""

    label = "kills its worker"

    def __call__(self):
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_dead_worker_is_named_and_the_rerun_resumes():
    """A worker killed under --workers used to end in a raw BrokenProcessPool traceback."""
    from eval.harness.api import QUIET, ExecutorError
    from eval.harness.api.work import _run
    from eval.harness.executors import Workers

    pool = Workers(1, threads=1)
    try:
        with pytest.raises(ExecutorError, match="worker process died .* run the same command again to resume"):
            _run([_KillsItsWorker()], pool, QUIET)
    finally:
        pool.close()
