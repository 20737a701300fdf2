"""Where a method loses forgetting quality: level, spread and per-example signature against retrained models.

Reads the `.npz` a scored run writes beside its `.json` (`unlearned_stat` and `retrained_stat`, the
scorer's per-model, per-example statistic, and `points`) and prints, as markdown:
  - F, the mean statistic of the runs and of the retrained models, and the median over forget examples
    of each group's std across models (the spread);
  - corr(per-example mean of the runs, that of the retrained models), and for scale the same
    correlation between one retrained model and the mean of the others (`single retrained`) and
    between one run and the mean of the other runs (`single run`);
  - per fifth of the forget examples ranked by the retrained models' mean: the level error (runs'
    mean − retrained mean), both spreads and the mean points.

    python scripts/level_spread.py results/cpu/my_method.npz results/cpu/ulf.npz
"""

import argparse
import sys
from pathlib import Path

import numpy as np


def _mean_corr(single: np.ndarray, others: np.ndarray) -> float:
    """Mean over rows i of corr(single[i], mean of `others` without row i when they are the same array)."""
    same = single is others
    out = []
    for i, row in enumerate(single):
        rest = np.delete(others, i, axis=0) if same else others
        out.append(np.corrcoef(row, rest.mean(0))[0, 1])
    return float(np.mean(out))


def profile(path: Path) -> str:
    d = np.load(path)
    u, r, points = d["unlearned_stat"], d["retrained_stat"], d["points"]
    mu, mr = u.mean(0), r.mean(0)
    lines = [
        f"### `{path}`",
        "",
        f"F {points.mean():.4f} · mean statistic runs {mu.mean():.2f}, retrained {mr.mean():.2f} · "
        f"median per-example std runs {np.median(u.std(0)):.2f}, retrained {np.median(r.std(0)):.2f} · "
        f"corr(per-example means) {np.corrcoef(mu, mr)[0, 1]:.3f} · single retrained vs the others' mean "
        f"{_mean_corr(r, r):.3f} · single run vs the retrained mean {_mean_corr(u, r):.3f} · single run vs "
        f"the other runs' mean {_mean_corr(u, u):.3f}",
        "",
        "| fifth (retrained mean) | level error | std runs | std retrained | points |",
        "|---|---|---|---|---|",
    ]
    edges = np.quantile(mr, np.linspace(0, 1, 6))
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        m = (mr >= lo) & ((mr < hi) if k < 4 else (mr <= hi))
        lines.append(
            f"| [{lo:.2f}, {hi:.2f}] | {(mu - mr)[m].mean():+.2f} | {u.std(0)[m].mean():.2f} | "
            f"{r.std(0)[m].mean():.2f} | {points[m].mean():.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("npz", nargs="+", type=Path, help="the .npz files a scored run wrote")
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.npz if not p.is_file()]
    if missing:
        ap.error(f"no such file: {', '.join(missing)}")
    for path in args.npz:
        print(profile(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
