"""The memorization estimate behind the `mem-*` forget sets: K half-subset models, cached like the bank.

Feldman & Zhang's subsampled estimator (arXiv 2008.03703; `eval/memorization.py` has the arithmetic):
model k trains, with the preset's own recipe, on a random half of the training subset (its
membership drawn from the seed tree, root MEMORIZATION, so it shares no stream with the bank or the
runs), and records which training examples it classifies correctly. mem(i) is then the accuracy on
i of the models that trained on it minus that of the models that did not. RUM used 400 ResNet-18
runs on 70% subsets for CIFAR-10 (kairanzhao/RUM `surgical_plugins/cifar_infl_mem_torch.py`); here K
is the preset's `mem_models` (16 on `cpu`: each example is in about 8 models and out of 8, so an
estimate moves in steps of about 1/8) and the subsets are halves, as the issue asks.

This is evaluator-side work: methods never see it. The models and their per-example correctness are
cached under `$UNLEARN_HOME/memorization/<preset>-<key>/`, the key a hash of the architecture, the
recipe, the training subset (not the forget split: every forget set of a preset shares one estimate)
and the code that trains and scores a model (`memorization_models.py` and what it imports). Each model is built
under its own file lock, counts as
done only when its checkpoint and outputs read back, and is written atomically, so an interrupted
estimate resumes and two processes share the work. `estimates_K<K>.csv` beside them holds the per-example
estimates (training-subset index, CIFAR-10 index, label, mem, n_in, n_out).
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from data.models import arch_module
from eval.harness.bank import artifacts_home
from eval.harness.fingerprint import code_fingerprint
from eval.harness.memorization_models import FRACTION, train_mem_model
from eval.io import file_lock, read_npz, remove_orphans, torch_save, write_npz, write_text
from eval.memorization import memorization_scores


def training_subset(splits) -> tuple[torch.Tensor, torch.Tensor]:
    """The training subset in its own order (x (n, 3, 32, 32), y (n,)), reassembled from retain and forget."""
    n = len(splits.retain_y) + len(splits.forget_y)
    is_forget = np.zeros(n, bool)
    is_forget[splits.forget_idx] = True
    x = torch.empty((n, *splits.retain_x.shape[1:]), dtype=splits.retain_x.dtype)
    y = torch.empty(n, dtype=splits.retain_y.dtype)
    x[torch.from_numpy(~is_forget)], y[torch.from_numpy(~is_forget)] = splits.retain_x, splits.retain_y
    x[torch.from_numpy(is_forget)], y[torch.from_numpy(is_forget)] = splits.forget_x, splits.forget_y
    return x, y


def subset_hash(splits, *more):
    """sha256 over the training subset (indices, labels, every 4th pixel) and then the arrays `more`."""
    x, y = training_subset(splits)
    h = hashlib.sha256(np.ascontiguousarray(splits.train_idx).tobytes())
    for a in (y.numpy(), x.numpy()[:, :, ::4, ::4], *more):
        h.update(np.ascontiguousarray(a).tobytes())
    return h


class MemorizationBank:
    """K models each trained on a random half of the training subset, and the estimate they give."""

    def __init__(self, preset, splits, home=None, device="cpu"):
        self.preset, self.splits, self.device = preset, splits, torch.device(device)
        self.x, self.y = training_subset(splits)
        h = subset_hash(splits, splits.val_y.numpy())  # best-validation checkpoints read the validation labels
        self.config = {
            "arch": preset.arch,
            "dataset": preset.dataset,
            "num_classes": preset.num_classes,
            "recipe": preset.recipe.to_dict(),
            "subset": h.hexdigest()[:16],
            "fraction": FRACTION,
            "code": code_fingerprint(["eval.harness.memorization_models", arch_module(preset.arch)]),
        }
        self.key = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()[:12]
        self.dir = artifacts_home(home) / "memorization" / f"{preset.name}-{self.key}"

    def _paths(self, k: int):
        return self.dir / "models" / f"model_{k:03d}.pt", self.dir / "outputs" / f"model_{k:03d}.npz"

    def complete(self, k: int) -> bool:
        ckpt, outs = self._paths(k)
        saved = read_npz(outs)
        return ckpt.exists() and saved is not None and {"members", "correct"} <= set(saved)

    def ensure(self, k_models: int, progress=lambda it, **kw: it, on_wait=None) -> None:
        """Train (or reuse) models 0..k_models-1 and cache their per-example correctness."""
        for k in progress(self.missing(k_models), desc=f"memorization {self.preset.name}", unit="model"):
            self.ensure_model(k, on_wait=on_wait)

    def missing(self, k_models: int) -> list[int]:
        """The models of `ensure(k_models)` not yet complete."""
        return [k for k in range(k_models) if not self.complete(k)]

    def ensure_model(self, k: int, on_wait=None) -> None:
        """Build model `k` unless complete: one task (`tasks.py`), safe to call from any process."""
        with file_lock(self.dir / "locks" / f"model_{k:03d}.lock", on_wait=on_wait):
            for path in self._paths(k):
                remove_orphans(path)
            if not self.complete(k):  # another process may have built it meanwhile
                self._build(k)

    def _build(self, k: int) -> None:
        net, members, correct, seconds = train_mem_model(
            self.preset, self.x, self.y, self.splits.val_x, self.splits.val_y, k, self.device
        )
        ckpt, outs = self._paths(k)
        torch_save(
            ckpt,
            {
                "state_dict": {n: v.contiguous() for n, v in net.state_dict().items()},
                "arch": self.preset.arch,
                "train_time_s": seconds,
                "memorization": self.key,
            },
        )
        write_npz(outs, members=members, correct=correct, train_time_s=np.float64(seconds))

    def estimates(self, k_models: int) -> pd.DataFrame:
        """Per training example: index, CIFAR-10 index, label, mem, n_in, n_out (models 0..k_models-1)."""
        saved = [read_npz(self._paths(k)[1]) for k in range(k_models)]
        if any(s is None for s in saved):
            raise FileNotFoundError(f"memorization models missing under {self.dir}: call ensure({k_models}) first")
        mem, n_in, n_out = memorization_scores(
            np.stack([s["members"] for s in saved]), np.stack([s["correct"] for s in saved])
        )
        return pd.DataFrame(
            {
                "index": np.arange(len(mem)),
                "cifar_index": self.splits.train_idx,
                "label": self.y.numpy(),
                "mem": mem,
                "n_in": n_in,
                "n_out": n_out,
            }
        )

    def model_seconds(self, k_models: int) -> float:
        """Median training time of one memorization model, as recorded (seconds)."""
        return float(np.median([float(read_npz(self._paths(k)[1])["train_time_s"]) for k in range(k_models)]))

    def write_estimates(self, k_models: int) -> Path:
        """Write `estimates_K<k_models>.csv` (atomically) and return its path."""
        return write_text(self.dir / f"estimates_K{k_models}.csv", self.estimates(k_models).to_csv(index=False))
