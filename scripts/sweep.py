"""Hyperparameter sweep: score a method over a grid of `--set` values, or search its ranges with Optuna.

    python scripts/sweep.py -m pdu --grid lr=3e-4,1e-3 dual_lr=1,5 --runs 8
    python scripts/sweep.py -m sibl --grid lr=0.02,0.05 --set T=8 --preset cpu --out /tmp/sw
    python scripts/sweep.py -m ft --optuna 30 --runs 16                      # TPE over ft.search_space
    python scripts/sweep.py -m ft --optuna 30 --runs 16 --set epochs=2 --score-seeds 2 3
    python scripts/sweep.py -m fanchuan --preset cpu --optuna 6 --space time_factor=float:0.3:1   # + a range
    python scripts/sweep.py -m sibl --preset cpu --runs 16 --forget-seed 2 --points "" "max_update=0"   # ablation

Every configuration is scored by the evaluation API (`eval.harness.api.evaluate_method`, what `main.py -m`
runs: same bank, same cached runs, so re-running a sweep only computes what is new) and writes its JSON
under `--out`. Extra arguments (after `--`) are `main.py`'s flags for the options, e.g. `--home DIR
--bootstrap 0`. Bad input (an unknown preset or --set key, --runs 1, ...) stops the sweep with exit code 2
before any configuration runs or any trial is recorded.

`--grid`: the table (pandas) is printed as markdown and saved as `sweep.csv`. `--points`: the same, for a
list of configurations (`k=v;k=v` each, "" the defaults) instead of a product: an ablation.

`--optuna N`: a seeded TPE search (`--sampler-seed`) over the ranges the method declares next to its
defaults (`search_space`, minus what `--set` fixes); a new study's first trial is the defaults. The
objective is the final score, 0 when the efficiency rule rejects the run; a failed trial (the method
raised or diverged, the data is missing, a NaN score) scores 0 with its reason in trials.csv. The study is
kept in `<out>/<preset>/<method>/optuna.db` (one study per method, preset, forget seed, runs and
fixed values): re-running the same command resumes it and runs only the trials missing to reach N
complete ones. Writes `trials.csv`, `search.png` and `best.json` (the best trial's `--set` tokens
and the budget) in `<out>/<preset>/<method>/<study>/`, prints the best parameters and the `--set`
line that reproduces them. For a fair comparison give every method the same N on the tuning forget
seed (`--forget-seed`, default 1), then score the best on other forget seeds: `--score-seeds`
here, or a leaderboard of every tuned method, `main.py --leaderboard ... --forget-seed 2 --tuned <out>`.
"""

import argparse
import dataclasses
import itertools
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd

import main as cli
import methods
from data.cifar10 import DataError
from eval.harness import api, optuna_search, report
from eval.harness.api.options import check_outputs
from eval.io import write_json, write_text

COLUMNS = [
    "final_score",
    "score",
    "F",
    "ra_ratio",
    "ta_ratio",
    "forget_gap",
    "runtime_mean_s",
    "time_ratio",
    "manifest_time_ratio",
]
#: main.py flags a sweep accepts after `--` beside the evaluation options (it always runs quiet and published)
HARMLESS = {"quiet", "published"}
#: options the sweep sets itself, from --preset, --runs, --forget-seed and --out
OWN = {"preset", "runs", "forget_seed", "results_dir"}
#: warnings (lock waits, a fixed seed) go to stderr, indented; the evaluation's other lines are not printed
CONSOLE = api.Console(warn=lambda line: print(textwrap.indent(line, "    "), file=sys.stderr, flush=True))


def extra_space(cls, items: list[str]) -> dict:
    """["time_factor=float:0.3:1"] -> {"time_factor": ("float", 0.3, 1.0)}: ranges searched beside the
    method's own `search_space` (a parameter it does not declare, e.g. an entry's `time_factor` on a
    preset where its released epochs break the 20% rule); each must be a field of its Params."""
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    out = {}
    for item in items:
        key, _, spec = item.partition("=")
        parts = spec.split(":")
        if key not in fields or len(parts) != 3 or parts[0] not in ("float", "log", "int"):
            raise ValueError(f"--space expects FIELD=float|log|int:LOW:HIGH with a field of {cls.key}, got {item!r}")
        low, high = float(parts[1]), float(parts[2])
        if not low < high:
            raise ValueError(f"--space {item!r}: LOW must be below HIGH")
        out[key] = (parts[0], int(low), int(high)) if parts[0] == "int" else (parts[0], low, high)
    return out


def points(items: list[str]) -> list[dict]:
    """["a=1;b=2", "c=x", ""] -> [{"a": "1", "b": "2"}, {"c": "x"}, {}]: one configuration per item
    (an ablation: each adaptation off in turn; "" is the defaults)."""
    out = []
    for item in items:
        point = {}
        for token in filter(None, (t.strip() for t in item.split(";"))):
            if "=" not in token:
                raise SystemExit(f"--points expects key=value;key=value, got {item!r}")
            key, value = token.split("=", 1)
            point[key] = value
        out.append(point)
    return out


def grid(items: list[str]) -> list[dict]:
    """["a=1,2", "b=x"] -> [{"a": "1", "b": "x"}, {"a": "2", "b": "x"}]."""
    axes = []
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--grid expects key=v1,v2,..., got {item!r}")
        key, values = item.split("=", 1)
        axes.append([(key, v) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)]


def sweep_options(args, extra: list[str]) -> api.Options:
    """The evaluation options of every configuration: the sweep's --preset and --runs, and main.py's flags
    among the `extra` arguments (e.g. --home DIR --bootstrap 0); UsageError on a flag that is no option."""
    parser = cli.get_args_parser(prog="sweep.py ... --")
    ns = parser.parse_args(extra)
    opts = cli.options(ns)
    allowed = HARMLESS | {f.name for f in dataclasses.fields(api.Options)} | set(vars(opts.scale_out))
    stray = [k for k, v in vars(ns).items() if (k in OWN or k not in allowed) and v != parser.get_default(k)]
    if stray:
        flags = ", ".join("--" + k.replace("_", "-") for k in stray)
        raise api.UsageError(
            f"{flags} after --: a sweep passes on main.py's evaluation options only "
            "(--preset, --runs, --forget-seed and --out are its own flags)"
        )
    return dataclasses.replace(opts, preset=args.preset, runs=args.runs)


def _on_seed(opts: api.Options, forget_seed: int | None) -> api.Options:
    return opts if forget_seed is None else opts.with_forget_seed(forget_seed)


def check(opts: api.Options, key: str, sets: list[str], forget_seed: int | None = None) -> None:
    """UsageError unless the configuration (`sets` over the published defaults) can run: checked for every
    configuration before the first one runs, so bad input never reaches a table or a study."""
    api.prepare_method(key, sets, options=_on_seed(opts, forget_seed), published=True)


def evaluate(opts: api.Options, key: str, sets: list[str], res_dir: Path, *, forget_seed: int | None = None) -> dict:
    """Score one configuration (the published defaults under `sets`) into `res_dir`: {"rc", "record" (its
    JSON fields, or None), "reason"}, what `optuna_search.outcome_score` reads.

    A failing method, missing data or an executor that does not start is an outcome (rc 1, the reason
    printed to stderr); bad input (api.UsageError) and Ctrl-C (KeyboardInterrupt) are raised."""
    options = dataclasses.replace(_on_seed(opts, forget_seed), results_dir=str(res_dir))
    try:
        record = api.evaluate_method(key, sets, options=options, published=True, console=CONSOLE)
    except api.EvaluationFailed as exc:
        text, reason = report.failed(exc), f"FAILED: {exc.reason}"
    except (DataError, api.ExecutorError) as exc:
        text = reason = report.error(exc)
    else:
        return {"rc": 0, "record": record.fields, "reason": None}
    print(textwrap.indent(text, "    "), file=sys.stderr, flush=True)
    return {"rc": 1, "record": None, "reason": reason}


def _grid_points(args, opts: api.Options, key: str) -> list[dict]:
    configs = points(args.points) if args.points is not None else grid(args.grid)
    for point in configs:
        check(opts, key, args.set + [f"{k}={v}" for k, v in point.items()], args.forget_seed)
    return configs


def _grid(args, opts: api.Options, key: str, configs: list[dict], out: Path) -> int:
    rows = []
    for i, point in enumerate(configs):
        sets = args.set + [f"{k}={v}" for k, v in point.items()]
        print(f"[{i + 1}] {' '.join(sets) or '(defaults)'}", flush=True)
        res = evaluate(opts, key, sets, out / f"point{i:03d}", forget_seed=args.forget_seed)
        row = {"point": " ".join(f"{k}={v}" for k, v in point.items()) or "(defaults)"}
        if res["record"] is not None:
            d = res["record"]
            row.update({c: d.get(c) for c in COLUMNS})
            row["acc_forget"] = d["accuracy"]["forget_unlearned"]
            print(
                f"    score {d['final_score']:.4f}  F {d['F']:.4f}  RA {d['ra_ratio']:.3f}  "
                f"TA {d['ta_ratio']:.3f}  {d['runtime_mean_s']:.1f} s",
                flush=True,
            )
        else:
            row["final_score"] = float("nan")
            print(f"    failed (exit {res['rc']})", flush=True)
        rows.append(row)
    table = pd.DataFrame(rows)
    write_text(out / "sweep.csv", table.to_csv(index=False))
    print(f"\nmethod {key} · preset {args.preset} · {args.runs} runs · fixed: {' '.join(args.set) or '-'}")
    print(table.to_markdown(index=False, floatfmt=".4f"))
    return 0


def _study_space(args, opts: api.Options, cls) -> tuple[dict, dict, int]:
    """(space, the --space ranges added, the tuning forget seed): checked, with every evaluation the search
    makes (the tuning seed, the held-out ones), before the study is opened."""

    fixed = methods.parse_overrides(cls, args.set)
    space = optuna_search.free_space(cls, fixed)
    added = extra_space(cls, args.space)
    space.update(added)
    if not space:
        raise ValueError(
            f"method {cls.key!r} has nothing to tune: "
            + (
                f"--set fixes every parameter of its search_space ({', '.join(cls.search_space)})"
                if cls.search_space
                else "it declares no search_space (add one next to its Params defaults)"
            )
        )
    forget_seed = 1 if args.forget_seed is None else args.forget_seed
    for seed in dict.fromkeys([forget_seed, *(args.score_seeds or [])]):
        check(opts, cls.key, args.set, seed)
    return space, added, forget_seed


def _optuna(args, opts: api.Options, cls, study: tuple, extra: list[str], out: Path) -> int:
    space, added, forget_seed = study
    name = optuna_search.study_name(cls.key, args.preset, forget_seed, args.runs, args.set) + "".join(
        f"+{k}" for k in sorted(added)
    )
    if opts.bank == "subsets":  # another reference: its own study (`-- --bank subsets --bank-size M`)
        name += f"-subsets{opts.bank_size or 'default'}"
    folder = out / optuna_search.folder_name(name)
    db = out / "optuna.db"
    print(
        f"optuna: {cls.key} on preset {args.preset}, forget seed {forget_seed}, {args.runs} runs per trial, "
        f"{args.optuna} trials (TPE, sampler seed {args.sampler_seed}); searching "
        + ", ".join(f"{k} {v}" for k, v in space.items())
        + (f"; fixed {' '.join(args.set)}" if args.set else ""),
        flush=True,
    )

    def run_trial(tokens, number):
        sets = [*args.set, *tokens]
        return evaluate(opts, cls.key, sets, folder / f"trial{number:04d}", forget_seed=forget_seed)

    def log(line):
        print(line, flush=True)

    interrupted = False
    try:
        study = optuna_search.search(
            cls,
            space,
            args.optuna,
            db,
            name,
            run_trial,
            sampler_seed=args.sampler_seed,
            attrs={"fixed": args.set, "extra": extra},
            log=log,
            fatal=(api.UsageError, OSError),  # an OSError is the file system's (a full disk), not the trial's
        )
    except KeyboardInterrupt:
        interrupted = True
        study = optuna_search.open_study(db, name, args.sampler_seed)
    csv, png = optuna_search.write_outputs(study, space, folder, title=name)
    print(f"\nwrote {csv}, {png}; study {name!r} in {db}")
    if interrupted:
        print(
            "interrupted: the trial in progress is marked failed; run the same command again to resume the search",
            file=sys.stderr,
        )
        return 130
    done = optuna_search.complete(study)
    best = study.best_trial
    tokens = [*args.set, *(optuna_search.set_token(k, best.params[k]) for k in space)]
    n_failed = sum("reason" in t.user_attrs for t in done)
    print(
        f"best of {len(done)} trials ({n_failed} failed, scored 0): trial {best.number}, final score "
        f"{best.value:.4f}"
        + (f", F {best.user_attrs['F']:.4f}" if "F" in best.user_attrs else "")
        + (f", {100 * best.user_attrs['ratio']:.1f}% of a retraining" if best.user_attrs.get("ratio") else "")
    )
    print("best params: " + ", ".join(f"{k}={best.params[k]!r}" for k in space))
    write_json(
        folder / "best.json",
        {
            "method": cls.key,
            "preset": args.preset,
            "forget_seed": forget_seed,
            "runs": args.runs,
            "trials": len(done),
            "failed": n_failed,
            "sampler_seed": args.sampler_seed,
            "fixed": args.set,
            "tokens": tokens,
            "trial": best.number,
            "final_score": best.value,
            "study": name,
            "budget": f"{args.optuna} trials x {args.runs} runs, trial 0 the published values",
            "commit": _commit(),
        },
    )
    line = f"--set {optuna_search.set_line(tokens)}"
    print(
        f"reproduce: python main.py -m {cls.key} --preset {args.preset} --runs {args.runs} "
        f"--forget-seed {forget_seed} {line}"
    )
    if args.score_seeds:
        _score_seeds(args, opts, cls.key, tokens, folder, forget_seed)
    return 0


def _commit() -> str | None:
    """The checkout's commit (None outside a git checkout): which code a record was tuned on."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _score_seeds(args, opts: api.Options, key, tokens, folder, tuning_seed) -> None:
    """The best parameters scored on each of `args.score_seeds` (each forget set its own bank)."""
    if tuning_seed in args.score_seeds:
        print(f"note: forget seed {tuning_seed} is the tuning seed; its score is not a held-out one", file=sys.stderr)
    rows = []
    for s in args.score_seeds:
        print(f"scoring the best on forget seed {s}", flush=True)
        res = evaluate(opts, key, tokens, folder / f"best-forget{s}", forget_seed=s)
        d = res["record"] or {}
        rows.append(
            {
                "forget_seed": s,
                "final_score": d.get("final_score", float("nan")),
                "F": d.get("F"),
                "ratio": d.get("time_ratio"),
                "rejected": d.get("rejected"),
                "reason": res["reason"],
            }
        )
    table = pd.DataFrame(rows)
    write_text(folder / "held_out.csv", table.to_csv(index=False))
    print(table.to_markdown(index=False, floatfmt=".4f"))
    print(
        f"mean final score over forget seeds {', '.join(map(str, args.score_seeds))}: "
        f"{table['final_score'].mean():.4f}; wrote {folder / 'held_out.csv'}"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--method", required=True)
    p.add_argument("--grid", nargs="*", default=None, metavar="KEY=V1,V2")
    p.add_argument(
        "--space",
        nargs="*",
        default=[],
        metavar="FIELD=KIND:LOW:HIGH",
        help="--optuna: also search these ranges (kind float, log or int), e.g. time_factor=float:0.3:1",
    )
    p.add_argument(
        "--points",
        nargs="*",
        default=None,
        metavar="K=V;K=V",
        help="one configuration per item instead of a grid's product ('' = the defaults): an ablation",
    )
    p.add_argument(
        "--optuna",
        type=int,
        default=None,
        metavar="N",
        help="TPE search over the method's search_space until the study has N complete trials",
    )
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="fixed overrides for every point")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--runs", type=int, default=8)
    p.add_argument(
        "--forget-seed",
        type=int,
        default=None,
        help="forget set to score on (--optuna: the tuning forget seed; default 1)",
    )
    p.add_argument("--sampler-seed", type=int, default=0, help="--optuna: seed of the TPE sampler (default 0)")
    p.add_argument(
        "--score-seeds",
        type=int,
        nargs="+",
        default=None,
        metavar="S",
        help="--optuna: score the best parameters on these (held-out) forget seeds afterwards",
    )
    p.add_argument("--out", default="results/sweeps")
    args, extra = p.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    if args.grid is not None and args.points is not None:
        p.error("--grid and --points are exclusive")
    if args.optuna is not None and (args.grid is not None or args.points is not None):
        p.error(
            "--optuna and --grid are exclusive: a grid lists its points, a search draws them from the "
            "method's search_space"
        )
    if args.optuna is not None and args.optuna < 1:
        p.error(f"--optuna N needs N >= 1 (the total number of complete trials), got {args.optuna}")
    if args.optuna is None and (args.score_seeds or args.sampler_seed):
        p.error("--score-seeds and --sampler-seed go with --optuna")
    try:
        cls = methods.get_method(args.method)
        opts = sweep_options(args, extra)
        if args.optuna is not None:
            plan = _study_space(args, opts, cls)
        else:
            args.grid = args.grid or []
            plan = _grid_points(args, opts, cls.key)
    except ValueError as exc:  # api.UsageError included: bad input, found before any configuration runs
        p.error(str(exc))
    out = Path(args.out) / args.preset / cls.key
    try:
        check_outputs((out, "--out"))
        if args.optuna is not None:
            return _optuna(args, opts, cls, plan, extra, out)
        return _grid(args, opts, cls.key, plan, out)
    except api.UsageError as exc:  # (checked above; never a failed trial scored 0)
        p.error(str(exc))
    except optuna_search.StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the trial in progress is marked failed and runs again on the same command
        print(report.os_error(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
