"""The splits of a preset's forget protocol, including the forget sets chosen by memorization.

A random or class-wise forget set is `data.splits.make_splits`'s. A `mem-*` forget set (RUM's
protocol; `eval/memorization.py`) needs the evaluator's memorization estimate first: the preset's
splits are built with its random forget set, which fixes the training subset, the estimate is built
or reused on that subset (`memorization_bank.py`), and the subset is split again with the chosen
examples as the forget set. The new split keeps every tensor of the old one (pixels, test and
validation halves) and only moves examples between retain and forget, in training-subset order.
"""

from dataclasses import replace

import numpy as np
import torch

from data.cifar10 import DataError
from data.splits import Splits, make_splits
from eval.harness.memorization_bank import MemorizationBank, training_subset
from eval.memorization import memorization_groups


def resplit(splits: Splits, forget_idx, protocol: str) -> Splits:
    """`splits` with the forget set replaced by training-subset indices `forget_idx`."""
    x, y = training_subset(splits)
    forget_idx = np.sort(np.asarray(forget_idx, np.int64))
    if (
        len(forget_idx) == 0
        or len(np.unique(forget_idx)) != len(forget_idx)
        or forget_idx[0] < 0
        or forget_idx[-1] >= len(y)
        or len(forget_idx) == len(y)
    ):
        raise ValueError(f"forget indices must be unique, within [0, {len(y)}) and leave a retain set")
    is_forget = torch.zeros(len(y), dtype=torch.bool)
    is_forget[torch.from_numpy(forget_idx)] = True
    return replace(
        splits,
        retain_x=x[~is_forget],
        retain_y=y[~is_forget],
        forget_x=x[is_forget],
        forget_y=y[is_forget],
        forget_idx=forget_idx,
        official_forget=False,
        protocol=protocol,
    )


def forget_count(preset, n_train: int) -> int:
    """How many examples the preset forgets out of a training subset of `n_train` (as `make_splits` counts)."""
    return preset.forget_size or max(1, int(round(preset.forget_frac * n_train)))


def build_splits(
    preset,
    data_root=None,
    home=None,
    device="cpu",
    progress=lambda it, **kw: it,
    on_wait=None,
    info: dict | None = None,
) -> Splits:
    """The splits of `preset`'s forget protocol; for a `mem-*` forget set, builds or reuses the estimate.

    `info`, if given, receives what a report needs about the estimate (its folder, K, the file of
    per-example estimates, the selected examples' mean memorization).
    """
    if preset.forget_set == "random":
        return make_splits(preset, data_root)
    base = make_splits(replace(preset, forget_set="random"), data_root)
    mem_bank = MemorizationBank(preset, base, home=home, device=device)
    mem_bank.ensure(preset.mem_models, progress=progress, on_wait=on_wait)
    table = mem_bank.estimates(preset.mem_models)
    path = mem_bank.write_estimates(preset.mem_models)
    n = forget_count(preset, len(table))
    if n >= len(table):
        raise DataError(f"--forget-size {n}: the training subset has only {len(table)} images")
    idx = memorization_groups(table["mem"].to_numpy(), n, preset.forget_set.removeprefix("mem-"))
    if info is not None:
        info.update(
            {
                "dir": str(mem_bank.dir),
                "key": mem_bank.key,
                "models": preset.mem_models,
                "estimates": str(path),
                "forget_mem_mean": float(table["mem"].to_numpy()[idx].mean()),
                "all_mem_mean": float(np.nanmean(table["mem"].to_numpy())),
                "model_seconds": mem_bank.model_seconds(preset.mem_models),
            }
        )
    return resplit(base, idx, preset.forget_protocol)
