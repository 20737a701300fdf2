"""How one model of the bank is made: the code the bank's cache key is computed from.

The original trains on the whole training subset, retrained model i on the retain set only, each
with the preset's recipe and its own streams from the seed tree (`seeds.bank_streams`: one for
initialisation and augmentation, one for the loader's order). A recipe that keeps the best-validation
checkpoint selects it on the validation split: for retrained models from `best_from_epoch` on, for
the original from any epoch, as the organizers' `train_lib.py` does. `model_outputs` gives the logits
and accuracies that are cached beside each checkpoint.
"""

import time
from dataclasses import replace

import torch

from data.models import build_model
from data.splits import make_loader
from eval.harness.seeds import bank_streams
from eval.outputs import model_outputs
from methods._train_recipe import train_from_scratch


def model_index(name: str) -> int:
    """Index of bank model `name` in the seed tree: 0 for the original, 1 + i for retrained_{i:03d}."""
    return 0 if name == "original" else 1 + int(name.rsplit("_", 1)[-1])


def prepare(net: torch.nn.Module, device) -> torch.nn.Module:
    """Move to `device`; on CPU use channels_last weights (about 25% faster convolutions)."""
    net = net.to(device)
    if torch.device(device).type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    return net


def train_bank_model(preset, splits, name: str, device) -> tuple[torch.nn.Module, dict]:
    """Train bank model `name` from scratch; returns the model (eval mode) and what the checkpoint records."""
    streams = bank_streams(model_index(name))
    x, y = (splits.train_x, splits.train_y) if name == "original" else (splits.retain_x, splits.retain_y)
    net = prepare(build_model(preset.arch, preset.num_classes), device)
    recipe = preset.recipe
    if name == "original" and recipe.best_from_epoch is not None:
        recipe = replace(recipe, best_from_epoch=0)
    loader = make_loader(x, y, recipe.batch_size, shuffle=True, seed=streams["order"])
    val = make_loader(splits.val_x, splits.val_y, 1000) if recipe.best_from_epoch is not None else None
    t0 = time.perf_counter()
    train_from_scratch(net, loader, recipe, seed=streams["init"], val_loader=val)
    return net, {
        "seeds": streams,
        "train_time_s": time.perf_counter() - t0,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }


def bank_model_outputs(net: torch.nn.Module, splits) -> dict:
    """The cached outputs of a bank model (`eval.outputs.model_outputs`)."""
    return model_outputs(net, splits)
