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

The command line of the evaluation API (eval/harness/api/): flags in, API calls, reports out
(eval/harness/report.py); the API's UsageError becomes a usage message (exit 2).
"""

import argparse
import dataclasses
import sys
import warnings

from tqdm.auto import tqdm

from data.cifar10 import DataError
from data.presets import FORGET_SETS, PRESETS
from eval.harness import api, report
from eval.scoring import METRICS
from notebook_utils import NotebookError


def get_args_parser(add_help: bool = True, prog: str | None = None) -> argparse.ArgumentParser:
    desc = "Machine-unlearning starter kit: score a method like the NeurIPS 2023 competition."
    p = argparse.ArgumentParser(prog=prog, description=desc, add_help=add_help)
    a = p.add_argument
    a("-m", "--method", help="method key or alias, any case (see --list)")
    a("-p", "--phase", choices=("dev", "test"), default="dev", help="dev: score here (default); test: Kaggle notebook")
    a("--preset", choices=sorted(PRESETS), help="benchmark preset (default: full with a GPU, cpu without)")
    a("--list", action="store_true", help="list the registered methods and exit")
    a("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override hyperparameters, e.g. --set epochs=3 lr=0.01")
    a("--seed", type=int, default=0, help="base seed of the runs' seed tree, in [0, 2**63) (default 0)")
    a("--runs", type=int, help="unlearning runs (default: the preset's)")
    a("--retrained", type=int, help="retrained models in the bank (default: the preset's)")
    fg = p.add_argument_group("forget set (default: the preset's, a random 10%; each choice is its own bank)")
    f = fg.add_argument
    f("--forget-seed", type=int, help="seed of the random forget draw (default: 1)")
    f(
        "--forget-seeds",
        metavar="S1,S2,...",
        help="with --leaderboard: one board per random forget set drawn with these seeds (each its own bank), "
        "then the rankings across them (mean, spread, ranks, Kendall's tau) in results/<preset>-forget-seeds-*/",
    )
    f("--forget-frac", type=float, help="fraction of the training subset to forget")
    f("--forget-size", type=int, help="number of training images to forget")
    f("--forget-class", type=int, metavar="K", help="class-wise forgetting: every training image of class K")
    f(
        "--forget-set",
        choices=FORGET_SETS,
        help="random (default) or chosen by memorization (RUM, estimated first with the preset's half-subset "
        "models, cached): mem-high, mem-mid, mem-low, mem-mix",
    )
    bk = p.add_argument_group("reference bank (README, 'One bank for every forget set')").add_argument
    bk(
        "--bank",
        choices=("exact", "subsets"),
        help="exact (default): models retrained without this forget set, one bank per forget set; subsets: one bank "
        "of models each trained without a random part, the reference for every random forget set of this fraction",
    )
    bk("--bank-size", type=int, metavar="M", help="--bank subsets: its models (default 160 on cpu: 16 per example)")
    bk(
        "--export-bank",
        metavar="FILE",
        help="write the (complete) bank these flags name to one archive with a manifest of checksums, to share",
    )
    bk(
        "--import-bank",
        metavar="FILE",
        help="install a bank archive under --home, after checking every file and its key against this checkout",
    )
    a(
        "--requests",
        type=int,
        metavar="K",
        help="with -m: the forget set as K requests in turn, scored after each against models retrained "
        "without the requests so far (K-1 extra banks); results/<preset>/<method>.requests-K.*",
    )
    a(
        "--metric",
        choices=METRICS,
        default="official",
        help="F in F x RA ratio x TA ratio: official (the organizers' scorer, default), mlrc (MLRC-Bench's "
        "variant), ulira (1 - 2|U-LiRA accuracy - 0.5|), klom (mean over forget examples of a KLoM lower bound "
        "on 1 - total variation); ToW, U-LiRA and KLoM are always reported",
    )
    a("--bootstrap", type=int, default=20, help="bootstrap resamples for the score's spread (default 20; 0: none)")
    a("--dict-batches", action="store_true", help="Kaggle-style {'image', 'age_group'} batches (on for kaggle*)")
    a("--data-root", help="folder holding cifar-10-batches-py (default: $UNLEARN_DATA or ./data)")
    a("--home", help="artifacts folder for banks and runs (default: $UNLEARN_HOME or ./artifacts)")
    a("--results-dir", default="results", help="where results go (default ./results)")
    a("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")
    a("--quiet", action="store_true", help="no progress bars")
    k = p.add_argument_group("Kaggle test phase (-p test)").add_argument
    k("--submissions-dir", default="submissions", help="where -p test writes <method>/ (default ./submissions)")
    k("--kaggle-user", help="Kaggle user name for the kernel id (default: from the Kaggle config)")
    k("--machine-shape", help="Kaggle accelerator, e.g. NvidiaTeslaT4 (default: Kaggle's, a P100)")
    k("--push", action="store_true", help="push the notebook with the kaggle CLI (installed and authenticated)")
    k(
        "--rehearse",
        action="store_true",
        help="run the notebook here on a Kaggle-layout copy of a test-phase preset (default kaggle with a GPU, "
        "kaggle-cpu without), score its submission.zip and compare it with -m NAME on that preset",
    )
    k("--checkpoints", type=int, help="checkpoints the rehearsal makes (default: the preset's runs)")
    x = p.add_argument_group("scale-out (-m and --leaderboard; README, 'Scaling out')").add_argument
    x("--workers", type=int, metavar="N", help="bank models and runs in N local processes, sharing the threads")
    x(
        "--ray",
        nargs="?",
        const="auto",
        metavar="ADDRESS",
        help="run the tasks on Ray: auto (bare flag) joins the running cluster, local starts one here, or a "
        "ray:// address (pip install -r requirements-ray.txt)",
    )
    x("--cpus-per-task", type=float, default=1, help="--ray: CPUs each task asks for (default 1)")
    x("--gpus-per-task", type=float, default=0, help="--ray: GPUs per task, a fraction shares one (default 0)")
    x("--shard", metavar="I/N", help="do shard I of N of the tasks and stop; the same command without it scores")
    x("--dry-run", action="store_true", help="list the tasks that would run, and stop")
    lb = p.add_argument_group("leaderboard").add_argument
    lb(
        "--leaderboard",
        nargs="*",
        metavar="NAME",
        help="these methods (default: all) on one preset and bank: results/<preset>/leaderboard.{csv,md}, plots",
    )
    a("--published", action="store_true", help="published defaults, not the preset's tuned record (benchmarks/tuned/)")
    lb(
        "--tuned",
        metavar="DIR",
        help="each method with the best values of its search under DIR (scripts/sweep.py --optuna N --out DIR; "
        "the others with their defaults); writes results/<preset>-tuned/",
    )
    return p


def options(args) -> api.Options:
    """The API options of the parsed flags (each Options field is the flag of the same name)."""
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(api.Options) if f.name != "scale_out"}
    scale = api.ScaleOut(args.workers, args.ray, args.cpus_per_task, args.gpus_per_task)
    return api.Options(**fields, scale_out=scale)


def _console(args) -> api.Console:
    return api.Console(
        info=lambda line: print(line, flush=True),
        warn=lambda line: print(line, file=sys.stderr, flush=True),
        progress=(lambda it, **kw: it) if args.quiet else tqdm,
    )


def _flags(a) -> None:
    """The flags that only make sense together, checked before any work."""
    if a.requests is not None and (a.leaderboard is not None or a.method is None or a.phase == "test"):
        raise api.UsageError("--requests scores one method's sequential requests: use it with -m NAME (dev phase)")
    if (a.workers or a.ray or a.shard or a.dry_run) and (a.requests is not None or a.phase == "test"):
        raise api.UsageError("--workers, --ray, --shard and --dry-run apply to -m NAME and --leaderboard (dev phase)")
    if a.requests is not None and a.bank == "subsets":
        raise api.UsageError("--requests scores against models retrained without each request so far: use --bank exact")
    if a.bank == "subsets" and a.phase == "test":
        raise api.UsageError("-p test rehearses the test phase against its exact bank: drop --bank subsets")
    if a.bank_size is not None and a.bank == "exact":
        raise api.UsageError("--bank-size sizes a subset bank: use it with --bank subsets")
    if a.forget_seeds is not None and a.leaderboard is None:
        raise api.UsageError("--forget-seeds compares leaderboards: use it with --leaderboard")
    if a.published and a.tuned is not None:
        raise api.UsageError("--published runs the published defaults and --tuned DIR a search's values: choose one")
    if a.set and a.leaderboard is not None:
        raise api.UsageError(
            "--set changes one method's values (-m NAME); a leaderboard runs each method's tuned record or its "
            "defaults (--published), or a search's best values (--tuned DIR)"
        )
    if a.tuned is not None and a.leaderboard is None:
        raise api.UsageError("--tuned gives a leaderboard's methods their tuned parameters: use it with --leaderboard")
    if a.export_bank and a.import_bank:
        raise api.UsageError("--export-bank and --import-bank: one at a time")
    if (a.export_bank or a.import_bank) and (a.leaderboard is not None or a.method is not None):
        raise api.UsageError("--export-bank and --import-bank move a bank; they run no method: drop -m / --leaderboard")
    if a.leaderboard is None and a.method is None and not (a.export_bank or a.import_bank):
        raise api.UsageError("choose a method with -m NAME (see --list)")


def _leaderboard(args, kw: dict) -> int:
    if args.shard or args.dry_run:
        outcomes = api.leaderboard_tasks(
            args.leaderboard, forget_seeds=args.forget_seeds, shard=args.shard, dry_run=args.dry_run, **kw
        )
        return max(1 if o.failed else 0 for o in outcomes)
    if args.forget_seeds is None:
        print(report.board(api.leaderboard(args.leaderboard, **kw)))
        return 0
    print(report.summary(api.forget_seed_study(args.leaderboard, args.forget_seeds, **kw).summary))
    return 0


def _test_phase(args, opts: api.Options, console: api.Console) -> int:
    sub = args.submissions_dir
    if args.rehearse:
        r = api.rehearse(
            args.method, args.set, options=opts, submissions_dir=sub, checkpoints=args.checkpoints, console=console
        )
        print(report.rehearsal(r.result, r.path))
        return 0 if r.ok else 1
    kaggle = {"kaggle_user": args.kaggle_user, "machine_shape": args.machine_shape, "push": args.push}
    for line in api.kaggle_submission(args.method, args.set, submissions_dir=sub, **kaggle).get("messages", []):
        print(line)
    return 0


def _method(args, kw: dict) -> int:
    try:
        if args.shard or args.dry_run:
            outcome = api.method_tasks(args.method, args.set, shard=args.shard, dry_run=args.dry_run, **kw)
            return 1 if outcome.failed else 0
        if args.requests is not None:
            record = api.evaluate_requests(args.method, args.set, args.requests, **kw)
            print(f"\n{report.requests_report(record.fields)}")
            print(f"\n{report.requests_written(record.path, record.path.with_suffix('.md'))}")
            return 0
        record = api.evaluate_method(args.method, args.set, **kw)
    except api.EvaluationFailed as exc:
        print(report.failed(exc, note_kept=args.requests is None), file=sys.stderr)
        return 1
    print(f"\n{report.method_report(record.fields)}")
    print(f"\n{report.method_written(record.path)}")
    return 0


def main(argv=None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = lambda msg, *a, **k: print(f"warning: {msg}", file=sys.stderr)
    if args.list:
        print(report.method_list())
        return 0
    try:
        opts, console = options(args), _console(args)
        opts.check(tasks=bool(args.workers or args.ray or args.shard or args.dry_run))
        _flags(args)
        if args.export_bank:
            manifest = api.export_bank(args.export_bank, options=opts, console=console)
            print(report.bank_exported(args.export_bank, manifest))
            return 0
        if args.import_bank:
            print(
                report.bank_imported(args.import_bank, api.import_bank(args.import_bank, options=opts, console=console))
            )
            return 0
        if args.leaderboard is not None:
            return _leaderboard(args, dict(options=opts, tuned=args.tuned, published=args.published, console=console))
        if args.phase == "test":
            return _test_phase(args, opts, console)
        return _method(args, dict(options=opts, published=args.published, console=console))
    except api.UsageError as exc:
        parser.error(str(exc))
    except (DataError, NotebookError, api.ExecutorError) as exc:
        print(report.error(exc), file=sys.stderr)
        return 1
    except api.RehearsalFailed as exc:
        print(report.rehearsal_failed(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{report.INTERRUPTED}", file=sys.stderr)
        return 130
    except OSError as exc:  # the file system, not the method (a method's own errors fail its run)
        print(report.os_error(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
