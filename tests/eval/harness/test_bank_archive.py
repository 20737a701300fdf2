"""A bank shared as one archive (`--export-bank` / `--import-bank`): re-imported it scores bit-identically,
and a tampered archive, or one another version of the code built, is refused with nothing installed."""

import io
import json
import tarfile

import numpy as np
import pytest

from eval.harness import api
from eval.harness.bank_archive import MANIFEST


def options(home, data_root, tmp_path, **more):
    return api.Options(
        preset="tiny", home=str(home), data_root=str(data_root), results_dir=str(tmp_path / "results"), **more
    )


def rewrite(src, dst, change):
    """Copy archive `src` to `dst`, passing each member's (name, bytes) through `change`."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin:
            data = change(m.name, tin.extractfile(m).read())
            info = tarfile.TarInfo(m.name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def archive(tiny_bank, home, data_root, tmp_path_factory):
    path = tmp_path_factory.mktemp("archive") / "tiny-bank.tar"
    manifest = api.export_bank(path, options=options(home, data_root, path.parent))
    assert manifest["key"] == tiny_bank.key and len(manifest["files"]) == 2 * 5 + 1
    return path


def test_reimported_bank_scores_bit_identically(archive, home, data_root, tmp_path):
    fresh = tmp_path / "fresh"
    done = api.import_bank(archive, options=options(fresh, data_root, tmp_path))
    assert len(done["installed"]) == 11
    scores = []
    for where in (home, fresh):
        rec = api.evaluate_method("ft", options=options(where, data_root, tmp_path / where.name, runs=3))
        f = rec.fields  # `score`: before the efficiency verdict, which times this machine's load
        scores.append(((f["score"], f["F"], f["ra_ratio"], f["ta_ratio"]), rec.arrays["retrained_stat"]))
    assert scores[0][0] == scores[1][0] and np.array_equal(scores[0][1], scores[1][1])
    again = api.import_bank(archive, options=options(fresh, data_root, tmp_path))  # idempotent
    assert again["installed"] == [] and len(again["kept"]) == 10


def _installed(home) -> list:
    return [p for p in (home / "banks").rglob("*") if p.is_file()] if (home / "banks").exists() else []


def test_tampered_archive_is_refused_with_nothing_installed(archive, data_root, tmp_path):
    bad = tmp_path / "tampered.tar"
    rewrite(archive, bad, lambda name, b: b[:-1] + bytes([b[-1] ^ 1]) if name == "outputs/retrained_001.npz" else b)
    target = tmp_path / "target"
    with pytest.raises(api.UsageError, match="checksum"):
        api.import_bank(bad, options=options(target, data_root, tmp_path))
    assert _installed(target) == [] and not any((target / "banks").glob(".*")) if (target / "banks").exists() else True


def test_archive_of_other_code_is_refused(archive, data_root, tmp_path):
    def other_key(name, b):
        if name != MANIFEST:
            return b
        m = json.loads(b)
        m["key"], m["config"]["code"] = "0123456789ab", "feedfacecafe"
        return json.dumps(m).encode()

    bad = tmp_path / "other.tar"
    rewrite(archive, bad, other_key)
    target = tmp_path / "target"
    with pytest.raises(api.UsageError, match="differ in code"):
        api.import_bank(bad, options=options(target, data_root, tmp_path))
    assert _installed(target) == []


def test_incomplete_archive_and_bank_are_refused(archive, data_root, tmp_path):
    short = tmp_path / "short.tar"
    with tarfile.open(archive) as tin, tarfile.open(short, "w") as tout:
        for m in tin:
            if m.name != "models/retrained_003.pt":
                tout.addfile(m, tin.extractfile(m))
    with pytest.raises(api.UsageError, match="incomplete"):
        api.import_bank(short, options=options(tmp_path / "t", data_root, tmp_path))
    assert _installed(tmp_path / "t") == []
    with pytest.raises(api.UsageError, match="build it first"):
        api.export_bank(tmp_path / "x.tar", options=options(tmp_path / "empty", data_root, tmp_path))
