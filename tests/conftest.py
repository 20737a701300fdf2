"""Shared fixtures: the tiny preset's data and a session-wide artifacts folder (its bank built once)."""

import os
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# CI has 2 cores. One pytest process takes both; under pytest-xdist (`-n 2`) each worker takes one, and the
# processes the tests start inherit that, so no core runs two busy-waiting thread pools.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(2)


def _data_root() -> Path:
    """./data, downloaded by the kit's own loader on first use (as `python main.py` does)."""
    from data.cifar10 import DataError, load_cifar10

    root = ROOT / "data"
    try:
        load_cifar10(root)
    except DataError as exc:
        pytest.skip(str(exc))
    return root


@pytest.fixture(scope="session")
def data_root() -> Path:
    return _data_root()


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Path:
    """Artifacts folder shared by the whole session, so each test bank is trained once: under pytest-xdist
    one folder for all workers (the kit's banks and runs are safe across processes: per-model locks, atomic
    writes), so two workers split a bank's models instead of each training all of them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent / "artifacts"
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def tiny_splits(data_root):
    from data.presets import get_preset
    from data.splits import make_splits

    return make_splits(get_preset("tiny"), data_root)


@pytest.fixture(scope="session")
def tiny_bank(tiny_splits, home, data_root):
    from data.presets import get_preset
    from eval.harness.bank import Bank

    bank = Bank(get_preset("tiny"), tiny_splits, home=home, data_root=data_root)
    bank.ensure(get_preset("tiny").n_retrained)
    return bank


@pytest.fixture(scope="session")
def kaggle_tiny(home, data_root):
    """The test-phase tiny preset: its splits (0-255 pixels) and its bank of ResNet-18s, built once."""
    from data.presets import get_preset
    from data.splits import make_splits
    from eval.harness.bank import Bank

    preset = get_preset("kaggle-tiny")
    splits = make_splits(preset, data_root)
    bank = Bank(preset, splits, home=home, data_root=data_root)
    bank.ensure(preset.n_retrained)
    return preset, splits, bank


@pytest.fixture
def run(home, data_root, tmp_path):
    """`run(*args)`: main.py on the tiny preset with the session's artifacts and a fresh results folder
    (`run.results`), 5 bootstrap resamples; returns the exit code."""
    import main as cli

    def _run(*args):
        return cli.main(
            [
                "--preset",
                "tiny",
                "--quiet",
                "--home",
                str(home),
                "--data-root",
                str(data_root),
                "--results-dir",
                str(tmp_path / "results"),
                "--bootstrap",
                "5",
                *args,
            ]
        )

    _run.results = tmp_path / "results" / "tiny"
    return _run


@pytest.fixture
def refused(monkeypatch, capsys):
    """`refused(argv)`: main.py must exit 2 on `argv` without a traceback and before any bank work
    (Bank.ensure fails the test); returns what it wrote to stderr."""
    import eval.harness.bank as bank_module
    import main as cli

    monkeypatch.setattr(bank_module.Bank, "ensure", lambda *a, **k: pytest.fail("work started"))

    def _refused(argv):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2, err
        assert "Traceback" not in err, err
        return err

    return _refused


@contextmanager
def one_torch_thread():
    """One torch thread inside, the count restored after: tiny models gain nothing from a second thread, a busy
    2-core machine makes its barriers cost 10-50x, and float reductions depend on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """The test runs with one torch thread (`one_torch_thread`)."""
    with one_torch_thread():
        yield
