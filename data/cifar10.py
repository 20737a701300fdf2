"""CIFAR-10 from the official python-batch layout `<root>/cifar-10-batches-py`.

The root is `--data-root`, else `$UNLEARN_DATA`, else `./data`. A missing copy is downloaded with
torchvision (real users have internet). A copy whose checksums differ from the official archive
(an offline copy, e.g. JPEG-recompressed) loads with a one-line warning:
torchvision's own loader rejects such a copy, so the pickles are read directly.
"""

import hashlib
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
from torchvision.datasets import CIFAR10

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
# md5 of the official archive's files, as torchvision checks them
OFFICIAL_MD5 = dict(CIFAR10.train_list + CIFAR10.test_list)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class DataError(RuntimeError):
    """The dataset is missing or unreadable; the message says how to fix it."""


def resolve_root(data_root: str | os.PathLike | None = None) -> Path:
    """`data_root`, else $UNLEARN_DATA, else ./data."""
    return Path(data_root or os.environ.get("UNLEARN_DATA") or "data")


def _how_to_provide(root: Path) -> str:
    return (
        f"CIFAR-10 not found under {root / FOLDER} and the download failed.\n"
        f"Provide a local copy in the official python layout, e.g.:\n"
        f"  * download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz on a machine with internet\n"
        f"    and extract it in {root} (the archive holds {FOLDER}/),\n"
        f"  * or point --data-root / $UNLEARN_DATA at a folder that holds {FOLDER}/."
    )


def _download(root: Path) -> None:
    try:
        CIFAR10(str(root), train=True, download=True)
        CIFAR10(str(root), train=False, download=True)
    except Exception as exc:  # no network, proxy, disk full...: tell the user what to do instead
        raise DataError(f"{_how_to_provide(root)}\n(download error: {exc})") from None


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    except Exception as exc:
        raise DataError(f"corrupt CIFAR-10 batch {path}: {exc}. Delete {path.parent} and re-create it.") from None
    if len(data) != len(labels) or labels.min() < 0 or labels.max() >= len(CLASSES):
        raise DataError(f"corrupt CIFAR-10 batch {path}: {len(data)} images, {len(labels)} labels")
    return data, labels


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_cifar10(data_root=None, download: bool = True) -> dict[str, np.ndarray]:
    """Load CIFAR-10 as uint8 arrays.

    Returns
    -------
    dict with `train_x` (50000, 3, 32, 32) uint8, `train_y` (50000,) int64, `test_x` (10000, 3, 32, 32),
    `test_y` (10000,), and `official` (bool: all checksums match the official archive).
    """
    root = resolve_root(data_root)
    folder = root / FOLDER
    files = TRAIN_FILES + TEST_FILES
    if not all((folder / f).exists() for f in files):
        if not download:
            raise DataError(_how_to_provide(root))
        _download(root)
    mismatched = [f for f in files if _md5(folder / f) != OFFICIAL_MD5[f]]
    if mismatched:
        warnings.warn(
            f"{folder}: checksums differ from the official CIFAR-10 archive "
            f"({len(mismatched)}/{len(files)} files); loading it anyway as a local copy.",
            stacklevel=2,
        )
    train = [_read_batch(folder / f) for f in TRAIN_FILES]
    test_x, test_y = _read_batch(folder / TEST_FILES[0])
    train_x = np.concatenate([d for d, _ in train])
    train_y = np.concatenate([l for _, l in train])  # noqa: E741
    if len(train_x) != 50000 or len(test_x) != 10000:
        raise DataError(f"{folder}: expected 50000 train and 10000 test images, found {len(train_x)} and {len(test_x)}")
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y, "official": not mismatched}
