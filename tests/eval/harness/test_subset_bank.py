"""The subset bank (`--bank subsets`): one bank of models each trained without a random part of the data, the
reference for every random forget set. What must hold: no reference model ever saw the example it stands
for, every model has its own streams and its own part, and on `tiny` it scores like the exact bank."""

import numpy as np
import pytest

from data.presets import get_preset
from data.splits import make_splits
from eval.harness import api
from eval.harness.bank_models import model_index
from eval.harness.seeds import bank_streams, run_streams
from eval.harness.subset_bank import SubsetBank, check_excluded, model_name
from eval.harness.subset_models import excluded, model_streams, round_folds

SIZE = 40  # tiny: 10 parts a round, so 4 rounds = 4 reference models per example, as the exact bank has


@pytest.fixture(scope="module")
def subset_bank(home, data_root):
    preset = get_preset("tiny").with_bank("subsets", SIZE)
    bank = SubsetBank(preset, make_splits(preset, data_root), SIZE, home=home)
    bank.ensure()
    return bank


def test_every_reference_model_left_its_example_out(subset_bank, data_root):
    preset = get_preset("tiny").with_forget(seed=2).with_bank("subsets", SIZE)
    splits = make_splits(preset, data_root)
    view = subset_bank.view(splits)
    refs = view.retrained_outputs(preset.n_retrained)
    outs = [subset_bank.outputs(model_name(m)) for m in range(SIZE)]
    for r in range(preset.n_retrained):
        for k, i in enumerate(splits.forget_idx):
            left_out = [m for m in range(r * 10, (r + 1) * 10) if outs[m]["excluded"][i]]
            assert len(left_out) == 1  # one model of each round never saw example i
            assert np.array_equal(refs["forget_logits"][r, k], outs[left_out[0]]["train_logits"][i])
    check_excluded(subset_bank)  # the stored masks are the rounds' parts


def test_each_model_has_its_own_streams_and_part(subset_bank):
    n, folds = len(subset_bank.y), subset_bank.folds
    streams = [tuple(model_streams(m).values()) for m in [None, *range(SIZE)]]
    others = [tuple(bank_streams(k).values()) for k in range(50)] + [
        tuple(run_streams(0, i).values()) for i in range(50)
    ]
    seeds = [s for group in streams for s in group]
    assert len(set(seeds)) == len(seeds) and not set(seeds) & {s for group in others for s in group}
    masks = np.stack([excluded(m, n, folds) for m in range(SIZE)])
    assert len({m.tobytes() for m in masks}) == SIZE  # every model its own part
    for r in range(SIZE // folds):  # a round's parts cover the subset once, in sizes differing by at most 1
        round_masks = masks[r * folds : (r + 1) * folds]
        assert np.array_equal(round_masks.sum(0), np.ones(n)) and np.ptp(round_masks.sum(1)) <= 1
    assert not np.array_equal(round_folds(0, n, folds), round_folds(1, n, folds))
    assert model_index("original") == 0  # the subset bank's original has its own streams, not the bank's
    assert model_streams(None) != bank_streams(0)


def test_view_refuses_what_it_cannot_serve(subset_bank, data_root):
    with pytest.raises(ValueError, match="random forget sets only"):
        subset_bank.view(make_splits(get_preset("tiny").with_forget(klass=3), data_root))
    with pytest.raises(ValueError, match="at most 4 reference models"):
        subset_bank.view(make_splits(get_preset("tiny"), data_root)).retrained_outputs(5)
    with pytest.raises(ValueError, match="multiple of 10"):
        get_preset("tiny").with_bank("subsets", 45)
    with pytest.raises(ValueError, match="random forget sets only"):
        get_preset("tiny").with_forget(klass=3).with_bank("subsets", SIZE)


@pytest.mark.parametrize("method", ["retrain", "none"])
def test_subset_and_exact_banks_agree_on_tiny(method, home, data_root, tmp_path):
    scores = {}
    for bank in ("exact", "subsets"):
        options = api.Options(
            preset="tiny",
            runs=4,
            bank=bank,
            bank_size=SIZE if bank == "subsets" else None,
            home=str(home),
            data_root=str(data_root),
            results_dir=str(tmp_path),
        )
        fields = api.evaluate_method(method, options=options).fields
        scores[bank] = fields["final_score"], fields["final_ci95"]
    (exact, (elo, ehi)), (subs, (slo, shi)) = scores["exact"], scores["subsets"]
    assert elo <= subs <= ehi and slo <= exact <= shi, scores
    if method == "retrain":
        assert exact > 0.05 and subs > 0.05  # a real score on both, not two zeros
    else:
        assert exact == subs == 0.0


def test_cli_refuses_a_subset_bank_where_it_is_not_valid(capsys):
    import main

    for argv in (
        ["-m", "ft", "--preset", "tiny", "--bank", "subsets", "--forget-class", "2"],
        ["-m", "ft", "--preset", "tiny", "--bank", "subsets", "--requests", "2"],
        ["-m", "ft", "--preset", "tiny", "--bank", "exact", "--bank-size", "40"],
        ["-m", "ft", "--preset", "tiny", "--bank", "subsets", "--bank-size", "33"],
    ):
        with pytest.raises(SystemExit) as exc:
            main.main(argv)
        assert exc.value.code == 2, argv
    err = capsys.readouterr().err
    assert "random forget sets only" in err and "--bank exact" in err and "multiple of 10" in err


def test_a_changed_part_is_caught(subset_bank, monkeypatch):
    import eval.harness.subset_bank as sb

    monkeypatch.setattr(sb, "excluded", lambda m, n, folds: replace_first(excluded(m, n, folds)))
    with pytest.raises(Exception, match="disagrees"):
        check_excluded(subset_bank)


def replace_first(mask):
    out = mask.copy()
    out[0] = not out[0]
    return out


def test_a_sweep_passes_the_subset_bank_on():
    import importlib.util

    from tests.conftest import ROOT

    spec = importlib.util.spec_from_file_location("sweep", ROOT / "scripts" / "sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)

    class Args:
        preset, runs = "tiny", 4

    opts = sweep.sweep_options(Args, ["--bank", "subsets", "--bank-size", str(SIZE)])
    assert (opts.bank, opts.bank_size) == ("subsets", SIZE)
    assert api.options.resolve(opts)[1].tag == "tiny-subsets40"


def test_an_interrupted_build_resumes_and_a_subset_bank_travels(data_root, tmp_path):
    preset = get_preset("tiny").with_bank("subsets", 20)
    bank = SubsetBank(preset, make_splits(preset, data_root), 20, home=tmp_path / "a")
    bank.ensure()
    before = bank.outputs(model_name(3))["train_logits"]
    bank.paths(model_name(3))[1].unlink()  # a build killed before this model's outputs were written
    assert bank.missing() == [model_name(3)]
    bank.ensure()
    assert bank.missing() == [] and np.array_equal(bank.outputs(model_name(3))["train_logits"], before)

    opts = {"preset": "tiny", "bank": "subsets", "bank_size": 20, "data_root": str(data_root)}
    archive = tmp_path / "subsets.tar"
    api.export_bank(archive, options=api.Options(home=str(tmp_path / "a"), **opts))
    done = api.import_bank(archive, options=api.Options(home=str(tmp_path / "b"), **opts))
    assert len(done["installed"]) == 2 * 21
    copy = SubsetBank(preset, bank.splits, 20, home=tmp_path / "b")
    assert copy.missing() == [] and np.array_equal(copy.outputs(model_name(3))["train_logits"], before)
