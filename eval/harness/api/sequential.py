"""A method on sequential forget requests (`-m NAME --requests K`): the forget set cut into K requests, the
method run on them in turn, the model scored after each against models retrained without the requests so
far (K-1 extra banks); written as results/<tag>/<method>.requests-K.{json,npz,md}."""

import numpy as np

from eval.harness import requests as sequence
from eval.harness.unlearn import MethodFailed
from eval.io import write_text

from .errors import UsageError
from .method import failed_record, prepare_method
from .options import DEFAULTS, QUIET, Console, Options
from .records import Record, write_record
from .work import splits_and_bank


def evaluate_requests(
    method: str,
    overrides=(),
    k: int = 2,
    *,
    options: Options = DEFAULTS,
    published: bool = False,
    console: Console = QUIET,
) -> Record:
    """Score `method` after each of `k` requests; returns the written Record (its `rows`: one summary per
    request) beside the table <method>.requests-K.md. Raises as `evaluate_method` does; `k` larger than the
    forget set is a UsageError once the splits are known (before any bank or run)."""
    if k < 1:
        raise UsageError(f"--requests must be >= 1, got {k}")
    if options.bank == "subsets":
        raise UsageError("--requests scores against models retrained without each request so far: use --bank exact")
    if options.scale_out.active:
        raise UsageError("--workers, --ray, --shard and --dry-run apply to -m NAME and --leaderboard (dev phase)")
    job = prepare_method(method, overrides, options=options, published=published)
    job.start(console, requests=k)
    cls, preset, params = job.cls, job.preset, job.params
    name = f"{cls.key}.requests-{k}"
    progress, on_wait = console.progress, console.on_wait
    try:
        splits, _ = splits_and_bank(options, preset, job.device, console)
        if k > len(splits.forget_y):
            raise UsageError(f"--requests {k}: the forget set has only {len(splits.forget_y)} examples")
        factory = sequence.make_bank_factory(preset, options.home, options.data_root, job.device, progress, on_wait)
        plan = sequence.plan_requests(splits, k, factory)
        per_request = sequence.evaluate_requests(
            cls,
            params,
            preset,
            plan,
            seed=options.seed,
            dict_batches=job.dict_batches,
            progress=progress,
            on_wait=on_wait,
        )
    except MethodFailed as exc:
        raise failed_record(job, name, exc, requests=k) from exc
    rows = sequence.score_requests(
        cls, preset, plan, per_request, metric=options.metric, bootstrap=options.bootstrap, seed=options.seed
    )
    fields = {
        **job.base(requests=k),
        "status": "ok",
        "seed": options.seed,
        "rows": rows,
        "banks": [b.key for b in plan.banks],
        "run_dir": per_request[0]["run_dir"],
    }
    record = Record(name, fields, {"final_scores": np.array([r["final_score"] for r in rows])})
    write_record(job.out_dir, record)
    write_text(job.out_dir / f"{name}.md", sequence.requests_table(rows) + "\n")
    return record
