"""The CIFAR-10 loader: local copies, checksums, missing and corrupt data."""

import shutil

import numpy as np
import pytest

from data import cifar10
from data.cifar10 import DataError, load_cifar10


def test_loads_offline_copy_with_warning(data_root):
    with pytest.warns(UserWarning, match="checksums differ"):
        d = load_cifar10(data_root, download=False)
    assert d["train_x"].shape == (50000, 3, 32, 32) and d["train_x"].dtype == np.uint8
    assert d["test_x"].shape == (10000, 3, 32, 32)
    assert d["train_y"].min() == 0 and d["train_y"].max() == 9
    assert np.bincount(d["train_y"]).tolist() == [5000] * 10  # official labels, balanced
    assert not d["official"]


def test_missing_data_explains_how_to_get_it(tmp_path, monkeypatch):
    def offline(root):
        raise DataError(cifar10._how_to_provide(root) + "\n(download error: no network)")

    monkeypatch.setattr(cifar10, "_download", offline)
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        load_cifar10(tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_cifar10(tmp_path, download=False)


def test_download_failure_is_caught(tmp_path, monkeypatch):
    import torchvision.datasets

    def boom(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", boom)
    monkeypatch.setattr(cifar10, "CIFAR10", boom)
    with pytest.raises(DataError, match="network unreachable"):
        load_cifar10(tmp_path)


def test_corrupt_batch(tmp_path, data_root):
    dst = tmp_path / cifar10.FOLDER
    shutil.copytree(data_root / cifar10.FOLDER, dst)
    (dst / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="corrupt CIFAR-10 batch .*data_batch_3"):
        load_cifar10(tmp_path, download=False)


def test_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("UNLEARN_DATA", str(tmp_path))
    assert cifar10.resolve_root(None) == tmp_path
    assert str(cifar10.resolve_root("x")) == "x"
