"""How well the original's statistic on unseen views of a forget image predicts the retrained models' (`uvt`'s signal).

For a preset's forget set and its bank (trained on first use), prints as markdown the correlation between
the retrained models' per-example mean statistic (the scorer's logit-scaled confidence) and:
  - the original's statistic on the image itself, on its horizontal flip and on each diagonal shift by
    ±d pixels (reflect-padded, `methods/_views.py`), and the mean over `uvt`'s views (flip, ±1, ±2, ±4);
  - for scale: two halves of the retrained models, and one retrained model against the mean of the others;
with each predictor's mean level (the retrained mean's beside it) and the validation set's mean statistic
on the image and on its flip (a view the recipe did not train on changes nothing for unseen data).

    python scripts/view_signal.py --preset cpu --forget-seed 1
"""

import argparse
import sys

import numpy as np

from data.presets import PRESETS, get_preset
from data.splits import make_splits
from eval.harness.bank import Bank
from eval.metrics import logit_scaled_confidence
from eval.outputs import predict
from methods._views import flip_and_shifts, shifted

SHIFTS = (1, 2, 4)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def _stat(net, x, y) -> np.ndarray:
    return logit_scaled_confidence(predict(net, x).numpy(), y.numpy())


def table(preset_name: str, forget_seed: int, n_retrained: int | None, home=None, data_root=None) -> str:
    preset = get_preset(preset_name).with_forget(seed=forget_seed)
    splits = make_splits(preset, data_root)
    bank = Bank(preset, splits, home=home, data_root=data_root)
    n = n_retrained or preset.n_retrained
    bank.ensure(n)
    net = bank.load("original").eval()
    x, y = splits.forget_x, splits.forget_y
    retrained = logit_scaled_confidence(bank.retrained_outputs(n)["forget_logits"], y.numpy())  # (n, examples)
    target = retrained.mean(0)
    halves = _corr(retrained[: n // 2].mean(0), retrained[n // 2 :].mean(0))
    rows = [
        ("two halves of the retrained models (the ceiling)", halves, None),
        (
            "one retrained model against the others' mean",
            np.mean([_corr(r, np.delete(retrained, i, 0).mean(0)) for i, r in enumerate(retrained)]),
            None,
        ),
    ]
    views = {"the image itself": x, "the flip": x.flip(-1)}
    for _, dx, dy in flip_and_shifts(SHIFTS, x.shape[-1])[1:]:
        views[f"shift ({dx:+d}, {dy:+d})"] = shifted(x, dx, dy)
    stats = {name: _stat(net, v, y) for name, v in views.items()}
    stats["mean over `uvt`'s views (flip, ±1, ±2, ±4)"] = np.mean(
        [s for name, s in stats.items() if name != "the image itself"], axis=0
    )
    rows += [(name, _corr(s, target), s.mean()) for name, s in stats.items()]
    val = _stat(net, splits.val_x, splits.val_y).mean(), _stat(net, splits.val_x.flip(-1), splits.val_y).mean()
    lines = [
        f"### {preset.name}, forget seed {forget_seed}: {len(y)} forget examples, {n} retrained models",
        "",
        f"Retrained models' mean statistic on the forget set: {target.mean():.2f}. The original's on the "
        f"validation set: {val[0]:.2f} on the images, {val[1]:.2f} on their flips.",
        "",
        "| predictor of the retrained models' per-example mean | corr | mean level |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {r:.3f} | {'' if m is None else f'{m:.2f}'} |" for name, r, m in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--forget-seed", type=int, default=1)
    ap.add_argument("--retrained", type=int, default=None, help="retrained models (default: the preset's)")
    ap.add_argument("--home", default=None, help="artifacts folder (default: $UNLEARN_HOME or ./artifacts)")
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args(argv)
    if args.retrained is not None and args.retrained < 2:
        ap.error("--retrained must be at least 2")
    print(table(args.preset, args.forget_seed, args.retrained, args.home, args.data_root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
