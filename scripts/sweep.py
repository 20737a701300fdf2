"""Hyperparameter sweep: score a method over a grid of `--set` values and print one table.

    python scripts/sweep.py -m pdu --grid lr=3e-4,1e-3 dual_lr=1,5 --runs 8
    python scripts/sweep.py -m sibl --grid lr=0.02,0.05 --set T=8 --preset cpu --out /tmp/sw

Every configuration goes through `main.py` (same bank, same cached runs: re-running a sweep only
computes what is new) and writes its JSON under `--out`; the table (pandas) is printed as markdown
and saved as `sweep.csv` there. Extra arguments after `--` are passed to `main.py` unchanged.
"""
import argparse
import contextlib
import io
import itertools
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import main as cli  # noqa: E402
import methods  # noqa: E402
from eval.io import write_text  # noqa: E402

COLUMNS = ["final_score", "score", "F", "ra_ratio", "ta_ratio", "forget_gap", "runtime_mean_s", "time_ratio",
           "manifest_time_ratio"]


def grid(items: list[str]) -> list[dict]:
    """["a=1,2", "b=x"] -> [{"a": "1", "b": "x"}, {"a": "2", "b": "x"}]."""
    axes = []
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--grid expects key=v1,v2,..., got {item!r}")
        key, values = item.split("=", 1)
        axes.append([(key, v) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--method", required=True)
    p.add_argument("--grid", nargs="*", default=[], metavar="KEY=V1,V2")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="fixed overrides for every point")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--out", default="results/sweeps")
    args, extra = p.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    try:
        key = methods.get_method(args.method).key
    except ValueError as exc:
        p.error(str(exc))
    out = Path(args.out) / args.preset / key
    rows = []
    for i, point in enumerate(grid(args.grid)):
        sets = args.set + [f"{k}={v}" for k, v in point.items()]
        res_dir = out / f"point{i:03d}"
        argv_i = ["-m", args.method, "--preset", args.preset, "--runs", str(args.runs), "--quiet",
                  "--results-dir", str(res_dir), "--set", *sets, *extra]
        print(f"[{i + 1}] {' '.join(sets) or '(defaults)'}", flush=True)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = cli.main(argv_i)
        result = next(res_dir.glob(f"*/{key}.json"), None)   # results/<preset tag>/<key>.json
        row = {"point": " ".join(f"{k}={v}" for k, v in point.items()) or "(defaults)"}
        if rc == 0 and result is not None:
            d = json.loads(result.read_text())
            row.update({c: d.get(c) for c in COLUMNS})
            row["acc_forget"] = d["accuracy"]["forget_unlearned"]
            print(f"    score {d['final_score']:.4f}  F {d['F']:.4f}  RA {d['ra_ratio']:.3f}  "
                  f"TA {d['ta_ratio']:.3f}  {d['runtime_mean_s']:.1f} s", flush=True)
        else:
            row["final_score"] = float("nan")
            print(f"    failed (exit {rc})", flush=True)
        rows.append(row)
    table = pd.DataFrame(rows)
    write_text(out / "sweep.csv", table.to_csv(index=False))
    print(f"\nmethod {key} · preset {args.preset} · {args.runs} runs · fixed: {' '.join(args.set) or '-'}")
    print(table.to_markdown(index=False, floatfmt=".4f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
