"""The test phase: the Kaggle-faithful tiny preset, its input tree, the notebook's self-check, and --rehearse."""

import json
import os

import pandas as pd
import pytest
import torch
from torchvision.models import resnet18

import main as cli
import notebook_utils as nu
from eval.harness import rehearsal


def test_kaggle_tiny_bank_follows_the_organizers_recipe(kaggle_tiny):
    preset, splits, bank = kaggle_tiny
    assert not preset.normalize and preset.dict_batches and preset.batch_size == 64
    assert preset.recipe.optimizer == "adam" and preset.recipe.class_weighted and preset.recipe.best_from_epoch == 1
    assert (
        splits.retain_x.max() > 200
        and splits.retain_x.min() >= 0
        and torch.equal(splits.retain_x, splits.retain_x.round())
    )
    assert len(splits.forget_y) == 20, "2% of 1,000 images"
    net = bank.load("original")
    assert isinstance(net, type(resnet18())) and net.fc.out_features == 10
    m = bank.manifest()["models"]
    assert m["original"]["acc_retain"] > 0.5, "the original learns its training set from 0-255 pixels"


def test_input_tree_matches_the_competition_layout(kaggle_tiny):
    preset, splits, bank = kaggle_tiny
    root = rehearsal.write_input_tree(preset, splits, bank)
    assert root.name == "neurips-2023-machine-unlearning"
    tables = {s: pd.read_csv(root / f"{s}.csv") for s in ("retain", "forget", "validation")}
    assert all(list(t.columns) == ["image_id", "age_group", "age", "person_id"] for t in tables.values())
    assert [len(tables[s]) for s in ("retain", "forget", "validation")] == [980, 20, 200]
    from torchvision.io import read_image

    first = tables["forget"].iloc[0]
    a, b = first["image_id"].split("-")
    assert torch.equal(read_image(str(root / "images" / a / f"{b}.png")).float(), splits.forget_x[0])
    state = torch.load(root / "original_model.pth", weights_only=True)
    resnet18(weights=None, num_classes=10).load_state_dict(state)  # what the template does
    assert rehearsal.write_input_tree(preset, splits, bank) == root, "reused"


def test_the_notebook_stops_on_a_diverging_method(kaggle_tiny, tmp_path):
    """A method whose checkpoints are NaN never reaches submission.zip: the notebook names the run."""
    preset, splits, bank = kaggle_tiny
    root = rehearsal.write_input_tree(preset, splits, bank)
    nb = nu.build_notebook("my_method", {"lr": 1e30, "epochs": 1, "max_update": 0.0})  # uncapped: diverges
    with pytest.raises(nu.NotebookFailed, match="run 0: the unlearned model has non-finite weights") as info:
        nu.execute_notebook(nb, root, tmp_path / "tmp", tmp_path / "working", n_checkpoints=2)
    assert info.value.cell == "submission"
    assert not (tmp_path / "working" / "submission.zip").exists()


def test_the_notebook_stops_on_a_method_whose_runs_are_identical(kaggle_tiny, tmp_path):
    """A fixed seed gives the same model every run (the scorer gives that 0): the notebook names both runs."""
    preset, splits, bank = kaggle_tiny
    root = rehearsal.write_input_tree(preset, splits, bank)
    nb = nu.build_notebook("my_method", {"seed": 7, "epochs": 1})
    with pytest.raises(nu.NotebookFailed, match="run 1: the unlearned model is identical to run 0's") as info:
        nu.execute_notebook(nb, root, tmp_path / "tmp", tmp_path / "working", n_checkpoints=2)
    assert info.value.cell == "submission"
    assert not (tmp_path / "working" / "submission.zip").exists()


def _rehearse(home, data_root, tmp_path, *args):
    return cli.main(
        [
            "-p",
            "test",
            "--rehearse",
            "--preset",
            "kaggle-tiny",
            "--checkpoints",
            "3",
            "--quiet",
            "--bootstrap",
            "10",
            "--home",
            str(home),
            "--data-root",
            str(data_root),
            "--results-dir",
            str(tmp_path / "results"),
            "--submissions-dir",
            str(tmp_path / "subs"),
            *args,
        ]
    )


def test_intervals_agree_at_the_scores_resolution():
    assert rehearsal.intervals_agree((0.1, 0.2), (0.15, 0.3))
    assert not rehearsal.intervals_agree((0.0, 0.0), (0.013, 0.06))
    assert rehearsal.intervals_agree((0.0, 0.0), (0.013, 0.06), step=0.026), "one example's step apart"
    assert not rehearsal.intervals_agree((0.0, 0.0), (0.05, 0.06), step=0.026)
    assert rehearsal.score_step({"ra_ratio": 1.0, "ta_ratio": 0.5}, 20) == 0.025


def test_rehearsal_end_to_end(kaggle_tiny, home, data_root, tmp_path, capsys, monkeypatch):
    """The whole path on the tiny preset, my_method at its shipped defaults, with a relative --home (as
    `--home artifacts` gives; the notebook runs in another folder). Whether 3 checkpoints agree with 3
    runs is left to chance (the notebook's runs are freshly random, as on Kaggle); the exit code must say
    which it was."""
    monkeypatch.chdir(tmp_path)
    rc = _rehearse(os.path.relpath(home, tmp_path), data_root, tmp_path, "-m", "my_method")
    out = capsys.readouterr().out
    assert "submission.zip (notebook)" in out and "-m (the kit's runs)" in out
    r = json.loads((tmp_path / "results" / "kaggle-tiny" / "my_method.rehearsal.json").read_text())
    assert rc == (0 if r["agree"] else 1)
    assert ("the notebook and the kit agree" in out) == r["agree"]
    assert r["checkpoints"] == 3 and not r["problems"]
    assert r["notebook"]["n_runs"] == 3 and 0 <= r["notebook"]["F"] <= 1 and r["seconds_per_checkpoint"] > 0
    assert r["notebook"]["accuracy"]["retain_unlearned"] > 0.5 * r["notebook"]["accuracy"]["retain_original"]
    assert list((tmp_path / "subs" / "my_method" / "rehearsal-kaggle-tiny").glob("executed-*.ipynb"))


def test_rehearsal_reports_identical_checkpoints(kaggle_tiny, home, data_root, tmp_path, capsys):
    """The notebook itself stops at the second identical checkpoint, and the rehearsal says so."""
    assert _rehearse(home, data_root, tmp_path, "-m", "none") == 1
    assert "run 1: the unlearned model is identical to run 0's" in capsys.readouterr().err


def test_rehearsal_needs_a_test_phase_preset(home, data_root, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(
            [
                "-m",
                "my_method",
                "-p",
                "test",
                "--rehearse",
                "--preset",
                "tiny",
                "--home",
                str(home),
                "--data-root",
                str(data_root),
            ]
        )
    assert "--rehearse needs a test-phase preset" in capsys.readouterr().err
