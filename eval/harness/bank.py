"""The reference bank: one original model and N models retrained without the forget set.

The competition scores an unlearning method by comparing, per forget example, its outputs over many
runs with those of many real retrained models, so the bank holds real retrains (own random streams
each, same recipe), never one model plus noise. Everything is cached under `$UNLEARN_HOME`
(default `./artifacts`) in a folder keyed by a hash of all that affects the weights: architecture,
recipe, data and forget split, and the code that trains a model (`bank_models.py` and everything it
imports, by syntax tree: `fingerprint.py`).

Robustness: each model is built under its own file lock (a second process waits, then reuses it);
a model counts as done only when its checkpoint exists and its cached outputs read back, so a
deleted checkpoint is retrained and a damaged outputs file is recomputed; a corrupt checkpoint (one that
does not load, or for a retrained model is no whole archive, even beside intact outputs) is moved aside
(`.corrupt`) and retrained; checkpoints and outputs are written atomically and a
killed writer's temporary files are removed. `manifest.json` (accuracies and training times) is
rebuilt from the checkpoints when missing or unreadable.

If the official competition checkpoints (`weights_resnet18_cifar10.pth`,
`retrain_weights_resnet18_cifar10.pth`) lie in the data root of a preset with `official_files`,
the first is its original and the second one more retrained model.
"""

import hashlib
import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from data.cifar10 import DataError, resolve_root
from data.models import arch_module, build_model
from eval.harness.bank_models import bank_model_outputs, prepare, train_bank_model
from eval.harness.fingerprint import code_fingerprint
from eval.io import file_lock, read_json, read_npz, remove_orphans, torch_save, write_json, write_npz

OFFICIAL_ORIGINAL = "weights_resnet18_cifar10.pth"
OFFICIAL_RETRAINED = "retrain_weights_resnet18_cifar10.pth"
OUTPUT_KEYS = ("forget_logits", "test_logits", "acc_retain", "acc_forget", "acc_test", "acc_val", "finite")


def artifacts_home(home=None) -> Path:
    """`home`, else $UNLEARN_HOME, else ./artifacts."""
    return Path(home or os.environ.get("UNLEARN_HOME") or "artifacts")


class Bank:
    """Original and retrained checkpoints of one preset, with their cached outputs."""

    def __init__(self, preset, splits, home=None, data_root=None, device="cpu"):
        self.preset, self.splits, self.device = preset, splits, torch.device(device)
        root = resolve_root(data_root)
        self.official = {}
        if preset.official_files and splits.official_forget:
            for name, fname in (("original", OFFICIAL_ORIGINAL), ("official_retrain", OFFICIAL_RETRAINED)):
                if (root / fname).exists():
                    self.official[name] = root / fname
        self.config = {
            "arch": preset.arch,
            "dataset": preset.dataset,
            "num_classes": preset.num_classes,
            "recipe": preset.recipe.to_dict(),
            "data": splits.fingerprint(),
            "forget": splits.protocol,
            "official": sorted(self.official),
            "code": code_fingerprint(["eval.harness.bank_models", arch_module(preset.arch)]),
        }
        self.key = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()[:12]
        self.dir = artifacts_home(home) / "banks" / f"{preset.name}-{self.key}"

    @property
    def label(self) -> str:
        """How messages name the bank: its folder."""
        return self.dir.name

    # -- paths --------------------------------------------------------------------------------
    def retrained_names(self, n: int) -> list[str]:
        names = [f"retrained_{i:03d}" for i in range(n)]
        if "official_retrain" in self.official:
            names = ["official_retrain"] + names[:-1]
        return names

    def _ckpt(self, name: str) -> Path:
        return self.official.get(name) or self.dir / "models" / f"{name}.pt"

    def _outputs_path(self, name: str) -> Path:
        return self.dir / "outputs" / f"{name}.npz"

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    # -- building -----------------------------------------------------------------------------
    def complete(self, name: str) -> bool:
        """Checkpoint present and whole (loadable, for the original every run starts from; for the others an
        intact archive, a cheap check that catches a truncated or overwritten file) and outputs readable."""
        outs = read_npz(self._outputs_path(name))
        ckpt = self._ckpt(name)
        if not ckpt.exists() or outs is None or not all(k in outs for k in OUTPUT_KEYS):
            return False
        if name not in self.official and not zipfile.is_zipfile(ckpt):  # torch.save writes a zip archive
            return False
        if name == "original":
            try:
                self.load(name)
            except DataError:
                return False
        return True

    def ensure(self, n_retrained: int, progress=lambda it, **kw: it, on_wait=None) -> None:
        """Train (or reuse) the original and `n_retrained` retrained models and cache their outputs.

        `on_wait()`, if given, is called when another process holds a model's lock (it is building it).
        """
        for name in progress(self.missing(n_retrained), desc=f"bank {self.preset.name}", unit="model"):
            self.ensure_model(name, on_wait=on_wait)

    def missing(self, n_retrained: int) -> list[str]:
        """The models of `ensure(n_retrained)` not yet complete (the original first)."""
        return [n for n in ["original"] + self.retrained_names(n_retrained) if not self.complete(n)]

    def ensure_model(self, name: str, on_wait=None) -> None:
        """Build model `name` unless complete: one task of the bank (`tasks.py`), safe to call from any process."""
        with file_lock(self.dir / "locks" / f"{name}.lock", on_wait=on_wait):
            for path in (self._ckpt(name), self._outputs_path(name)):
                remove_orphans(path)
            if not self.complete(name):  # another process may have built it meanwhile
                self._build(name)

    def _build(self, name: str) -> None:
        path, info, net = self._ckpt(name), {}, None
        if path.exists():
            try:
                net = self.load(name)
            except DataError:
                if name in self.official:
                    raise
                path.replace(path.with_suffix(".corrupt"))  # keep it for inspection; retrain below
        if net is None:
            net, info = train_bank_model(self.preset, self.splits, name, self.device)
            torch_save(
                path,
                {
                    "state_dict": {k: v.contiguous() for k, v in net.state_dict().items()},
                    "arch": self.preset.arch,
                    "num_classes": self.preset.num_classes,
                    "recipe": self.preset.recipe.to_dict(),
                    "torch": str(torch.__version__),
                    "bank": self.key,
                    **info,
                },
            )
        outs = bank_model_outputs(net, self.splits)
        if not outs["finite"]:
            raise DataError(f"bank model {name} ({path}) gives non-finite logits; delete it to retrain")
        write_npz(self._outputs_path(name), **outs)
        self._update_manifest(name, {**info, **{k: float(v) for k, v in outs.items() if k.startswith("acc_")}})

    def _update_manifest(self, name: str, entry: dict) -> None:
        with file_lock(self.dir / "locks" / "manifest.lock"):
            remove_orphans(self.manifest_path)
            manifest = self._read_or_rebuild_manifest()
            manifest["models"].setdefault(name, {}).update(entry)
            write_json(self.manifest_path, manifest)

    def _read_manifest(self) -> dict | None:
        """manifest.json if it is readable and belongs to this bank, else None."""
        manifest = read_json(self.manifest_path, default=None)
        ok = isinstance(manifest, dict) and manifest.get("key") == self.key and isinstance(manifest.get("models"), dict)
        return manifest if ok else None

    def _read_or_rebuild_manifest(self) -> dict:
        manifest = self._read_manifest()
        if manifest is not None:
            return manifest
        models = {}
        for ckpt in sorted((self.dir / "models").glob("*.pt")):
            try:
                saved = torch.load(ckpt, map_location="cpu", weights_only=True)
            except Exception:  # noqa: BLE001 (an unreadable checkpoint is retrained by ensure())
                warnings.warn(f"bank {self.key}: checkpoint {ckpt} is unreadable; the next run retrains it")
                continue
            entry = {k: saved[k] for k in ("seeds", "train_time_s", "device", "threads") if k in saved}
            outs = read_npz(self._outputs_path(ckpt.stem)) or {}
            entry.update({k: float(v) for k, v in outs.items() if k.startswith("acc_")})
            models[ckpt.stem] = entry
        return {"key": self.key, "preset": self.preset.name, "config": self.config, "models": models}

    def manifest(self) -> dict:
        """Accuracies and training times per model; rebuilt from the checkpoints when missing or unreadable."""
        manifest = self._read_manifest()
        if manifest is not None:
            return manifest
        with file_lock(self.dir / "locks" / "manifest.lock"):
            manifest = self._read_or_rebuild_manifest()
            if manifest["models"]:
                write_json(self.manifest_path, manifest)
        return manifest

    def seconds_per_model(self) -> tuple[float, str] | None:
        """(median training seconds of one model, where it was measured): this bank's manifest, else the
        newest other bank of the same preset under the same artifacts folder; None where nothing was built."""
        own = self._read_manifest()
        banks = [self.dir] + sorted(
            (d for d in self.dir.parent.glob(f"{self.preset.name}-*") if d != self.dir),
            key=lambda d: d.stat().st_mtime,
            reverse=True,
        )
        for d in banks:
            manifest = own if d == self.dir else read_json(d / "manifest.json", default=None)
            models = manifest.get("models", {}) if isinstance(manifest, dict) else {}
            times = [m["train_time_s"] for m in models.values() if isinstance(m, dict) and "train_time_s" in m]
            if times:
                return float(np.median(times)), d.name
        return None

    # -- reading ------------------------------------------------------------------------------
    def load(self, name: str = "original") -> torch.nn.Module:
        """A fresh model on the bank's device with the weights of checkpoint `name`."""
        path = self._ckpt(name)
        try:
            # TorchVersion (a str subclass) was stored by early versions of this kit
            with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DataError(f"cannot read checkpoint {path}: {exc}. Rerun to rebuild it.") from None
        state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
        net = build_model(self.preset.arch, self.preset.num_classes)
        try:
            net.load_state_dict(state)
        except Exception as exc:
            raise DataError(f"checkpoint {path} does not fit architecture {self.preset.arch}: {exc}") from None
        return prepare(net, self.device).eval()

    def outputs(self, name: str) -> dict[str, np.ndarray]:
        """Cached outputs of model `name` (see eval.outputs.model_outputs)."""
        outs = read_npz(self._outputs_path(name))
        if outs is None or not all(k in outs for k in OUTPUT_KEYS):
            raise DataError(f"cannot read cached outputs {self._outputs_path(name)}. Rerun to recompute them.")
        return outs

    def retrained_outputs(self, n: int) -> dict[str, np.ndarray]:
        """Outputs of the first `n` retrained models stacked along a leading model axis."""
        outs = [self.outputs(name) for name in self.retrained_names(n)]
        return {k: np.stack([o[k] for o in outs]) for k in outs[0]}

    def manifest_retrain_time(self, n: int) -> float | None:
        """Median wall time one retrained model took when the bank was built (seconds), from the manifest.

        A second figure only: the efficiency rule uses a retraining slice timed beside the runs
        (`timing.py`), because the machine's load when the bank was built says nothing about now.
        """
        models = self.manifest()["models"]
        times = [models[n_]["train_time_s"] for n_ in self.retrained_names(n) if "train_time_s" in models.get(n_, {})]
        return float(np.median(times)) if times else None
