"""The reference bank: one original model and N models retrained without the forget set.

The competition scores an unlearning method by comparing, per forget example, its outputs over many
runs with those of many real retrained models, so the bank holds real retrains (own seed each, same
recipe), never one model plus noise. Everything is cached under `$UNLEARN_HOME` (default
`./artifacts`) in a folder keyed by a hash of all that affects the weights (architecture, recipe,
data and split fingerprint). Each checkpoint is written atomically and finished seeds are skipped,
so an interrupted build resumes; `manifest.json` records each model's accuracies and training time.

If the official competition checkpoints (`weights_resnet18_cifar10.pth`,
`retrain_weights_resnet18_cifar10.pth`) lie in the data root, the `full` preset uses the first as
its original and adds the second as one more retrained model.
"""
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from data.cifar10 import DataError, resolve_root
from data.models import build_model
from data.presets import Preset
from data.splits import Splits, make_loader
from eval.io import read_json, torch_save, write_json, write_npz
from eval.outputs import model_outputs
from methods._training import train_from_scratch

BANK_VERSION = 1          # bump when the training code changes in a way that changes weights
ORIGINAL_SEED = 0
RETRAIN_SEED0 = 1000      # retrained model i uses seed RETRAIN_SEED0 + i
OFFICIAL_ORIGINAL = "weights_resnet18_cifar10.pth"
OFFICIAL_RETRAINED = "retrain_weights_resnet18_cifar10.pth"


def artifacts_home(home=None) -> Path:
    """`home`, else $UNLEARN_HOME, else ./artifacts."""
    return Path(home or os.environ.get("UNLEARN_HOME") or "artifacts")


def prepare(net: torch.nn.Module, device) -> torch.nn.Module:
    """Move to `device`; on CPU use channels_last weights (about 25% faster convolutions)."""
    net = net.to(device)
    if torch.device(device).type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    return net


class Bank:
    """Original and retrained checkpoints of one preset, with their cached outputs."""

    def __init__(self, preset: Preset, splits: Splits, home=None, data_root=None, device="cpu"):
        self.preset, self.splits, self.device = preset, splits, torch.device(device)
        root = resolve_root(data_root)
        self.official = {}
        if preset.name == "full":
            for name, fname in (("original", OFFICIAL_ORIGINAL), ("official_retrain", OFFICIAL_RETRAINED)):
                if (root / fname).exists():
                    self.official[name] = root / fname
        config = {"version": BANK_VERSION, "arch": preset.arch, "recipe": preset.recipe.to_dict(),
                  "data": splits.fingerprint(), "official": sorted(self.official)}
        self.config = config
        self.key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
        self.dir = artifacts_home(home) / "banks" / f"{preset.name}-{self.key}"

    # -- paths and manifest -------------------------------------------------------------------
    def retrained_names(self, n: int) -> list[str]:
        names = [f"retrained_{i:03d}" for i in range(n)]
        if "official_retrain" in self.official:
            names = ["official_retrain"] + names[:-1]
        return names

    def _ckpt(self, name: str) -> Path:
        if name in self.official:
            return self.official[name]
        return self.dir / "models" / f"{name}.pt"

    def _outputs_path(self, name: str) -> Path:
        return self.dir / "outputs" / f"{name}.npz"

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    def manifest(self) -> dict:
        return read_json(self.manifest_path, default=None) or {
            "key": self.key, "preset": self.preset.name, "config": self.config, "models": {}}

    # -- building -----------------------------------------------------------------------------
    def ensure(self, n_retrained: int, progress=lambda it, **kw: it) -> None:
        """Train (or reuse) the original and `n_retrained` retrained models and cache their outputs."""
        todo = [n for n in ["original"] + self.retrained_names(n_retrained) if not self._outputs_path(n).exists()]
        for name in progress(todo, desc=f"bank {self.preset.name}", unit="model"):
            self._build(name)

    def _build(self, name: str) -> None:
        path = self._ckpt(name)
        info = {}
        if path.exists():
            net = self.load(name)
        else:
            seed = ORIGINAL_SEED if name == "original" else RETRAIN_SEED0 + int(name.split("_")[-1])
            s = self.splits
            x, y = (s.train_x, s.train_y) if name == "original" else (s.retain_x, s.retain_y)
            net = prepare(build_model(self.preset.arch), self.device)
            loader = make_loader(x, y, self.preset.recipe.batch_size, shuffle=True, seed=seed)
            t0 = time.perf_counter()
            train_from_scratch(net, loader, self.preset.recipe, seed=seed)
            info = {"seed": seed, "train_time_s": time.perf_counter() - t0, "device": str(self.device),
                    "threads": torch.get_num_threads()}
            torch_save(path, {"state_dict": {k: v.contiguous() for k, v in net.state_dict().items()},
                              "arch": self.preset.arch, "num_classes": 10,
                              "recipe": self.preset.recipe.to_dict(), "torch": str(torch.__version__),
                              "bank": self.key, **info})
        outs = model_outputs(net, self.splits)
        if not outs["finite"]:
            raise DataError(f"bank model {name} ({path}) gives non-finite logits; delete it to retrain")
        write_npz(self._outputs_path(name), **outs)
        manifest = self.manifest()
        entry = manifest["models"].get(name, {})
        entry.update(info)
        entry.update({k: float(v) for k, v in outs.items() if k.startswith("acc_")})
        manifest["models"][name] = entry
        write_json(self.manifest_path, manifest)

    # -- reading ------------------------------------------------------------------------------
    def load(self, name: str = "original") -> torch.nn.Module:
        """A fresh model on the bank's device with the weights of checkpoint `name`."""
        path = self._ckpt(name)
        try:
            # TorchVersion (a str subclass) was stored by early versions of this kit
            with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DataError(f"cannot read checkpoint {path}: {exc}. Delete it to rebuild.") from None
        state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
        net = build_model(self.preset.arch)
        try:
            net.load_state_dict(state)
        except Exception as exc:
            raise DataError(f"checkpoint {path} does not fit architecture {self.preset.arch}: {exc}") from None
        return prepare(net, self.device).eval()

    def outputs(self, name: str) -> dict[str, np.ndarray]:
        """Cached outputs of model `name` (see eval.outputs.model_outputs)."""
        path = self._outputs_path(name)
        try:
            with np.load(path) as f:
                return {k: f[k] for k in f.files}
        except Exception as exc:
            raise DataError(f"cannot read cached outputs {path}: {exc}. Delete it to recompute.") from None

    def retrained_outputs(self, n: int) -> dict[str, np.ndarray]:
        """Outputs of the first `n` retrained models stacked along a leading model axis."""
        outs = [self.outputs(name) for name in self.retrained_names(n)]
        return {k: np.stack([o[k] for o in outs]) for k in outs[0]}

    def retrain_time(self, n: int) -> float | None:
        """Median wall time to train one retrained model (seconds), from the manifest.

        The median, not the mean, so a few models trained while the machine was busy do not skew
        the efficiency rule.
        """
        models = self.manifest()["models"]
        times = [models[n_]["train_time_s"] for n_ in self.retrained_names(n) if "train_time_s" in models.get(n_, {})]
        return float(np.median(times)) if times else None
