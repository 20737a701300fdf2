"""Files written atomically and guarded by locks, so a crash or a second process never spoils a cache.

- Every write goes to a temporary file in the target folder (`.<name>.<random>.tmp`), then
  `os.replace`: readers see the old file or the new one, never half of one.
- `file_lock(path)` is an exclusive inter-process lock (the `filelock` package, which torch
  installs); the code that builds a cached file holds the lock of that file, so a second process
  waits, then finds the file and reuses it instead of building it again.
- `remove_orphans(target)` deletes temporary files a killed writer left beside `target`; call it
  while holding the target's lock (only the lock holder writes it, so they are all orphans).
"""

import errno
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock, Timeout


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` says the disk (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` atomically (a temporary file in the same folder, then os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> Path:
    """Write `text` (UTF-8), atomically; returns the path."""
    write_bytes(path, text.encode())
    return Path(path)


def write_json(path, obj) -> None:
    """Write `obj` as indented JSON, atomically."""
    write_bytes(path, (json.dumps(obj, indent=2, default=_jsonable) + "\n").encode())


def write_npz(path, **arrays) -> None:
    """np.savez_compressed, atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes(path, buf.getvalue())


def torch_save(path, obj) -> None:
    """torch.save, atomically."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def read_json(path, default=None):
    """Read JSON; `default` if the file is missing or unreadable (e.g. from an older, interrupted run)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def read_npz(path) -> dict | None:
    """All arrays of an .npz file, or None if it is missing or damaged."""
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except Exception:  # noqa: BLE001 (zip, pickle and OS errors alike mean "not usable")
        return None


@contextmanager
def file_lock(path, on_wait=None):
    """Hold an exclusive lock on `path` (created if needed); `on_wait()` is called once if another has it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def remove_orphans(target) -> int:
    """Delete the temporary files of `target` left by an interrupted writer; returns how many."""
    target = Path(target)
    n = 0
    for tmp in target.parent.glob(f".{target.name}.*.tmp"):
        try:
            tmp.unlink()
            n += 1
        except OSError:
            pass
    return n


def check_writable(folder, what: str) -> None:
    """Raise OSError with a clear message unless `folder` is (or can be made) a writable directory."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OSError(f"{what} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise OSError(f"{what} {folder} is not writable ({exc.strerror or exc})") from None


def _jsonable(o):
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
