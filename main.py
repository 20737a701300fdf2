"""Score an unlearning method the way the NeurIPS 2023 Machine Unlearning Challenge does.

    python main.py -m my_method                 # cpu preset without a GPU, full preset with one
    python main.py -m sibl --set sparsity=0.95 T=30
    python main.py --list                       # the registered methods
    python main.py -m retrain --preset tiny --runs 4 --retrained 8
    python main.py --leaderboard --forget-seeds 1,2,3   # one leaderboard per forget set + a summary

Builds (or reuses) the preset's bank of one original and N retrained models, runs the method R
times from the original, and prints forgetting quality F, the retain/test accuracy ratios against
the retrained models, the final score and the runtime against the competition's efficiency rule.
Writes results/<preset>/<method>.json and a .npz of the raw statistics beside it.
"""

import argparse
import dataclasses
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import methods
from data.cifar10 import DataError
from data.presets import FORGET_SETS, PRESETS, get_preset
from eval.harness import report
from eval.harness.bank import Bank, artifacts_home
from eval.harness.forget_sets import build_splits
from eval.harness.row import References, summarize_runs
from eval.harness.runs import evaluate_runs
from eval.harness.seeds import SEED_LIMIT
from eval.harness.unlearn import MethodFailed
from eval.io import check_writable, file_lock, remove_orphans, write_json, write_npz, write_text
from eval.scoring import METRICS


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Machine-unlearning starter kit: score a method like the NeurIPS 2023 competition.",
        add_help=add_help,
    )
    p.add_argument("-m", "--method", type=str, default=None, help="method key or alias, any case (see --list)")
    p.add_argument(
        "-p",
        "--phase",
        choices=("dev", "test"),
        default="dev",
        help="dev: score locally on CIFAR-10 (default); test: make the Kaggle submission notebook",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="benchmark preset (default: full with a GPU, cpu without)",
    )
    p.add_argument("--list", action="store_true", help="list the registered methods and exit")
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override method hyperparameters, e.g. --set epochs=3 lr=0.01",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="base seed of the unlearning runs' seed tree, in [0, 2**63) (default 0)"
    )
    p.add_argument("--runs", type=int, default=None, help="unlearning runs (default: the preset's)")
    p.add_argument("--retrained", type=int, default=None, help="retrained models in the bank (default: the preset's)")
    f = p.add_argument_group("forget set (default: the preset's, a random 10%%; each choice is its own bank)")
    f.add_argument("--forget-seed", type=int, default=None, help="seed of the random forget draw (default: 1)")
    f.add_argument(
        "--forget-seeds",
        type=str,
        default=None,
        metavar="S1,S2,...",
        help="with --leaderboard: one leaderboard per random forget set drawn with these seeds (each "
        "its own bank), then a summary of the rankings across them (mean, spread, ranks, Kendall's "
        "tau) in results/<preset>-forget-seeds-S1-S2-.../",
    )
    f.add_argument("--forget-frac", type=float, default=None, help="fraction of the training subset to forget")
    f.add_argument("--forget-size", type=int, default=None, help="number of training images to forget")
    f.add_argument(
        "--forget-class",
        type=int,
        default=None,
        metavar="K",
        help="class-wise forgetting: forget every training image of class K",
    )
    f.add_argument(
        "--forget-set",
        choices=FORGET_SETS,
        default=None,
        help="random (default) or the examples chosen by memorization (RUM): mem-high, mem-mid, mem-low, "
        "mem-mix; the evaluator estimates memorization first with the preset's half-subset models "
        "(cached; eval/harness/memorization.py)",
    )
    p.add_argument(
        "--requests",
        type=int,
        default=None,
        metavar="K",
        help="with -m: forget requests arriving over time: the forget set cut into K requests, the "
        "method run on them in turn, the model scored after each against models retrained "
        "without the requests so far (K-1 extra banks); results/<preset>/<method>.requests-K.*",
    )
    p.add_argument(
        "--metric",
        choices=METRICS,
        default="official",
        help="what F in F x RA ratio x TA ratio is: official: the organizers' scorer (default); "
        "mlrc: MLRC-Bench's simpler variant; ulira: 1 - 2|U-LiRA accuracy - 0.5|; klom: the mean "
        "over forget examples of a KLoM-based lower bound on 1 - total variation (README, "
        "'How the score is computed'). ToW, U-LiRA and KLoM are reported whatever the choice",
    )
    p.add_argument(
        "--bootstrap", type=int, default=20, help="bootstrap resamples for the score's spread (default 20; 0 disables)"
    )
    p.add_argument(
        "--dict-batches",
        action="store_true",
        help="feed Kaggle-style {'image', 'age_group'} dict batches instead of tuples "
        "(always on for the kaggle* presets)",
    )
    p.add_argument(
        "--data-root",
        type=str,
        default=None,
        help="folder holding cifar-10-batches-py (default: $UNLEARN_DATA or ./data)",
    )
    p.add_argument(
        "--home",
        type=str,
        default=None,
        help="artifacts folder for banks and runs (default: $UNLEARN_HOME or ./artifacts)",
    )
    p.add_argument("--results-dir", type=str, default="results", help="where results go (default ./results)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    k = p.add_argument_group("Kaggle test phase (-p test)")
    k.add_argument(
        "--submissions-dir",
        type=str,
        default="submissions",
        help="where -p test writes submissions/<method>/ (default ./submissions)",
    )
    k.add_argument(
        "--kaggle-user",
        type=str,
        default=None,
        help="Kaggle user name for the kernel id (default: from the Kaggle config)",
    )
    k.add_argument(
        "--machine-shape",
        type=str,
        default=None,
        help="Kaggle accelerator, e.g. NvidiaTeslaT4 (default: Kaggle's, a P100)",
    )
    k.add_argument(
        "--push",
        action="store_true",
        help="push the notebook with the kaggle CLI (needs it installed and authenticated)",
    )
    k.add_argument(
        "--rehearse",
        action="store_true",
        help="run the generated notebook here on a Kaggle-layout copy of a test-phase preset "
        "(default kaggle with a GPU, kaggle-cpu without), score its submission.zip and compare "
        "it with -m NAME on the same preset",
    )
    k.add_argument(
        "--checkpoints",
        type=int,
        default=None,
        help="checkpoints the rehearsal makes (default: the preset's number of runs)",
    )
    x = p.add_argument_group("scale-out (-m and --leaderboard; README, 'Scaling out')")
    x.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="build bank models and unlearning runs in N local worker processes, each with its share of the threads",
    )
    x.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        default=None,
        metavar="ADDRESS",
        help="run the tasks on Ray: 'auto' (the default when the flag is bare) joins the running "
        "cluster, 'local' starts one on this machine, or a ray:// address (pip install -r "
        "requirements-ray.txt)",
    )
    x.add_argument("--cpus-per-task", type=float, default=1, help="--ray: CPUs each task asks for (default 1)")
    x.add_argument(
        "--gpus-per-task",
        type=float,
        default=0,
        help="--ray: GPUs each task asks for, a fraction shares one, e.g. 0.25 (default 0)",
    )
    x.add_argument(
        "--shard",
        type=str,
        default=None,
        metavar="I/N",
        help="do shard I of N of the tasks and stop (a Slurm array, a shell loop); the same command "
        "without --shard then gathers and scores",
    )
    x.add_argument("--dry-run", action="store_true", help="list the tasks that would run, and stop")
    lb = p.add_argument_group("leaderboard")
    lb.add_argument(
        "--leaderboard",
        nargs="*",
        default=None,
        metavar="NAME",
        help="evaluate these methods (default: all registered) on one preset and bank and write "
        "results/<preset>/leaderboard.{csv,md} and plots",
    )
    p.add_argument(
        "--published",
        action="store_true",
        help="run methods with their published defaults, not the preset's committed tuned record "
        "(benchmarks/tuned/<preset>/: used by default where one exists)",
    )
    lb.add_argument(
        "--tuned",
        default=None,
        metavar="DIR",
        help="run each method with the best parameters of its Optuna search under DIR (the best.json "
        "files of scripts/sweep.py --optuna N --out DIR; methods without one keep their "
        "defaults); writes results/<preset>-tuned/",
    )
    return p


def _commit() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _device_and_preset(parser, args, defaults=("full", "cpu")):
    """The device and the preset (with --runs/--retrained/--forget-*); `defaults`: with and without a GPU."""
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    device = (
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    try:
        preset = get_preset(args.preset or (defaults[0] if device == "cuda" else defaults[1]))
        preset = preset.with_counts(args.runs, args.retrained)
        return device, preset.with_forget(
            args.forget_seed, args.forget_frac, args.forget_size, args.forget_class, args.forget_set
        )
    except ValueError as exc:
        parser.error(str(exc))


def _check_outputs(parser, *folders) -> None:
    """Fail before any work if an output folder is a file or cannot be written."""
    for folder, what in folders:
        try:
            check_writable(folder, what)
        except OSError as exc:
            parser.error(str(exc))


def _progress(args):
    return (lambda it, **kw: it) if args.quiet else (lambda it, **kw: tqdm(it, **kw))


def _on_wait():
    print(
        "waiting: another process holds the lock of a model or run needed here; its result will be reused",
        file=sys.stderr,
        flush=True,
    )


def _bank(args, preset, device):
    info = {}
    if _scaling_out(args):  # the tasks' context (eval/harness/tasks.py) has built them already
        from eval.harness.tasks import Context

        splits = Context(preset, args.data_root, args.home, device).splits()
    else:
        splits = build_splits(
            preset, args.data_root, home=args.home, device=device, progress=_progress(args), on_wait=_on_wait, info=info
        )
    if info:
        print(
            f"memorization: {info['models']} half-subset models ({info['model_seconds']:.0f} s each), "
            f"per-example estimates in {info['estimates']}; forget set mean mem {info['forget_mem_mean']:.3f} "
            f"(training subset {info['all_mem_mean']:.3f})",
            flush=True,
        )
    bank = Bank(preset, splits, home=args.home, data_root=args.data_root, device=device)
    bank.ensure(preset.n_retrained, progress=_progress(args), on_wait=_on_wait)
    return splits, bank


def _scaling_out(args) -> bool:
    return bool(args.workers or args.ray or args.shard or args.dry_run)


def _list_tasks(where: str, stage: str, todo) -> None:
    print(f"{where}: {len(todo)} {stage} tasks would run")
    for task in todo:
        print(f"  {task.label}")


def _execute(args, todo, executor) -> list:
    """Run `todo` on `executor` with progress; print and return the failed results."""
    from eval.harness.executors import execute

    failed = [r for r in execute(todo, executor, _progress(args)) if not r.ok]
    for r in failed:
        print(f"FAILED {r.label}: {r.reason}", file=sys.stderr)
    return failed


def _scale_out(args, preset, device, jobs) -> int | None:
    """--workers / --ray / --shard / --dry-run: the evaluation's missing models and runs as tasks
    (eval/harness/tasks.py) on the chosen executor. Returns the exit code when the call ends here (--shard,
    --dry-run), None when the caller goes on to score (everything is cached by then; a task that failed is
    tried again in this process and reported the usual way)."""
    from eval.harness import tasks as T
    from eval.harness.executors import InProcess, make_executor

    ctx = T.Context(preset, args.data_root, args.home, device)
    sh = T.parse_shard(args.shard) if args.shard else None
    where = f"shard {sh[0]}/{sh[1]} of " if sh else ""
    try:
        executor = (
            None
            if args.dry_run
            else make_executor(
                args.workers, args.ray, cpus_per_task=args.cpus_per_task, gpus_per_task=args.gpus_per_task
            )
        )
    except Exception as exc:  # noqa: BLE001 (no Ray, no cluster at the address, ...: say so, do nothing)
        print(f"error: cannot start the executor: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    try:
        mem = T.mem_tasks(ctx, missing_only=sh is None)
        mem = T.shard(mem, *sh) if sh else mem
        if args.dry_run:
            _list_tasks(f"{where}{preset.tag}", "memorization", mem)
            if T.mem_tasks(ctx):
                print("  (the bank's and the runs' tasks are known once every memorization model exists)")
                return 0
        else:
            failed = _execute(args, mem, executor)
            if sh and T.mem_tasks(ctx):
                print(
                    f"{where}{preset.tag}: memorization models still missing (other shards); run the shards "
                    f"again once they exist: the bank's tasks depend on them",
                    flush=True,
                )
                return 1 if failed else 0
        todo = T.plan(ctx, jobs, missing_only=sh is None)
        todo = T.shard(todo, *sh) if sh else todo
        if args.dry_run:
            _list_tasks(f"{where}{preset.tag}", "bank and runs", todo)
            return 0
        failed = _execute(args, todo, executor)
        if sh:
            print(
                f"{where}{preset.tag}: done ({len(failed)} failed); run the command without --shard to gather "
                f"and score",
                flush=True,
            )
            return 1 if failed else 0
        return None
    finally:
        if executor is not None and not isinstance(executor, InProcess):
            executor.close()


def _test_phase(parser, args, overrides: dict) -> int:
    """-p test: write submissions/<method>/ (notebook + kernel-metadata.json), optionally push it or rehearse it."""
    from notebook_utils import NotebookError, write_submission

    _check_outputs(parser, (args.submissions_dir, "--submissions-dir"))
    if args.rehearse:
        return _rehearse(parser, args, methods.get_method(args.method), overrides)
    key = methods.get_method(args.method).key
    try:
        info = write_submission(
            key,
            overrides,
            Path(args.submissions_dir) / key,
            kaggle_user=args.kaggle_user,
            machine_shape=args.machine_shape,
            push=args.push,
        )
    except NotebookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in info.get("messages", []):
        print(line)
    return 0


def _rehearse(parser, args, cls, overrides: dict) -> int:
    """-p test --rehearse: run the notebook on a Kaggle-layout copy of a test-phase preset and score it."""
    from eval.harness.rehearsal import check_preset, rehearse_submission
    from notebook_utils import NotebookError, NotebookFailed

    device, preset = _device_and_preset(parser, args, defaults=("kaggle", "kaggle-cpu"))
    try:
        check_preset(preset)
    except ValueError as exc:
        parser.error(str(exc))
    n = args.checkpoints or preset.n_runs
    if n < 2:
        parser.error(f"--checkpoints must be at least 2 (the metric compares distributions), got {n}")
    if args.bootstrap < 1:
        parser.error("--rehearse compares 95% intervals: --bootstrap must be >= 1")
    out_dir = Path(args.submissions_dir) / cls.key / f"rehearsal-{preset.tag}"
    results = Path(args.results_dir) / preset.tag
    _check_outputs(
        parser,
        (artifacts_home(args.home), "artifacts folder (--home)"),
        (out_dir, "--submissions-dir"),
        (results, "--results-dir"),
    )
    print(f"rehearsal of {cls.key} on preset {preset.tag} ({preset.description}); {n} checkpoints", flush=True)
    try:
        splits, bank = _bank(args, preset, device)
        res = rehearse_submission(
            cls,
            overrides,
            preset.with_counts(runs=n),
            splits,
            bank,
            out_dir,
            seed=args.seed,
            metric=args.metric,
            bootstrap=args.bootstrap,
            progress=_progress(args),
            on_wait=_on_wait,
        )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except NotebookFailed as exc:
        print(f"REHEARSAL FAILED: {exc}\nthe executed notebook is in {out_dir}", file=sys.stderr)
        return 1
    except (NotebookError, MethodFailed) as exc:
        print(f"REHEARSAL FAILED: {exc}", file=sys.stderr)
        return 1
    write_json(results / f"{cls.key}.rehearsal.json", {k: v for k, v in res.items()})
    print(report.rehearsal(res, results / f"{cls.key}.rehearsal.json"))
    return 0 if res["agree"] and not res["problems"] else 1


def _forget_seeds(parser, args) -> list[int] | None:
    """--forget-seeds as a list of distinct seeds (None when not given); a parser error on bad input."""
    if args.forget_seeds is None:
        return None
    for flag, given in (
        ("--forget-seed", args.forget_seed is not None),
        ("--forget-class", args.forget_class is not None),
        ("--forget-set", args.forget_set not in (None, "random")),
    ):
        if given:
            parser.error(f"--forget-seeds draws one random forget set per seed: it cannot be combined with {flag}")
    seeds = []
    for part in args.forget_seeds.split(","):
        try:
            seed = int(part.strip())
        except ValueError:
            parser.error(
                f"--forget-seeds takes comma-separated integers, e.g. 1,2,3; got {part.strip()!r} "
                f"in {args.forget_seeds!r}"
            )
        if not 0 <= seed < 2**32:
            parser.error(f"--forget-seeds: every seed must be in [0, 2**32), got {seed}")
        if seed in seeds:
            parser.error(f"--forget-seeds: seed {seed} is given twice")
        seeds.append(seed)
    if len(seeds) < 2:
        parser.error(f"--forget-seeds compares rankings: give at least two seeds, got {args.forget_seeds!r}")
    return seeds


def _leaderboard(parser, args) -> int:
    """--leaderboard: every named method on the same preset and bank; with --forget-seeds, once per forget
    seed (exactly what --leaderboard --forget-seed S does), then the summary across them."""
    names = args.leaderboard or [*methods.available_methods(), *methods.broken_methods()]
    for name in names:
        try:
            methods.get_method(name)
        except ValueError as exc:
            if name.lower() not in methods.broken_methods():  # a broken file is reported as a failed row
                parser.error(str(exc))
    tuned = _tuned(parser, args, names)
    seeds = _forget_seeds(parser, args)
    if seeds is None:
        out = _one_leaderboard(parser, args, names, tuned)
        return 1 if out is None else out.get("stopped", 0)
    from eval.harness.forget_seeds import summary_tag, write_summary

    per_seed = [argparse.Namespace(**{**vars(args), "forget_seed": s}) for s in seeds]
    presets = [_device_and_preset(parser, a)[1] for a in per_seed]  # every seed checked before any work
    out_dir = Path(args.results_dir) / (
        summary_tag(presets[0], seeds) + ("-tuned" if args.tuned else "") + ("-published" if args.published else "")
    )
    _check_outputs(parser, (out_dir, "--results-dir"))
    boards = []
    for a in per_seed:
        print(f"\n=== forget seed {a.forget_seed} ({len(boards) + 1}/{len(seeds)}) ===", flush=True)
        out = _one_leaderboard(parser, a, names, tuned)
        if out is None:
            return 1
        boards.append(out)
    if any("stopped" in b for b in boards):  # --shard or --dry-run: nothing scored
        return max(b.get("stopped", 0) for b in boards)
    summary = write_summary(boards, out_dir, preset=presets[0], metric=args.metric, seed=args.seed)
    print(f"\n{summary['markdown']}")
    print(f"wrote {', '.join(str(p) for p in summary['files'])}")
    return 0


def _method_keys(names) -> list[str]:
    """The registry keys of `names` (aliases resolved), broken method files left out."""
    return [methods.get_method(n).key for n in names if n.lower() not in methods.broken_methods()]


def _records(parser, args, keys) -> dict:
    """{method: Tuned}: the committed tuned records of the preset (benchmarks/tuned/<preset>/) for `keys`;
    empty with --published, --tuned DIR or when the preset has none. Bad records refused before any work."""
    from eval.harness import tuned

    if args.published or args.tuned is not None or not tuned.RECORDS.is_dir():
        return {}
    try:
        found = tuned.load(tuned.RECORDS, _device_and_preset(parser, args)[1].name, keys)
        for key, t in found.items():
            methods.parse_overrides(methods.get_method(key), list(t.tokens))
    except ValueError as exc:
        parser.error(f"the committed record: {exc} (or run --published)")
    return found


def _with_record(parser, args, cls, overrides: dict) -> dict:
    """-m: the preset's committed record for `cls` (if any) under the --set `overrides`; says which values run."""
    record = _records(parser, args, [cls.key]).get(cls.key)
    if record is None:
        print(
            f"values: {cls.key}'s published defaults"
            + ("" if args.published else " (no tuned record for this preset)")
            + (f", --set {' '.join(args.set)}" if args.set else ""),
            flush=True,
        )
        return overrides
    print(
        f"values: the record {record.describe()} from {record.source}"
        + (f", --set {' '.join(args.set)} over it" if args.set else "")
        + " (--published: the defaults)",
        flush=True,
    )
    return {**methods.parse_overrides(cls, list(record.tokens)), **overrides}


def _tuned(parser, args, names) -> dict | None:
    """--tuned DIR: {method: Tuned} for the named methods, every token checked against its Params before
    any work; None without --tuned."""
    if args.tuned is None:
        return _records(parser, args, _method_keys(names)) or None
    from eval.harness import tuned

    keys = _method_keys(names)
    try:
        found = tuned.load(args.tuned, _device_and_preset(parser, args)[1].name, keys)
    except ValueError as exc:
        parser.error(str(exc))
    for key, t in found.items():
        try:
            methods.parse_overrides(methods.get_method(key), list(t.tokens))
        except ValueError as exc:
            parser.error(f"--tuned: {t.source}: {exc}")
    print(
        f"tuned parameters from {args.tuned}: {len(found)} of {len(keys)} methods"
        + (f" (defaults for {', '.join(k for k in keys if k not in found)})" if len(found) < len(keys) else ""),
        flush=True,
    )
    return found


def _one_leaderboard(parser, args, names, tuned: dict | None = None) -> dict | None:
    """One preset and bank (args.forget_seed's forget set): run_leaderboard's result with the seed, preset and
    bank key added, printed and written; None (the error printed) when the data is missing. `tuned`
    (`_tuned`'s answer to --tuned) gives methods their tuned values and the board its own folder."""
    from eval.harness.leaderboard import run_leaderboard

    device, preset = _device_and_preset(parser, args)
    _check_outputs(
        parser, (artifacts_home(args.home), "artifacts folder (--home)"), (args.results_dir, "--results-dir")
    )
    overrides, extra = {}, {}
    if tuned is not None:
        from eval.harness.tuned import notes

        overrides = {k: list(t.tokens) for k, t in tuned.items()}
        extra = {"notes": notes(tuned, _method_keys(names), preset.forget_seed)}
        if args.tuned is not None:
            extra["out_tag"] = f"{preset.tag}-tuned"
    if args.published:
        extra = {
            "out_tag": f"{preset.tag}-published",
            "notes": ["**Published defaults** for every method (`--published`), not the preset's tuned records."],
        }
    try:
        if _scaling_out(args):
            from eval.harness.leaderboard import leaderboard_jobs

            code = _scale_out(
                args,
                preset,
                device,
                leaderboard_jobs(
                    names, seed=args.seed, dict_batches=args.dict_batches or preset.dict_batches, overrides=overrides
                ),
            )
            if code is not None:
                return {"stopped": code}
        splits, bank = _bank(args, preset, device)
        out = run_leaderboard(
            names,
            preset,
            splits,
            bank,
            results_dir=Path(args.results_dir),
            seed=args.seed,
            metric=args.metric,
            bootstrap=args.bootstrap,
            progress=_progress(args),
            dict_batches=args.dict_batches or preset.dict_batches,
            on_wait=_on_wait,
            overrides=overrides,
            **extra,
        )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    print(out["markdown"])
    print(f"\nwrote {', '.join(str(p) for p in out['files'])}")
    return {**out, "forget_seed": preset.forget_seed, "preset": preset, "bank": bank.key}


def _write_result(out_dir: Path, key: str, record: dict, arrays: dict | None) -> Path:
    """Write <key>.json (+ .npz) on success, or <key>.failed.json on failure, keeping the last good result."""
    with file_lock(out_dir / f".{key}.lock"):
        names = (f"{key}.json", f"{key}.npz", f"{key}.failed.json")
        for name in names:
            remove_orphans(out_dir / name)
        if record["status"] != "ok":
            write_json(out_dir / f"{key}.failed.json", record)
            return out_dir / f"{key}.failed.json"
        write_npz(out_dir / f"{key}.npz", **arrays)
        write_json(out_dir / f"{key}.json", record)
        (out_dir / f"{key}.failed.json").unlink(missing_ok=True)
        return out_dir / f"{key}.json"


def _method_setup(parser, args, cls, overrides: dict):
    """-m NAME's device, preset, checked output folder, resolved params and batch format."""
    device, preset = _device_and_preset(parser, args)
    out_dir = Path(args.results_dir) / preset.tag
    _check_outputs(parser, (artifacts_home(args.home), "artifacts folder (--home)"), (out_dir, "--results-dir"))
    return device, preset, out_dir, cls.make_params(**overrides), args.dict_batches or preset.dict_batches


def _score_one(parser, args, cls, overrides: dict) -> int:
    """-m NAME: build or reuse the bank, run the method R times, print and write its score."""
    device, preset, out_dir, params, dict_batches = _method_setup(parser, args, cls, overrides)
    if "seed" in overrides:
        print(
            f"note: --set seed={overrides['seed']} gives every run the same seed; runs differing only by "
            f"loader order may score low (the scorer needs run-to-run randomness)",
            file=sys.stderr,
        )
    print(f"preset {preset.tag}: {preset.description}; forget set: {preset.forget_protocol}", flush=True)
    t0 = time.perf_counter()
    base = {
        "method": cls.key,
        "preset": preset.name,
        "tag": preset.tag,
        "forget": preset.forget_protocol,
        "params": dataclasses.asdict(params),
        "commit": _commit(),
    }
    try:
        if _scaling_out(args):
            code = _scale_out(args, preset, device, [(cls, params, args.seed, dict_batches)])
            if code is not None:
                return code
        splits, bank = _bank(args, preset, device)
        runs = evaluate_runs(
            cls,
            params,
            preset,
            splits,
            bank,
            seed=args.seed,
            dict_batches=dict_batches,
            progress=_progress(args),
            on_wait=_on_wait,
        )
        refs = References(bank, preset.n_retrained, splits.forget_y, splits.test_y)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except MethodFailed as exc:
        path = _write_result(out_dir, cls.key, {**base, "status": "failed", "reason": exc.reason}, None)
        kept = " (the previous result beside it is kept)" if (out_dir / f"{cls.key}.json").exists() else ""
        print(f"FAILED: {exc}\nwrote {path}{kept}", file=sys.stderr)
        return 1
    res, arrays = summarize_runs(
        runs, refs, valid_entry=cls.valid_entry, metric=args.metric, bootstrap=args.bootstrap, seed=args.seed
    )
    record = {
        **base,
        "status": "ok",
        "valid_entry": cls.valid_entry,
        "seed": args.seed,
        "dict_batches": dict_batches,
        "bank": {"key": bank.key, "dir": str(bank.dir)},
        "run_dir": runs["run_dir"],
        "run_times_s": runs["time_s"],
        "reference_retrain_s": runs["reference_retrain_s"],
        "run_logs": runs["logs"],
        **res,
        "torch": str(torch.__version__),
        "device": device,
        "wall_time_s": time.perf_counter() - t0,
    }
    print()
    print(report.method_report(record))
    path = _write_result(out_dir, cls.key, record, arrays)
    print(f"\n{report.method_written(path)}")
    return 0


def _score_requests(parser, args, cls, overrides: dict) -> int:
    """-m NAME --requests K: the forget set as K sequential requests, scored after each (eval/harness/requests.py)."""
    from eval.harness.requests import (
        evaluate_requests,
        make_bank_factory,
        plan_requests,
        requests_table,
        score_requests,
    )

    device, preset, out_dir, params, dict_batches = _method_setup(parser, args, cls, overrides)
    print(
        f"preset {preset.tag}: {preset.description}; forget set: {preset.forget_protocol}; "
        f"{args.requests} sequential requests",
        flush=True,
    )
    name = f"{cls.key}.requests-{args.requests}"
    base = {
        "method": cls.key,
        "preset": preset.name,
        "tag": preset.tag,
        "forget": preset.forget_protocol,
        "requests": args.requests,
        "params": dataclasses.asdict(params),
        "commit": _commit(),
    }
    try:
        splits, _ = _bank(args, preset, device)
        if args.requests > len(splits.forget_y):
            parser.error(f"--requests {args.requests}: the forget set has only {len(splits.forget_y)} examples")
        plan = plan_requests(
            splits,
            args.requests,
            make_bank_factory(preset, args.home, args.data_root, device, _progress(args), _on_wait),
        )
        per_request = evaluate_requests(
            cls,
            params,
            preset,
            plan,
            seed=args.seed,
            dict_batches=dict_batches,
            progress=_progress(args),
            on_wait=_on_wait,
        )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except MethodFailed as exc:
        path = _write_result(out_dir, name, {**base, "status": "failed", "reason": exc.reason}, None)
        print(f"FAILED: {exc}\nwrote {path}", file=sys.stderr)
        return 1
    rows = score_requests(cls, preset, plan, per_request, metric=args.metric, bootstrap=args.bootstrap, seed=args.seed)
    table = requests_table(rows)
    print(
        f"\nmethod {cls.key} · {args.requests} requests · {preset.n_runs} runs vs {preset.n_retrained} retrained "
        f"models per prefix · metric {args.metric}\n\n{table}"
    )
    path = _write_result(
        out_dir,
        name,
        {
            **base,
            "status": "ok",
            "seed": args.seed,
            "rows": rows,
            "banks": [b.key for b in plan.banks],
            "run_dir": per_request[0]["run_dir"],
        },
        {"final_scores": np.array([r["final_score"] for r in rows])},
    )
    write_text(out_dir / f"{name}.md", table + "\n")
    print(f"\nwrote {path} and {out_dir / (name + '.md')}")
    return 0


def _main(parser, args) -> int:
    if args.list:
        print(report.method_list())
        return 0
    if not 0 <= args.seed < SEED_LIMIT:
        parser.error(f"--seed must be in [0, 2**63), got {args.seed}")
    if args.bootstrap < 0:
        parser.error("--bootstrap must be >= 0")
    if args.requests is not None and (args.leaderboard is not None or args.method is None or args.phase == "test"):
        parser.error("--requests scores one method's sequential requests: use it with -m NAME (dev phase)")
    if args.requests is not None and args.requests < 1:
        parser.error(f"--requests must be >= 1, got {args.requests}")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if _scaling_out(args):
        from eval.harness.tasks import parse_shard

        if args.requests is not None or args.phase == "test":
            parser.error("--workers, --ray, --shard and --dry-run apply to -m NAME and --leaderboard (dev phase)")
        if args.workers and args.ray:
            parser.error("--workers and --ray are exclusive: Ray schedules its own workers")
        if args.cpus_per_task <= 0 or args.gpus_per_task < 0:
            parser.error("--cpus-per-task must be > 0 and --gpus-per-task >= 0")
        if args.shard is not None:
            try:
                parse_shard(args.shard)
            except ValueError as exc:
                parser.error(str(exc))
    if args.forget_seeds is not None and args.leaderboard is None:
        parser.error("--forget-seeds compares leaderboards: use it with --leaderboard")
    if args.published and args.tuned is not None:
        parser.error("--published runs the published defaults and --tuned DIR a search's values: choose one")
    if args.tuned is not None and args.leaderboard is None:
        parser.error("--tuned gives a leaderboard's methods their tuned parameters: use it with --leaderboard")
    if args.leaderboard is not None:
        return _leaderboard(parser, args)
    if args.method is None:
        parser.error("choose a method with -m NAME (see --list)")
    try:
        cls = methods.get_method(args.method)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        overrides = methods.parse_overrides(cls, args.set)
    except (ValueError, TypeError) as exc:
        parser.error(f"--set: {exc}")
    if args.phase != "test":
        overrides = _with_record(parser, args, cls, overrides)
    if args.phase == "test":
        return _test_phase(parser, args, overrides)
    if args.requests is not None:
        return _score_requests(parser, args, cls, overrides)
    return _score_one(parser, args, cls, overrides)


def main(argv=None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = lambda msg, *a, **k: print(f"warning: {msg}", file=sys.stderr)
    try:
        return _main(parser, args)
    except KeyboardInterrupt:
        print(f"\n{report.INTERRUPTED}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
