"""A leaderboard table from committed rows alone: no bank, no runs, no training.

    python scripts/rows_table.py benchmarks/results/kaggle-cpu-forget-f0.02-s2
    python scripts/rows_table.py benchmarks/results/cpu-forget-f0.1-s2 -m fanchuan kookmin my_method

`main.py --leaderboard` caches one row per method under `<results>/<tag>/rows/` (keyed by the method's
code, values, bank and seed) and builds its table when every row is there. This reads those rows as
they are, so a table can be shown (in a note, in the README) while a long leaderboard is still
filling in, or after the code moved on. A method with rows from several code versions shows its
newest; `run key` names the version, and the table says how many rows it left out.
"""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from eval.scoring import EFFICIENCY_LIMIT


def newest_rows(folder: Path, names: list[str] | None = None) -> tuple[list[dict], int]:
    """The newest row of each method in `folder/rows/*.json` (of `names` if given, in that order) and
    how many older rows were skipped."""
    rows = {}
    skipped = 0
    for path in sorted((folder / "rows").glob("*.json")):
        blob = json.loads(path.read_text())
        row, written = blob.get("row", blob), blob.get("written", 0.0)
        key = row["method"]
        if names and key not in names:
            continue
        if key in rows:
            skipped += 1
            if rows[key][1] >= written:
                continue
        rows[key] = (row, written)
    order = (
        [n for n in names if n in rows]
        if names
        else sorted(rows, key=lambda k: -(rows[k][0].get("final_score") or 0.0))
    )
    return [rows[k][0] for k in order], skipped


def markdown(rows: list[dict]) -> str:
    """| method | final [95% CI] | F | RA ratio | TA ratio | forget acc | % retrain | run key |"""

    def fmt(r):
        if r.get("status") != "ok":
            return {"method": f"`{r['method']}`", "final [95% CI]": f"failed: {r.get('reason') or r.get('status')}"}
        rejected = r.get("efficiency") == "rejected"  # the verdict the row was scored with (eval.scoring)
        return {
            "method": f"`{r['method']}`",
            "final [95% CI]": f"{r['final_score']:.4f} [{r['final_ci_lo']:.4f}, {r['final_ci_hi']:.4f}]"
            + (f" (rejected: > {100 * EFFICIENCY_LIMIT:.0f}%)" if rejected else ""),
            "F": f"{r['F']:.3f}",
            "RA ratio": f"{r['ra_ratio']:.3f}",
            "TA ratio": f"{r['ta_ratio']:.3f}",
            "forget acc": f"{r['acc_forget']:.3f}",
            "% retrain": f"{100 * r['time_ratio']:.1f}%",
            "run key": r.get("run_key", ""),
        }

    return pd.DataFrame([fmt(r) for r in rows]).fillna("").to_markdown(index=False)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="a leaderboard's folder, e.g. benchmarks/results/kaggle-cpu-forget-f0.02-s2")
    p.add_argument("-m", "--methods", nargs="*", default=None, help="these methods, in this order (default: all)")
    args = p.parse_args(argv)
    folder = Path(args.folder)
    if not (folder / "rows").is_dir():
        p.error(f"{folder / 'rows'} does not exist: give the folder `main.py --leaderboard --results-dir` wrote")
    rows, skipped = newest_rows(folder, args.methods)
    if not rows:
        p.error(f"no rows in {folder / 'rows'}" + (f" for {' '.join(args.methods)}" if args.methods else ""))
    print(markdown(rows))
    if skipped:
        print(f"\n({skipped} older row(s) of the same methods left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
