"""Two processes on one artifacts folder, and Ctrl-C: real subprocesses on the tiny preset."""

import json
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT


def _cmd(home, data_root, results, *extra):
    return [
        sys.executable,
        "main.py",
        "-m",
        "my_method",
        "--preset",
        "tiny",
        "--quiet",
        "--bootstrap",
        "0",
        "--runs",
        "2",
        "--retrained",
        "3",
        "--home",
        str(home),
        "--data-root",
        str(data_root),
        "--results-dir",
        str(results),
        *extra,
    ]


def _wait_for(pattern_dir, pattern, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if list(pattern_dir.glob(pattern)):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing matched {pattern} under {pattern_dir} after {timeout} s")


def test_two_processes_share_one_artifacts_folder(tmp_path, data_root):
    """Started together, one process waits on the other's locks, then reuses what it built: same results."""
    home = tmp_path / "home"
    a, b = (
        subprocess.Popen(
            _cmd(home, data_root, tmp_path / r), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for r in ("ra", "rb")
    )
    (_, err_a), (_, err_b) = a.communicate(timeout=600), b.communicate(timeout=600)
    assert a.returncode == 0 and b.returncode == 0, err_a + err_b
    assert "waiting: another process holds the lock" in err_a + err_b
    ra, rb = (json.loads((tmp_path / r / "tiny" / "my_method.json").read_text()) for r in ("ra", "rb"))
    assert ra["run_dir"] == rb["run_dir"] and ra["F"] == rb["F"] and ra["run_times_s"] == rb["run_times_s"], (
        "the second process reused the first one's runs"
    )
    assert len(list(home.glob("banks/*/models/*.pt"))) == 4


def test_ctrl_c_then_the_same_command_resumes(tmp_path, data_root):
    home = tmp_path / "home"
    cmd = _cmd(home, data_root, tmp_path / "r")
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(home, "banks/*/models/original.pt")
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "interrupted; rerun the same command to resume" in err and "Traceback" not in err
    original = next(home.glob("banks/*/models/original.pt"))
    stamp = original.stat().st_mtime_ns
    assert not list(home.glob("banks/**/.*.tmp")), "no half-written file is left behind"
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert original.stat().st_mtime_ns == stamp, "the model finished before Ctrl-C is reused"
