"""Does a method survive a preset? Each method's runs from the preset's original, with their accuracies.

    python scripts/probe_defaults.py --preset kaggle-cpu -m my_method pdu sibl --runs 2
    python scripts/probe_defaults.py --preset kaggle-cpu -m my_method --set lr=0.001

A quick check before a full evaluation or a rehearsal: for every run it prints whether the weights
and logits stay finite, the retain / forget / test accuracies beside the original's, the run's
seconds and its share of one retraining (the harness's clock: a slice of the preset's retraining timed
just before and after the run, so the ratio holds on a loaded machine). A retain accuracy far below
the original's means the method's settings do not suit that network; a share above 20% breaks the
efficiency rule. Runs use
the same seed tree as `main.py` (base seed 1000, so they never reuse a cached evaluation's runs).
"""

import argparse
import sys

import methods
from data.presets import PRESETS, get_preset
from data.splits import make_splits
from eval.harness.bank import Bank
from eval.harness.timing import RetrainClock
from eval.harness.unlearn import MethodFailed, run_once


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--methods", nargs="+", required=True)
    p.add_argument("--preset", choices=sorted(PRESETS), default="kaggle-cpu")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every method")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--forget-seed", type=int, default=None, help="the preset's random forget set drawn with this seed")
    p.add_argument("--home", default=None, help="artifacts folder (default: $UNLEARN_HOME or ./artifacts)")
    p.add_argument("--data-root", default=None)
    args = p.parse_args(argv)
    preset = get_preset(args.preset).with_forget(seed=args.forget_seed)
    splits = make_splits(preset, args.data_root)
    bank = Bank(preset, splits, home=args.home, data_root=args.data_root)
    bank.ensure(0)  # the original is all a probe needs
    o = bank.outputs("original")
    clock = RetrainClock(preset, splits, bank.device)
    print(f"{'':28}{'finite':>8}{'retain':>9}{'forget':>9}{'test':>9}{'s':>8}{'% retrain':>11}")
    print(
        f"{'original':28}{'':>8}{float(o['acc_retain']):>9.3f}{float(o['acc_forget']):>9.3f}"
        f"{float(o['acc_test']):>9.3f}"
    )
    for key in args.methods:
        try:
            cls = methods.get_method(key)
            params = cls.make_params(**methods.parse_overrides(cls, args.set))
        except ValueError as exc:
            print(f"{key:28}  skipped: {exc}")
            continue
        for i in range(args.runs):
            before = clock.estimate()
            try:
                outs = run_once(cls, params, preset, splits, bank, 1000, i, preset.dict_batches)
            except MethodFailed as exc:
                print(f"{cls.key + f' run {i}':28}  failed: {exc.reason}")
                continue
            retrain = (before + clock.estimate()) / 2
            seconds = float(outs["time_s"])
            print(
                f"{cls.key + f' run {i}':28}{'yes':>8}{float(outs['acc_retain']):>9.3f}"
                f"{float(outs['acc_forget']):>9.3f}{float(outs['acc_test']):>9.3f}"
                f"{seconds:>8.1f}{100 * seconds / retrain:>10.1f}%",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
