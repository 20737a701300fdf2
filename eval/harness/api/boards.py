"""Many methods on one preset and bank (`--leaderboard`), once per forget seed with a summary of the rankings
across them (`--forget-seeds`), or only their tasks (`--shard`, `--dry-run`). Each method runs its committed
tuned record by default, the best values of a search with `tuned=DIR`, its defaults with `published`."""

from dataclasses import dataclass
from pathlib import Path

import methods
from eval.harness import report
from eval.harness.leaderboard import leaderboard_jobs, run_leaderboard
from eval.harness.seed_study import summary_tag, write_summary
from eval.harness.tuned_records import notes

from .errors import UsageError
from .options import DEFAULTS, QUIET, Console, Options, check_home, check_outputs, resolve
from .values import board_values, method_keys
from .work import TaskOutcome, distribute, parse_shard, splits_and_bank

PUBLISHED_NOTE = "**Published defaults** for every method (`--published`), not the preset's tuned records."


@dataclass(frozen=True)
class BoardJob:
    """A leaderboard, checked: the method `names` and the tuned values they run (None: the defaults)."""

    names: list
    values: dict | None
    tuned_dir: str | None
    published: bool

    def introduce(self, console: Console) -> None:
        if self.tuned_dir is not None:
            console.info(report.tuned_line(self.tuned_dir, self.values, method_keys(self.names)))


@dataclass
class Study:
    """A forget-seed study: one leaderboard per seed (`leaderboard`'s answers) and the summary across them
    (`seed_study.write_summary`'s answer)."""

    boards: list
    summary: dict


def prepare_leaderboard(names=None, *, options: Options = DEFAULTS, tuned=None, published: bool = False) -> BoardJob:
    """Check the names (default: every registered method; a method file that fails to import becomes a failed
    row), the options and the tuned values; UsageError before any work."""
    options.check()
    if published and tuned is not None:
        raise UsageError("--published runs the published defaults and --tuned DIR a search's values: choose one")
    names = list(names or [*methods.available_methods(), *methods.broken_methods()])
    for name in names:
        try:
            methods.get_method(name)
        except ValueError as exc:
            if name.lower() not in methods.broken_methods():
                raise UsageError(str(exc)) from None
    preset = resolve(options)[1]
    return BoardJob(names, board_values(names, preset.name, tuned, published), tuned, published)


def parse_forget_seeds(seeds, options: Options = DEFAULTS) -> list[int]:
    """'1,2,3' (or [1, 2, 3]) as distinct forget seeds, at least two; UsageError otherwise, or when `options`
    fixes the forget set another way."""
    text = seeds if isinstance(seeds, str) else ",".join(str(s) for s in seeds)
    for flag, given in (
        ("--forget-seed", options.forget_seed is not None),
        ("--forget-class", options.forget_class is not None),
        ("--forget-set", options.forget_set not in (None, "random")),
    ):
        if given:
            raise UsageError(f"--forget-seeds draws one random forget set per seed: it cannot be combined with {flag}")
    out = []
    for part in text.split(","):
        try:
            seed = int(part.strip())
        except ValueError:
            raise UsageError(
                f"--forget-seeds takes comma-separated integers, e.g. 1,2,3; got {part.strip()!r} in {text!r}"
            ) from None
        if not 0 <= seed < 2**32:
            raise UsageError(f"--forget-seeds: every seed must be in [0, 2**32), got {seed}")
        if seed in out:
            raise UsageError(f"--forget-seeds: seed {seed} is given twice")
        out.append(seed)
    if len(out) < 2:
        raise UsageError(f"--forget-seeds compares rankings: give at least two seeds, got {text!r}")
    return out


def _setup(job: BoardJob, options: Options):
    """(device, preset, overrides, run_leaderboard's extra arguments) of one board; its folders checked."""
    device, preset = resolve(options)
    check_home(options, (options.results_dir, "--results-dir"))
    overrides, extra = {}, {}
    if job.values is not None:
        overrides = {k: list(t.tokens) for k, t in job.values.items()}
        extra = {"notes": notes(job.values, method_keys(job.names), preset.forget_seed)}
        if job.tuned_dir is not None:
            extra["out_tag"] = f"{preset.tag}-tuned"
    if job.published:
        extra = {"out_tag": f"{preset.tag}-published", "notes": [PUBLISHED_NOTE]}
    return device, preset, overrides, extra


def _jobs(job: BoardJob, options: Options, preset, overrides: dict) -> list:
    return leaderboard_jobs(job.names, seed=options.seed, dict_batches=options.batches(preset), overrides=overrides)


def _board(job: BoardJob, options: Options, console: Console) -> dict:
    device, preset, overrides, extra = _setup(job, options)
    scaled = options.scale_out.active
    if scaled:
        distribute(options, preset, device, _jobs(job, options, preset, overrides), console)
    splits, bank = splits_and_bank(options, preset, device, console, scaled=scaled)
    out = run_leaderboard(
        job.names,
        preset,
        splits,
        bank,
        results_dir=Path(options.results_dir),
        seed=options.seed,
        metric=options.metric,
        bootstrap=options.bootstrap,
        progress=console.progress,
        dict_batches=options.batches(preset),
        on_wait=console.on_wait,
        overrides=overrides,
        **extra,
    )
    return {**out, "forget_seed": preset.forget_seed, "preset": preset, "bank": bank.key}


def leaderboard(
    names=None, *, options: Options = DEFAULTS, tuned=None, published: bool = False, console: Console = QUIET
) -> dict:
    """Evaluate `names` (plus `none` and `retrain`) on one preset and bank; write results/<tag>/leaderboard.{csv,md}
    and its plots (<tag>-tuned/ with `tuned`, <tag>-published/ with `published`).

    Returns `run_leaderboard`'s answer (table, markdown, files, dir) with the board's forget_seed, preset and bank
    key. Raises UsageError before any work, DataError, ExecutorError; a failing method is a failed row."""
    job = prepare_leaderboard(names, options=options, tuned=tuned, published=published)
    _setup(job, options)
    job.introduce(console)
    return _board(job, options, console)


def _study_dir(job: BoardJob, options: Options, seeds: list[int]) -> Path:
    """results/<preset>-forget-seeds-S1-S2.../ (+ -tuned, -published); every seed's preset checked."""
    presets = [resolve(options.with_forget_seed(s))[1] for s in seeds]
    tag = summary_tag(presets[0], seeds) + ("-tuned" if job.tuned_dir else "") + ("-published" if job.published else "")
    out_dir = Path(options.results_dir) / tag
    check_outputs((out_dir, "--results-dir"))
    return out_dir


def forget_seed_study(
    names,
    seeds,
    *,
    options: Options = DEFAULTS,
    tuned=None,
    published: bool = False,
    console: Console = QUIET,
) -> Study:
    """One `leaderboard` of `names` (None: every method) per random forget set drawn with `seeds` ('1,2,3' or a
    list; each its own bank, folder and cached rows; each
    board's text goes to console.info as it finishes), then the summary of the rankings across them in
    results/<preset>-forget-seeds-S1-S2.../."""
    job = prepare_leaderboard(names, options=options, tuned=tuned, published=published)
    seeds = parse_forget_seeds(seeds, options)
    out_dir = _study_dir(job, options, seeds)
    job.introduce(console)
    boards = []
    for seed in seeds:
        console.info(report.forget_seed_header(seed, len(boards) + 1, len(seeds)))
        board = _board(job, options.with_forget_seed(seed), console)
        console.info(report.board(board))
        boards.append(board)
    preset = resolve(options.with_forget_seed(seeds[0]))[1]
    return Study(boards, write_summary(boards, out_dir, preset=preset, metric=options.metric, seed=options.seed))


def leaderboard_tasks(
    names=None,
    *,
    forget_seeds=None,
    options: Options = DEFAULTS,
    tuned=None,
    published: bool = False,
    shard: str | None = None,
    dry_run: bool = False,
    console: Console = QUIET,
) -> list[TaskOutcome]:
    """The missing models and runs of `leaderboard` (of every board of a forget-seed study) as tasks on
    `options.scale_out`'s executor, without scoring: `shard` 'i/n' does that slice, `dry_run` lists them."""
    sliced = parse_shard(shard)
    options.check(tasks=True)
    job = prepare_leaderboard(names, options=options, tuned=tuned, published=published)
    per_board = [options]
    if forget_seeds is not None:
        seeds = parse_forget_seeds(forget_seeds, options)
        _study_dir(job, options, seeds)
        per_board = [options.with_forget_seed(s) for s in seeds]
    _setup(job, per_board[0])
    job.introduce(console)
    outcomes = []
    for i, board_options in enumerate(per_board):
        if forget_seeds is not None:
            console.info(report.forget_seed_header(board_options.forget_seed, i + 1, len(per_board)))
        device, preset, overrides, _ = _setup(job, board_options)
        jobs = _jobs(job, board_options, preset, overrides)
        outcomes.append(distribute(board_options, preset, device, jobs, console, shard=sliced, dry_run=dry_run))
    return outcomes
