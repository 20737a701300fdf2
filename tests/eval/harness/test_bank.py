"""The bank: real retrained models, cached by configuration and code, resumable, rebuilt when damaged."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from data.cifar10 import DataError
from data.presets import get_preset
from eval.harness.bank import Bank


def test_bank_contents(tiny_bank):
    p = get_preset("tiny")
    m = tiny_bank.manifest()["models"]
    assert set(m) == {"original", *tiny_bank.retrained_names(p.n_retrained)}
    assert all(v["train_time_s"] > 0 and 0 <= v["acc_test"] <= 1 for v in m.values())
    seeds = [tuple(m[n]["seeds"].values()) for n in ["original", *tiny_bank.retrained_names(p.n_retrained)]]
    flat = [s for pair in seeds for s in pair]
    assert len(set(flat)) == len(flat), "every model, and each of its consumers, has its own stream"
    outs = tiny_bank.retrained_outputs(p.n_retrained)
    assert outs["forget_logits"].shape == (p.n_retrained, 50, 10)
    # genuinely different models, not one model plus noise
    assert not np.allclose(outs["forget_logits"][0], outs["forget_logits"][1])
    ckpt = torch.load(tiny_bank.dir / "models" / "original.pt", weights_only=True)
    assert ckpt["arch"] == "tiny_cnn" and ckpt["recipe"]["epochs"] == p.recipe.epochs
    assert tiny_bank.manifest_retrain_time(p.n_retrained) > 0


def _stamps(bank):
    return {f.name: f.stat().st_mtime_ns for f in (bank.dir / "models").glob("*.pt")}


def test_bank_resumes_and_keys_by_config(tiny_bank, tiny_splits, home, data_root):
    p = get_preset("tiny")
    victim = tiny_bank.retrained_names(p.n_retrained)[1]
    (tiny_bank.dir / "models" / f"{victim}.pt").unlink()
    (tiny_bank.dir / "outputs" / f"{victim}.npz").unlink()
    before = _stamps(tiny_bank)
    again = Bank(p, tiny_splits, home=home, data_root=data_root)
    assert again.dir == tiny_bank.dir
    again.ensure(p.n_retrained)
    after = _stamps(tiny_bank)
    assert set(after) - set(before) == {f"{victim}.pt"}
    assert all(after[k] == v for k, v in before.items()), "finished models must not be retrained"
    other = Bank(replace(p, recipe=replace(p.recipe, epochs=p.recipe.epochs + 1)), tiny_splits, home=home)
    assert other.key != tiny_bank.key


def test_deleted_checkpoint_is_retrained(tiny_bank):
    """Outputs alone do not make a model done: `load` needs the checkpoint (the original's at every run)."""
    p = get_preset("tiny")
    victim = tiny_bank.retrained_names(p.n_retrained)[0]
    for name in ("original", victim):
        (tiny_bank.dir / "models" / f"{name}.pt").unlink()
    tiny_bank.ensure(p.n_retrained)
    assert (tiny_bank.dir / "models" / "original.pt").exists() and (tiny_bank.dir / "models" / f"{victim}.pt").exists()
    tiny_bank.load("original")


def test_corrupt_outputs_and_checkpoint_are_rebuilt(tiny_bank):
    p = get_preset("tiny")
    name = tiny_bank.retrained_names(p.n_retrained)[2]
    out_path = tiny_bank.dir / "outputs" / f"{name}.npz"
    good = np.load(out_path)["forget_logits"]
    out_path.write_bytes(b"not an npz")
    with pytest.raises(DataError, match="cannot read cached outputs"):
        tiny_bank.outputs(name)
    stamp = (tiny_bank.dir / "models" / f"{name}.pt").stat().st_mtime_ns
    tiny_bank.ensure(p.n_retrained)
    assert np.array_equal(tiny_bank.outputs(name)["forget_logits"], good), "recomputed from the checkpoint"
    assert (tiny_bank.dir / "models" / f"{name}.pt").stat().st_mtime_ns == stamp, "not retrained"
    # a corrupt original checkpoint is moved aside and retrained
    ckpt = tiny_bank.dir / "models" / "original.pt"
    ckpt.write_bytes(b"garbage")
    tiny_bank.ensure(p.n_retrained)
    assert (tiny_bank.dir / "models" / "original.corrupt").read_bytes() == b"garbage"
    tiny_bank.load("original")


def test_manifest_rebuilt_from_checkpoints(tiny_bank):
    p = get_preset("tiny")
    expected = tiny_bank.manifest_retrain_time(p.n_retrained)
    tiny_bank.manifest_path.write_text("{ broken")
    assert tiny_bank.manifest_retrain_time(p.n_retrained) == pytest.approx(expected)
    tiny_bank.manifest_path.unlink()
    assert tiny_bank.manifest_retrain_time(p.n_retrained) == pytest.approx(expected)
    assert tiny_bank.manifest_path.exists()


def test_orphaned_temporary_files_are_removed(tiny_bank):
    p = get_preset("tiny")
    name = tiny_bank.retrained_names(p.n_retrained)[3]
    orphan = tiny_bank.dir / "outputs" / f".{name}.npz.abc123.tmp"
    orphan.write_bytes(b"half a file")
    (tiny_bank.dir / "outputs" / f"{name}.npz").unlink()
    tiny_bank.ensure(p.n_retrained)
    assert not orphan.exists()


def test_bad_checkpoint_is_reported(tiny_bank, tmp_path):
    bad = Bank(tiny_bank.preset, tiny_bank.splits, home=tmp_path)
    path = bad._ckpt("original")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read checkpoint"):
        bad.load("original")


def test_corrupt_retrained_checkpoint_beside_intact_outputs_is_retrained(tiny_bank):
    """Scoring reads only a retrained model's outputs, so a truncated checkpoint would go unnoticed: it is moved
    aside and retrained, and a rebuilt manifest names it instead of dropping it silently."""
    p = get_preset("tiny")
    name = tiny_bank.retrained_names(p.n_retrained)[1]
    ckpt = tiny_bank.dir / "models" / f"{name}.pt"
    whole = ckpt.read_bytes()
    ckpt.write_bytes(whole[: len(whole) // 2])
    tiny_bank.manifest_path.unlink()
    with pytest.warns(UserWarning, match=f"{name}.pt is unreadable"):
        assert name not in tiny_bank.manifest()["models"]
    assert name in tiny_bank.missing(p.n_retrained)
    tiny_bank.ensure(p.n_retrained)
    assert (tiny_bank.dir / "models" / f"{name}.corrupt").read_bytes() == whole[: len(whole) // 2]
    torch.load(ckpt, weights_only=True)
    assert tiny_bank.missing(p.n_retrained) == []
