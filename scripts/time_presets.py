"""Time one bank model of each preset on this machine: a timed slice of its retraining, scaled (the
efficiency rule's own clock, `eval/harness/timing.py`), or with `--train` a whole retrained model and its
accuracies. What a bank of N models costs here is N times the first column (divided by the workers).

    python scripts/time_presets.py                           # every preset, slices only (a minute on a CPU)
    python scripts/time_presets.py --presets full kaggle --device cuda --train

Prints a markdown table: preset, architecture, training images, epochs, seconds per model (slice
estimate), models per hour, and with --train the measured time and retain / forget / test accuracy.
"""

import argparse
import sys
import time

import torch

from data.presets import PRESETS, get_preset
from eval.harness.bank_models import train_bank_model
from eval.harness.forget_sets import build_splits
from eval.harness.timing import RetrainClock
from eval.outputs import model_outputs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="*", default=sorted(PRESETS), choices=sorted(PRESETS))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data-root", default=None)
    p.add_argument("--steps", type=int, default=12, help="timed optimizer steps per slice (default 12)")
    p.add_argument("--train", action="store_true", help="also train one retrained model and report its accuracy")
    args = p.parse_args(argv)
    print(
        f"device {args.device}, {torch.get_num_threads()} threads"
        + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else "")
    )
    head = "| preset | arch | train images | epochs | s per model (slice) | models per hour |"
    if args.train:
        head += " s per model (trained) | retain / forget / test acc |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name in args.presets:
        preset = get_preset(name)
        splits = build_splits(preset, args.data_root, device=args.device)
        seconds = RetrainClock(preset, splits, args.device, steps=args.steps).estimate()
        row = (
            f"| {name} | {preset.arch} | {len(splits.retain_y) + len(splits.forget_y):,} | {preset.recipe.epochs} | "
            f"{seconds:,.0f} | {3600 / seconds:,.1f} |"
        )
        if args.train:
            t0 = time.perf_counter()
            net, _ = train_bank_model(preset, splits, "retrained_000", args.device)
            outs = model_outputs(net, splits)
            row += (
                f" {time.perf_counter() - t0:,.0f} | {outs['acc_retain']:.3f} / {outs['acc_forget']:.3f} / "
                f"{outs['acc_test']:.3f} |"
            )
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
