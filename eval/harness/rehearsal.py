"""`-p test --rehearse`: the submission notebook run here, on a Kaggle-layout copy of a test-phase preset, and scored.

1. `write_input_tree` lays out the preset's data as the competition's input folder: PNG images under
   `images/<a>/<b>.png`, `retain.csv`, `forget.csv`, `validation.csv` (`image_id, age_group, age,
   person_id`; CIFAR-10 has no people or ages, so each image is its own person and the age is
   derived from the label) and `original_model.pth`, the bank's original. It is written once per bank
   (atomically: built beside, then renamed) and reused.
2. The generated notebook runs with nbclient (`notebook_utils.execute_notebook`) for `n` checkpoints.
3. `read_submission` opens `submission.zip`; `score_checkpoints` computes each checkpoint's outputs on
   the preset's splits, stacked like `runs.evaluate_runs`, so the official metric scores them
   against the same retrained bank as `-m NAME`.
"""

import hashlib
import io
import os
import re
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from data.models import build_model
from eval.harness.bank_models import prepare
from eval.io import file_lock, write_text
from eval.outputs import model_outputs

COMPETITION_FOLDER = "neurips-2023-machine-unlearning"
SPLITS = (("retain", "retain"), ("forget", "forget"), ("val", "validation"))


def check_preset(preset) -> None:
    """ValueError unless `preset` is a test-phase preset (ResNet-18 on 0-255 images, 10 classes)."""
    if preset.normalize or preset.arch != "resnet18" or preset.num_classes != 10:
        raise ValueError(
            f"--rehearse needs a test-phase preset (kaggle, kaggle-cpu, kaggle-tiny): ResNet-18 on "
            f"0-255 images with 10 classes, as the notebook's template loads them; got {preset.name!r}"
        )


def write_input_tree(preset, splits, bank) -> Path:
    """The Kaggle input folder for `bank` (built on first use); returns `.../neurips-2023-machine-unlearning`."""
    check_preset(preset)
    final = bank.dir / "kaggle-input" / COMPETITION_FOLDER
    with file_lock(bank.dir / "locks" / "kaggle-input.lock"):
        if (final / "original_model.pth").exists():
            return final
        staging = Path(tempfile.mkdtemp(dir=bank.dir, prefix=".kaggle-input."))
        root = staging / COMPETITION_FOLDER
        index = 0
        for attr, name in SPLITS:
            x, y = getattr(splits, f"{attr}_x"), getattr(splits, f"{attr}_y")
            pixels = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (n, H, W, 3)
            rows = []
            for img, label in zip(pixels, y.tolist()):
                a, b = f"{index // 1000:04d}", f"{index:05d}"
                (root / "images" / a).mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(root / "images" / a / f"{b}.png")
                rows.append({"image_id": f"{a}-{b}", "age_group": label, "age": 20 + 5 * label, "person_id": index})
                index += 1
            pd.DataFrame(rows).to_csv(root / f"{name}.csv", index=False)
        state = {k: v.detach().cpu().contiguous() for k, v in bank.load("original").state_dict().items()}
        torch.save(state, root / "original_model.pth")
        if final.parent.exists():
            shutil.rmtree(final.parent)
        os.replace(staging, final.parent)
    return final


def read_submission(zip_path) -> list[dict]:
    """The state dicts in `submission.zip`, in checkpoint order."""
    with zipfile.ZipFile(zip_path) as archive:
        names = sorted(archive.namelist(), key=lambda n: int(re.search(r"(\d+)\.pth$", n).group(1)))
        return [torch.load(io.BytesIO(archive.read(n)), map_location="cpu", weights_only=True) for n in names]


def _digest(state: dict) -> str:
    h = hashlib.sha256()
    for k, v in state.items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def score_checkpoints(states: list[dict], preset, splits, device) -> dict:
    """Outputs of every checkpoint on the splits, stacked over checkpoints, plus `n_distinct` and `n_finite`."""
    outs = []
    for state in states:
        net = build_model(preset.arch, preset.num_classes)
        net.load_state_dict(state)
        outs.append(model_outputs(prepare(net, device), splits))
    stacked = {k: np.stack([o[k] for o in outs]) for k in outs[0]}
    stacked["n_distinct"] = len({_digest(s) for s in states})
    stacked["n_finite"] = int(stacked["finite"].sum())
    return stacked


def checkpoint_seconds(printed: str) -> float | None:
    """Seconds per checkpoint from the notebook's last progress line ("N/M checkpoints in S s")."""
    found = re.findall(r"(\d+)/\d+ checkpoints in (\d+) s", printed)
    if not found:
        return None
    done, seconds = found[-1]
    return int(seconds) / max(int(done), 1)


def fresh_dirs(out_dir) -> dict:
    """The working folder (where submission.zip lands) and the checkpoint folder of a rehearsal under
    `out_dir`, emptied first (a rehearsal always starts clean)."""
    dirs = {"work": Path(out_dir) / "working", "checkpoints": Path(out_dir) / "tmp"}
    for path in dirs.values():
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    return dirs


def save_log(out_dir, nb_text: str) -> Path:
    """The executed notebook beside the rehearsal, for inspection."""
    return write_text(Path(out_dir) / f"executed-{time.strftime('%Y%m%d-%H%M%S')}.ipynb", nb_text)


def score_step(summary: dict, n_forget: int) -> float:
    """The smallest change of the score: one forget example's full point, times the accuracy ratios."""
    return summary["ra_ratio"] * summary["ta_ratio"] / max(n_forget, 1)


def intervals_agree(a, b, step: float = 0.0) -> bool:
    """Whether intervals `a` and `b` overlap once each is widened by half the score's `step`.

    F is a mean over forget examples of points in {0, 1/2^k}, so with few examples or few models a
    bootstrap interval can collapse onto one value (e.g. [0, 0]) while the other sample's sits one
    step away; that is agreement at the resolution the data allow, not a disagreement.
    """
    (lo_a, hi_a), (lo_b, hi_b) = a, b
    return lo_a - step / 2 <= hi_b + step / 2 and lo_b - step / 2 <= hi_a + step / 2


def rehearse_submission(
    cls,
    overrides: dict,
    preset,
    splits,
    bank,
    out_dir,
    *,
    seed: int = 0,
    metric: str = "official",
    bootstrap: int = 20,
    progress=lambda it, **kw: it,
    on_wait=None,
) -> dict:
    """Build the notebook of `cls` with `overrides`, run it for `preset.n_runs` checkpoints on the
    Kaggle-layout copy of `bank`'s data, score `submission.zip` and the kit's own runs alike.

    Returns {"notebook": summary, "kit": summary, "agree": bool, "verdict": str, "problems": [str],
    "seconds_per_checkpoint": float, "out_dir": str}. Raises notebook_utils.NotebookFailed when a cell fails.
    """
    import nbformat

    from eval.harness.row import References, summarize_runs
    from eval.harness.runs import evaluate_runs
    from eval.harness.timing import RetrainClock
    from notebook_utils import build_notebook, cell_text_output, execute_notebook

    n = preset.n_runs
    data_dir = write_input_tree(preset, splits, bank)
    nb = build_notebook(cls.key, overrides, recipe_preset=preset.name)
    dirs = fresh_dirs(out_dir)
    clock = RetrainClock(preset, splits, bank.device)
    before = clock.estimate()
    t0 = time.perf_counter()
    try:
        execute_notebook(nb, data_dir, dirs["checkpoints"], dirs["work"], n_checkpoints=n)
    finally:
        save_log(out_dir, nbformat.writes(nb))
    wall = time.perf_counter() - t0
    reference = (before + clock.estimate()) / 2
    per_ckpt = checkpoint_seconds(cell_text_output(nb, "submission")) or wall / n
    states = read_submission(dirs["work"] / "submission.zip")
    sub = score_checkpoints(states, preset, splits, bank.device)
    problems = []
    if len(states) != n:
        problems.append(f"submission.zip holds {len(states)} checkpoints, not {n}")
    if sub["n_finite"] < len(states):
        problems.append(f"{len(states) - sub['n_finite']} of {len(states)} checkpoints give non-finite logits")
    if sub["n_distinct"] < len(states):
        problems.append(f"only {sub['n_distinct']} distinct checkpoints among {len(states)}: identical runs score 0")
    refs = References(bank, preset.n_retrained, splits.forget_y, splits.test_y)
    common = dict(valid_entry=cls.valid_entry, metric=metric, bootstrap=bootstrap, seed=seed)
    sub["time_s"] = np.full(len(states), per_ckpt)
    sub["reference_retrain_s"] = np.full(len(states), reference)
    notebook = summarize_runs(sub, refs, **common)[0]
    params = cls.make_params(**overrides)
    runs = evaluate_runs(
        cls, params, preset, splits, bank, seed=seed, dict_batches=True, progress=progress, on_wait=on_wait
    )
    kit = summarize_runs(runs, refs, **common)[0]
    step = score_step(kit, len(refs.forget_y))
    agree = intervals_agree(notebook["score_ci95"], kit["score_ci95"], step)
    verdict = (
        f"the notebook and the kit agree: their 95% intervals overlap (within the score's step {step:.4f}, "
        f"one forget example's points)"
        if agree
        else "the notebook and the kit DISAGREE: their 95% intervals do not overlap (same method, same preset, "
        "independent runs): a bug in the notebook or in the kit"
    )
    return {
        "method": cls.key,
        "preset": preset.tag,
        "checkpoints": len(states),
        "notebook": notebook,
        "kit": kit,
        "agree": bool(agree),
        "verdict": verdict,
        "problems": problems,
        "seconds_per_checkpoint": per_ckpt,
        "notebook_wall_s": wall,
        "out_dir": str(out_dir),
        "params": params.__dict__,
    }
