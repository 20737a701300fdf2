"""Does a subset bank score like the exact banks? The same runs scored against both, side by side.

For each forget seed, each method runs as the leaderboard runs it (its committed record for the preset,
16 runs from the exact bank's original, cached), and those runs are scored twice: against the exact bank
(16 models retrained without this forget set) and against the subset bank's view of it (16 rounds: for
each forget example, the one model per round that never saw it). Same runs, same bootstrap seed: only
the reference differs. Kendall's tau compares the two rankings of the non-reference methods.

    python scripts/validate_subset_bank.py --forget-seeds 1,2        # cpu, subset bank of 160 models

Writes benchmarks/subset_bank/validation.{csv,md}; each (seed, method) is kept in rows/ as it finishes, so
an interrupted run resumes. The subset bank and the exact banks are built if missing (cpu: ~30 s a model).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.harness import api  # noqa: E402
from eval.harness.api.work import splits_and_bank  # noqa: E402
from eval.harness.row import References, summarize_runs  # noqa: E402
from eval.harness.runs import evaluate_runs  # noqa: E402
from eval.harness.subset_bank import SubsetBank  # noqa: E402
from eval.io import write_json, write_text  # noqa: E402

METHODS = "retrain none fisher cf_k eu_k unsir ssd bad_teacher boundary_shrink kookmin scrub ams sibl ft salun".split()
OUT = Path("benchmarks/subset_bank")
COLS = ["score", "final_score", "score_ci_lo", "score_ci_hi", "F", "ra_ratio", "ta_ratio", "acc_forget", "epsilon_mean"]


def row(summary: dict) -> dict:
    lo, hi = summary.get("score_ci95", [np.nan, np.nan])
    return {
        "score": summary["score"],
        "final_score": summary["final_score"],
        "score_ci_lo": lo,
        "score_ci_hi": hi,
        "F": summary["F"],
        "ra_ratio": summary["ra_ratio"],
        "ta_ratio": summary["ta_ratio"],
        "acc_forget": summary["accuracy"]["forget_unlearned"],
        "acc_forget_ref": summary["accuracy"]["forget_retrained"],
        "acc_retain_ref": summary["accuracy"]["retain_retrained"],
        "epsilon_mean": summary["epsilon_mean"],
    }


def score_seed(seed: int, methods, args) -> list[dict]:
    options = api.Options(preset=args.preset, forget_seed=seed, runs=args.runs, bootstrap=args.bootstrap)
    console = api.Console(info=print, warn=lambda line: print(line, file=sys.stderr))
    rows = {name: OUT / "rows" / f"{args.preset}-s{seed}-subsets{args.bank_size}-{name}.json" for name in methods}
    todo = [name for name in methods if not rows[name].exists()]
    jobs = {}
    for name in todo:  # the runs first (exact bank only), so they go on while the subset bank is still building
        job = jobs[name] = api.prepare_method(name, options=options)
        splits, bank = splits_and_bank(options, job.preset, job.device, console)
        evaluate_runs(job.cls, job.params, job.preset, splits, bank, dict_batches=job.dict_batches)
    view = None
    for name in todo:
        job = jobs[name]
        splits, bank = splits_and_bank(options, job.preset, job.device, console)
        if view is None:
            subsets = SubsetBank(job.preset.with_bank("subsets", args.bank_size), splits, args.bank_size)
            subsets.ensure(progress=console.progress)
            view = subsets.view(splits)
        runs = evaluate_runs(job.cls, job.params, job.preset, splits, bank, dict_batches=job.dict_batches)
        result = {"seed": seed, "method": job.cls.key, "reference": not job.cls.valid_entry, "bank": bank.key}
        result["subset_view"], result["subset_bank"] = view.key, view.subsets.key
        result["exact_model_s"] = bank.manifest_retrain_time(job.preset.n_retrained)
        result["subset_model_s"] = view.subsets.model_seconds()
        result["subset_models"], result["exact_models"] = 1 + args.bank_size, 1 + job.preset.n_retrained
        n = job.preset.n_retrained
        for label, ref in (
            ("exact", References(bank, n, splits.forget_y, splits.test_y)),
            ("subsets", References(view, n, splits.forget_y, splits.test_y)),
        ):
            summary, _ = summarize_runs(runs, ref, valid_entry=job.cls.valid_entry, bootstrap=args.bootstrap)
            result[label] = row(summary)
        write_json(rows[name], result)
        e, s = result["exact"]["score"], result["subsets"]["score"]
        print(f"s{seed} {name}: exact {e:.4f} subsets {s:.4f}", flush=True)
    return [json.loads(rows[name].read_text()) for name in methods]


def table(results: list[dict]) -> pd.DataFrame:
    rows = []
    for r in results:
        e, s = r["exact"], r["subsets"]
        rows.append(
            {
                "seed": r["seed"],
                "method": r["method"],
                "reference": r["reference"],
                **{f"exact_{k}": e[k] for k in COLS},
                **{f"subsets_{k}": s[k] for k in COLS},
                "exact_acc_retain_ref": e["acc_retain_ref"],
                "subsets_acc_retain_ref": s["acc_retain_ref"],
                "exact_acc_forget_ref": e["acc_forget_ref"],
                "subsets_acc_forget_ref": s["acc_forget_ref"],
            }
        )
    return pd.DataFrame(rows)


def taus(df: pd.DataFrame) -> dict:
    """Kendall's tau (tau-b) between the exact and the subset rankings of the non-reference methods, per seed,
    and between seeds for each reference kind."""
    out = {}
    entries = df[~df.reference]
    for seed, g in entries.groupby("seed"):
        out[f"s{seed}: exact vs subsets"] = kendalltau(g.exact_score, g.subsets_score).statistic
    seeds = sorted(entries.seed.unique())
    for kind in ("exact", "subsets"):
        for i, a in enumerate(seeds):
            for b in seeds[i + 1 :]:
                ga = entries[entries.seed == a].set_index("method")[f"{kind}_score"]
                gb = entries[entries.seed == b].set_index("method")[f"{kind}_score"]
                common = ga.index.intersection(gb.index)
                out[f"{kind}: s{a} vs s{b}"] = kendalltau(ga[common], gb[common]).statistic
    return out


def markdown(df: pd.DataFrame, tau: dict, args, results: list[dict]) -> str:
    def cell(r, kind):
        return f"{r[f'{kind}_score']:.4f} [{r[f'{kind}_score_ci_lo']:.4f}, {r[f'{kind}_score_ci_hi']:.4f}]"

    lines = [
        f"# Subset bank vs exact banks ({args.preset}, {args.runs} runs, subset bank of {args.bank_size} models)",
        "",
        f"Command: `python scripts/validate_subset_bank.py --preset {args.preset} --forget-seeds "
        f"{args.forget_seeds} --bank-size {args.bank_size}`. The same runs of each method (its committed record, "
        "started from the exact bank's original) scored against the exact bank (models retrained without the "
        "forget set) and against as many rounds of the subset bank (for each forget example, the one model per round "
        "that never saw it). Score: F x RA ratio x TA ratio before the efficiency verdict (the same runs and times "
        "on both sides, so the verdict is too). Intervals: the bootstrap's 95% (runs and forget examples), the same "
        "seed for both.",
        "",
        "| seed | method | exact: score [95% CI] | subsets: score [95% CI] | F exact / subsets "
        "| RA ratio exact / subsets | TA ratio exact / subsets | inside the other's CI |",
        "|---:|:---|:---|:---|:---|:---|:---|:---|",
    ]
    for _, r in df.iterrows():
        inside = (
            r.exact_score_ci_lo <= r.subsets_score <= r.exact_score_ci_hi
            and r.subsets_score_ci_lo <= r.exact_score <= r.subsets_score_ci_hi
        )
        name = f"*{r.method}* (ref)" if r.reference else f"`{r.method}`"
        name += " (over 20%: final 0)" if r.exact_final_score == 0 < r.exact_score else ""
        lines.append(
            f"| {r.seed} | {name} | {cell(r, 'exact')} | {cell(r, 'subsets')} | {r.exact_F:.3f} / {r.subsets_F:.3f} "
            f"| {r.exact_ra_ratio:.3f} / {r.subsets_ra_ratio:.3f} | {r.exact_ta_ratio:.3f} / {r.subsets_ta_ratio:.3f} "
            f"| {'both' if inside else 'no'} |"
        )
    lines += ["", "Kendall's tau (tau-b) of the scores over the non-reference methods:", ""]
    lines += [f"- {k}: {v:.3f}" for k, v in tau.items()]
    refs = df.groupby("seed")[
        ["exact_acc_retain_ref", "subsets_acc_retain_ref", "exact_acc_forget_ref", "subsets_acc_forget_ref"]
    ].first()
    lines += ["", "The references themselves (retain accuracy on the retain set; accuracy on the forget set):", ""]
    for seed, r in refs.iterrows():
        lines.append(
            f"- s{seed}: retain {r.exact_acc_retain_ref:.4f} exact vs {r.subsets_acc_retain_ref:.4f} subsets; "
            f"forget {r.exact_acc_forget_ref:.4f} vs {r.subsets_acc_forget_ref:.4f}"
        )
    lines += ["", cost(results), ""]
    return "\n".join(lines) + "\n"


def cost(results: list[dict]) -> str:
    """What the banks cost: model counts, and the exact banks' recorded training time per model (one core)."""
    if not results or not results[0].get("exact_model_s"):
        return ""
    r, seeds = results[0], len({x["seed"] for x in results})
    exact_s = float(np.nanmedian([x["exact_model_s"] for x in results if x.get("exact_model_s")]))
    exact, subsets = r["exact_models"], r["subset_models"]
    return (
        f"**Cost.** An exact bank is {exact} models and serves one forget set; the subset bank is {subsets} models "
        f"and serves every random forget set of this fraction. A subset model trains on as many examples with the "
        f"same recipe as a retrained model, so it costs the same: {exact_s:.1f} s on one core (the median the exact "
        f"banks' manifests recorded, built on a quiet machine; the subset bank's own record, "
        f"{float(np.nanmedian([x['subset_model_s'] for x in results])):.1f} s, was taken with three or four "
        f"processes sharing the two cores and is not comparable). The subset bank costs {subsets / exact:.1f} exact "
        f"banks: {subsets * exact_s / 60:.0f} min against {exact * exact_s / 60:.0f} min per forget set "
        f"({seeds} forget set(s) here: {seeds * exact * exact_s / 60:.0f} min of exact banks)."
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--forget-seeds", default="1,2")
    p.add_argument("--bank-size", type=int, default=160)
    p.add_argument("--runs", type=int, default=16)
    p.add_argument("--bootstrap", type=int, default=20)
    p.add_argument("--methods", nargs="*", default=list(METHODS))
    args = p.parse_args(argv)
    results = []
    for seed in [int(s) for s in args.forget_seeds.split(",")]:
        results += score_seed(seed, args.methods, args)
    df = table(results)
    tau = taus(df)
    OUT.mkdir(parents=True, exist_ok=True)
    write_text(OUT / "validation.csv", df.to_csv(index=False))
    write_text(OUT / "validation.md", markdown(df, tau, args, results))
    print(markdown(df, tau, args, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
