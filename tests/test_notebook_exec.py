"""Generated notebooks run end to end (nbclient) against a mock /kaggle/input tree, as Kaggle would run them.

The mock tree: 30 small RGB PNGs under images/<a>/<b>.png, retain/forget/validation CSVs with
image_id, age_group, age, person_id, and a ResNet-18 `original_model.pth`. The parameters cell is
edited to 2 checkpoints, the mock paths and no GPU requirement.
"""
import io
import os
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torchvision.models import resnet18

import methods
import notebook_utils as nu

nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
N = 2
AVAILABLE = methods.available_methods()
EXECUTED = [k for k in ("my_method", "sibl", "pdu", "retrain") if k in AVAILABLE]
#: small settings so each notebook runs in seconds on ResNet-18 on a CPU (the test's only concern is
#: that the code runs; methods' own test_overrides() are applied first)
FAST = {"my_method": {"epochs": 1}, "retrain": {"epochs": 1}, "pdu": {"epochs": 1}, "sibl": {"T": 1, "K": 1}}


def _overrides(key):
    cls = methods.get_method(key)
    return {**(cls.test_overrides() if hasattr(cls, "test_overrides") else {}), **FAST.get(key, {})}


@pytest.fixture(scope="module")
def kaggle_input(tmp_path_factory):
    """A mock /kaggle/input/neurips-2023-machine-unlearning/ tree."""
    root = tmp_path_factory.mktemp("kaggle-input") / "neurips-2023-machine-unlearning"
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        a, b = f"{i // 10:04d}", f"{i:05d}"
        (root / "images" / a).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "images" / a / f"{b}.png")
        rows.append({"image_id": f"{a}-{b}", "age_group": i % 10, "age": int(rng.integers(18, 80)),
                     "person_id": i // 3})
    table = pd.DataFrame(rows)
    table.iloc[:18].to_csv(root / "retain.csv", index=False)
    table.iloc[18:24].to_csv(root / "forget.csv", index=False)
    table.iloc[24:].to_csv(root / "validation.csv", index=False)
    torch.manual_seed(0)
    torch.save(resnet18(weights=None, num_classes=10).state_dict(), root / "original_model.pth")
    return root


def _execute(nb, data_dir, tmp_path):
    """Run `nb` with the mock data; returns the working directory (where submission.zip lands)."""
    work, out = tmp_path / "working", tmp_path / "tmp"
    work.mkdir()
    nu.set_parameters(nb, N_CHECKPOINTS=N, DATA_DIR=str(data_dir), OUTPUT_DIR=str(out), REQUIRE_GPU=False)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the project must not be importable
    env["OMP_NUM_THREADS"] = "1"  # the test machine is shared: oversubscribed threads are far slower
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(work)}})
    client.execute(env=env)
    return work


def _state_dicts(zip_path):
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        return names, [torch.load(io.BytesIO(archive.read(n)), map_location="cpu") for n in names]


def _check_submission(work):
    names, states = _state_dicts(work / "submission.zip")
    assert len(names) == N and sorted(Path(n).name for n in names) == [f"unlearned_checkpoint_{i}.pth"
                                                                       for i in range(N)]
    for state in states:
        net = resnet18(weights=None, num_classes=10)
        net.load_state_dict(state)  # loadable into the competition's architecture
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    return states


@pytest.mark.parametrize("key", EXECUTED)
def test_generated_notebook_runs_end_to_end(key, kaggle_input, tmp_path):
    original = torch.load(kaggle_input / "original_model.pth")
    if key == "my_method":  # the folder `python main.py -m my_method -p test` writes, as a user would run it
        import main as cli
        subs = tmp_path / "submissions"
        assert cli.main(["-m", key, "-p", "test", "--submissions-dir", str(subs), "--kaggle-user", "alice",
                         "--set", *(f"{k}={v}" for k, v in _overrides(key).items())]) == 0
        nb = nbformat.read(str(subs / key / f"{key}.ipynb"), as_version=4)
    else:
        nb = nu.build_notebook(key, _overrides(key))
    states = _check_submission(_execute(nb, kaggle_input, tmp_path))
    if key != "none":
        assert any(not torch.equal(original[k], v) for k, v in states[0].items()), "the method changed nothing"


def test_template_runs_end_to_end(kaggle_input, tmp_path):
    nb = nu.load_template()
    _check_submission(_execute(nb, kaggle_input, tmp_path))


def test_mock_run_writes_an_empty_submission(kaggle_input, tmp_path):
    mock = tmp_path / "mock-input"
    mock.mkdir()
    (mock / "empty.txt").write_text("")
    work = _execute(nu.build_notebook("my_method"), mock, tmp_path)
    assert (work / "submission.zip").stat().st_size == 0
    assert not (tmp_path / "tmp").exists()


def test_dataset_helpers_give_unnormalized_dict_batches(kaggle_input):
    """The hidden-data cells, run in-process: dict batches of float 0-255 images, shuffled, batch 64."""
    nb = nu.build_notebook("none", data_dir=str(kaggle_input), require_gpu=False)
    ns = {"__name__": "nbtest_dataset"}
    for cell in nb.cells:
        if cell.id in ("imports", "parameters", "accelerator", "dataset"):
            exec(compile(cell.source, cell.id, "exec"), ns)
    retain, forget, val = ns["get_dataset"](64)
    assert [len(dl.dataset) for dl in (retain, forget, val)] == [18, 6, 6]
    assert all(dl.batch_size == 64 and isinstance(dl.sampler, torch.utils.data.RandomSampler)
               for dl in (retain, forget, val))
    batch = next(iter(retain))
    assert set(batch) >= {"image", "age_group", "image_id", "age", "person_id"}
    x, y = batch["image"], batch["age_group"]
    assert x.dtype == torch.float32 and x.shape == (18, 3, 32, 32) and y.dtype == torch.int64
    assert x.min() >= 0 and x.max() <= 255 and x.max() > 1  # raw pixel values, no normalization
    assert set(y.tolist()) <= set(range(10))
    # the pixel values are exactly the PNG's
    i = batch["image_id"].index("0000-00003")
    png = np.array(Image.open(kaggle_input / "images" / "0000" / "00003.png"))
    assert torch.equal(x[i], torch.from_numpy(png).permute(2, 0, 1).float())
