"""One method on one preset (`-m NAME`): its R runs from the bank's original, scored against the retrained
models, written as results/<tag>/<method>.json + .npz; or only its tasks (`--shard`, `--dry-run`)."""

import dataclasses
import subprocess
import time
from pathlib import Path

import torch

from eval.harness import report
from eval.harness.row import References, summarize_runs
from eval.harness.runs import evaluate_runs
from eval.harness.unlearn import MethodFailed

from .errors import EvaluationFailed
from .options import DEFAULTS, QUIET, Console, Options, check_home, check_outputs, resolve
from .records import Record, write_record
from .values import method_class, method_values
from .work import TaskOutcome, distribute, parse_shard, splits_and_bank

ROOT = Path(__file__).resolve().parents[3]


def commit() -> str | None:
    """The checkout's short commit (None outside a git checkout): which code a record was made with."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@dataclasses.dataclass(frozen=True)
class MethodJob:
    """A method's evaluation, resolved and checked: what runs (`cls`, `params` from `overrides`, the committed
    `record` they came from, if any), on what (`preset`, `device`) and where its results go (`out_dir`)."""

    cls: type
    overrides: dict
    tokens: object  # the caller's --set values, as given
    record: object
    params: object
    preset: object
    device: str
    out_dir: Path
    dict_batches: bool
    published: bool

    def base(self, **more) -> dict:
        """The fields every record of this job starts with."""
        p = self.preset
        return {
            "method": self.cls.key,
            "preset": p.name,
            "tag": p.tag,
            "forget": p.forget_protocol,
            **more,
            "params": dataclasses.asdict(self.params),
            "commit": commit(),
        }

    def start(self, console: Console, requests: int | None = None) -> None:
        """Check the results folder, then say which values run (and warn about a fixed seed), the preset and
        its forget set."""
        check_outputs((self.out_dir, "--results-dir"))
        console.info(report.values_line(self.cls.key, self.record, self.tokens, self.published))
        if "seed" in self.overrides:
            console.warn(report.seed_note(self.overrides["seed"]))
        console.info(report.preset_line(self.preset, requests))


def prepare_method(method: str, overrides=(), *, options: Options = DEFAULTS, published: bool = False) -> MethodJob:
    """Resolve and check everything `evaluate_method` needs, doing no work; UsageError on bad input (the method,
    a --set token, an option, the artifacts folder, a committed record). The results folder, `out_dir`, is
    checked (and made) by the call that writes into it.

    `overrides`: --set tokens ["k=v", ...] or a dict; they go over the preset's committed tuned record, or over
    the published defaults with `published` (or where the preset has no record)."""
    options.check()
    cls = method_class(method)
    device, preset = resolve(options)
    check_home(options)
    values, record = method_values(cls, overrides, preset.name, published)
    return MethodJob(
        cls,
        values,
        overrides,
        record,
        cls.make_params(**values),
        preset,
        device,
        Path(options.results_dir) / preset.tag,
        options.batches(preset),
        published,
    )


def failed_record(job: MethodJob, name: str, failure: MethodFailed, **more) -> EvaluationFailed:
    """Write <name>.failed.json for `failure`; the exception to raise, saying where it is."""
    path = write_record(job.out_dir, Record(name, {**job.base(**more), "status": "failed", "reason": failure.reason}))
    return EvaluationFailed(failure, path, kept=(job.out_dir / f"{name}.json").exists())


def evaluate_method(
    method: str, overrides=(), *, options: Options = DEFAULTS, published: bool = False, console: Console = QUIET
) -> Record:
    """Build or reuse the preset's bank, run `method` R times (cached, resumable), score and write its record.

    Returns the written Record (results/<tag>/<method>.json and .npz). Raises UsageError on bad input before
    any work, EvaluationFailed when the method fails (results/<tag>/<method>.failed.json written, the last
    good result kept), DataError when the dataset is missing, ExecutorError when --workers/--ray cannot start."""
    job = prepare_method(method, overrides, options=options, published=published)
    job.start(console)
    cls, preset, params = job.cls, job.preset, job.params
    t0 = time.perf_counter()
    try:
        if options.scale_out.active:
            distribute(options, preset, job.device, [(cls, params, options.seed, job.dict_batches)], console)
        splits, bank = splits_and_bank(options, preset, job.device, console, scaled=options.scale_out.active)
        runs = evaluate_runs(
            cls,
            params,
            preset,
            splits,
            bank,
            seed=options.seed,
            dict_batches=job.dict_batches,
            progress=console.progress,
            on_wait=console.on_wait,
        )
        refs = References(bank, preset.n_retrained, splits.forget_y, splits.test_y)
    except MethodFailed as exc:
        raise failed_record(job, cls.key, exc) from exc
    res, arrays = summarize_runs(
        runs, refs, valid_entry=cls.valid_entry, metric=options.metric, bootstrap=options.bootstrap, seed=options.seed
    )
    fields = {
        **job.base(),
        "status": "ok",
        "valid_entry": cls.valid_entry,
        "seed": options.seed,
        "dict_batches": job.dict_batches,
        "bank": {"key": bank.key, "dir": str(bank.dir)},
        "run_dir": runs["run_dir"],
        "run_times_s": runs["time_s"],
        "reference_retrain_s": runs["reference_retrain_s"],
        "run_logs": runs["logs"],
        **res,
        "torch": str(torch.__version__),
        "device": job.device,
        "wall_time_s": time.perf_counter() - t0,
    }
    record = Record(cls.key, fields, arrays)
    write_record(job.out_dir, record)
    return record


def method_tasks(
    method: str,
    overrides=(),
    *,
    options: Options = DEFAULTS,
    published: bool = False,
    shard: str | None = None,
    dry_run: bool = False,
    console: Console = QUIET,
) -> TaskOutcome:
    """`evaluate_method`'s missing models and runs as tasks on `options.scale_out`'s executor, without scoring:
    `shard` 'i/n' does that slice of them, `dry_run` lists them (console.info)."""
    sliced = parse_shard(shard)
    job = prepare_method(method, overrides, options=options, published=published)
    options.check(tasks=True)
    job.start(console)
    jobs = [(job.cls, job.params, options.seed, job.dict_batches)]
    return distribute(options, job.preset, job.device, jobs, console, shard=sliced, dry_run=dry_run)
