"""The bank: real retrained models, cached by configuration, resumable, with a manifest."""
import numpy as np
import torch

from data.bank import Bank
from data.presets import get_preset


def test_bank_contents(tiny_bank):
    p = get_preset("tiny")
    m = tiny_bank.manifest()["models"]
    assert set(m) == {"original", *tiny_bank.retrained_names(p.n_retrained)}
    assert all(v["train_time_s"] > 0 and 0 <= v["acc_test"] <= 1 for v in m.values())
    seeds = [m[n]["seed"] for n in tiny_bank.retrained_names(p.n_retrained)]
    assert len(set(seeds)) == len(seeds), "each retrained model has its own seed"
    outs = tiny_bank.retrained_outputs(p.n_retrained)
    assert outs["forget_logits"].shape == (p.n_retrained, 50, 10)
    # genuinely different models, not one model plus noise
    assert not np.allclose(outs["forget_logits"][0], outs["forget_logits"][1])
    ckpt = torch.load(tiny_bank.dir / "models" / "original.pt", weights_only=True)
    assert ckpt["arch"] == "tiny_cnn" and ckpt["recipe"]["epochs"] == p.recipe.epochs
    assert tiny_bank.retrain_time(p.n_retrained) > 0


def test_bank_resumes_and_keys_by_config(tiny_bank, tiny_splits, home, data_root):
    p = get_preset("tiny")
    victim = tiny_bank.retrained_names(p.n_retrained)[1]
    (tiny_bank.dir / "models" / f"{victim}.pt").unlink()
    (tiny_bank.dir / "outputs" / f"{victim}.npz").unlink()
    before = {f.name: f.stat().st_mtime_ns for f in (tiny_bank.dir / "models").iterdir()}
    again = Bank(p, tiny_splits, home=home, data_root=data_root)
    assert again.dir == tiny_bank.dir
    again.ensure(p.n_retrained)
    after = {f.name: f.stat().st_mtime_ns for f in (tiny_bank.dir / "models").iterdir()}
    assert set(after) - set(before) == {f"{victim}.pt"}
    assert all(after[k] == v for k, v in before.items()), "finished models must not be retrained"
    from dataclasses import replace
    other = Bank(replace(p, recipe=replace(p.recipe, epochs=p.recipe.epochs + 1)), tiny_splits, home=home)
    assert other.key != tiny_bank.key


def test_bad_checkpoint_is_reported(tiny_bank, tmp_path):
    import pytest
    from data.cifar10 import DataError
    bad = Bank(tiny_bank.preset, tiny_bank.splits, home=tmp_path)
    path = bad._ckpt("original")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read checkpoint"):
        bad.load("original")
