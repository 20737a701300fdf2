"""The shared, cached work under every evaluation: the preset's splits and bank, built or reused in this
process, and the missing models and runs as tasks (`eval/harness/tasks.py`) on worker processes or Ray,
a shard of them, or their list (--workers, --ray, --shard, --dry-run)."""

from dataclasses import dataclass, field

from eval.harness import report
from eval.harness import tasks as T
from eval.harness.executors import InProcess, WorkerDied, execute, make_executor
from eval.harness.forget_sets import build_splits
from eval.harness.reference_bank import make_bank

from .errors import ExecutorError, UsageError
from .options import Console, Options


def splits_and_bank(options: Options, preset, device: str, console: Console, scaled: bool = False):
    """(splits, bank) of `preset` with its retrained models, built or reused; `scaled`: the tasks built them
    (their context in this process holds the splits already)."""
    info = {}
    if scaled:
        splits = T.Context(preset, options.data_root, options.home, device).splits()
    else:
        splits = build_splits(
            preset,
            options.data_root,
            home=options.home,
            device=device,
            progress=console.progress,
            on_wait=console.on_wait,
            info=info,
        )
    if info:
        console.info(report.memorization_line(info))
    try:
        bank = make_bank(preset, splits, home=options.home, data_root=options.data_root, device=device)
    except ValueError as exc:  # a subset bank asked to serve a forget set it cannot
        raise UsageError(str(exc)) from None
    missing = bank.missing(preset.n_retrained)
    if missing:
        total = 1 + len(bank.retrained_names(preset.n_retrained))
        console.info(report.bank_cost(bank.label, len(missing), total, bank.seconds_per_model()))
    bank.ensure(preset.n_retrained, progress=console.progress, on_wait=console.on_wait)
    return splits, bank


@dataclass
class TaskOutcome:
    """What one pass over an evaluation's tasks did: `failed` [(label, reason)], `complete` whether every task
    it was asked for ran (False for a dry run, or a shard waiting on other shards' memorization models)."""

    failed: list = field(default_factory=list)
    complete: bool = True


def parse_shard(shard: str | None):
    """'i/n' -> (i, n), or None; UsageError on anything else."""
    if shard is None:
        return None
    try:
        return T.parse_shard(shard)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _run(todo, executor, console: Console) -> list:
    try:
        results = execute(todo, executor, console.progress)
    except WorkerDied as exc:
        raise ExecutorError(str(exc)) from exc
    failed = [(r.label, r.reason) for r in results if not r.ok]
    for label, reason in failed:
        console.warn(report.task_failed(label, reason))
    return failed


def distribute(
    options: Options, preset, device: str, jobs, console: Console, *, shard=None, dry_run: bool = False
) -> TaskOutcome:
    """The missing memorization models, bank models and runs of `jobs` [(cls, params, seed, dict_batches)] on
    `options.scale_out`'s executor; `shard` (i, n): only that slice of every task; `dry_run`: list them.

    Raises ExecutorError when the executor cannot start. A task that failed is reported (console.warn) and
    left for the scoring call, which tries it again in this process."""
    sc = options.scale_out
    ctx = T.Context(preset, options.data_root, options.home, device)
    where = f"shard {shard[0]}/{shard[1]} of {preset.tag}" if shard else preset.tag
    try:
        executor = (
            None
            if dry_run
            else make_executor(sc.workers, sc.ray, cpus_per_task=sc.cpus_per_task, gpus_per_task=sc.gpus_per_task)
        )
    except Exception as exc:  # noqa: BLE001 (no Ray, no cluster at the address, ...: say so, do nothing)
        raise ExecutorError(report.executor_failed(exc)) from exc
    try:
        mem = T.mem_tasks(ctx, missing_only=shard is None)
        mem = T.shard(mem, *shard) if shard else mem
        if dry_run:
            console.info(report.task_list(where, "memorization", [t.label for t in mem]))
            if T.mem_tasks(ctx):
                console.info(report.TASKS_UNKNOWN)
                return TaskOutcome(complete=False)
        else:
            failed = _run(mem, executor, console)
            if shard and T.mem_tasks(ctx):
                console.info(report.memorization_pending(where))
                return TaskOutcome(failed, complete=False)
        todo = T.plan(ctx, jobs, missing_only=shard is None)
        todo = T.shard(todo, *shard) if shard else todo
        if dry_run:
            console.info(report.task_list(where, "bank and runs", [t.label for t in todo]))
            return TaskOutcome(complete=False)
        failed = _run(todo, executor, console)
        if shard:
            console.info(report.shard_done(where, len(failed)))
        return TaskOutcome(failed)
    finally:
        if executor is not None and not isinstance(executor, InProcess):
            executor.close()
