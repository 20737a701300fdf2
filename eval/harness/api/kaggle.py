"""The Kaggle test phase (`-p test`): a method's submission notebook written (and pushed), or rehearsed here on a
Kaggle-layout copy of a test-phase preset, its submission.zip scored beside the kit's own runs."""

from dataclasses import dataclass
from pathlib import Path

from eval.harness import report
from eval.harness.rehearsal import check_preset, rehearse_submission
from eval.harness.unlearn import MethodFailed
from eval.io import write_json
from notebook_utils import NotebookError, NotebookFailed, write_submission

from .errors import RehearsalFailed, UsageError
from .options import DEFAULTS, QUIET, Console, Options, check_home, check_outputs, resolve
from .values import method_class, parse_set
from .work import splits_and_bank


def kaggle_submission(
    method: str,
    overrides=(),
    *,
    submissions_dir="submissions",
    kaggle_user: str | None = None,
    machine_shape: str | None = None,
    push: bool = False,
) -> dict:
    """Write submissions/<method>/ (the notebook and kernel-metadata.json) with the --set `overrides` baked in;
    with `push`, push it with the kaggle CLI. Returns `notebook_utils.write_submission`'s answer (its
    `messages` say what was written). Raises UsageError on bad input, NotebookError when it cannot be written."""
    cls = method_class(method)
    values = parse_set(cls, overrides)
    check_outputs((submissions_dir, "--submissions-dir"))
    return write_submission(
        cls.key,
        values,
        Path(submissions_dir) / cls.key,
        kaggle_user=kaggle_user,
        machine_shape=machine_shape,
        push=push,
    )


@dataclass
class Rehearsal:
    """A rehearsal's answer (`rehearsal.rehearse_submission`'s dict) and the JSON it was written to."""

    result: dict
    path: Path

    @property
    def ok(self) -> bool:
        """The notebook and the kit agree and nothing is wrong with the submission."""
        return self.result["agree"] and not self.result["problems"]


def rehearse(
    method: str,
    overrides=(),
    *,
    options: Options = DEFAULTS,
    submissions_dir="submissions",
    checkpoints: int | None = None,
    console: Console = QUIET,
) -> Rehearsal:
    """Run the method's notebook here for `checkpoints` (default: the preset's runs) on a Kaggle-layout copy of
    a test-phase preset (default kaggle with a GPU, kaggle-cpu without), score its submission.zip and the kit's
    runs alike; writes results/<tag>/<method>.rehearsal.json, the notebook under submissions/<method>/.

    Raises UsageError before any work, RehearsalFailed when the notebook or the kit's runs fail, DataError."""
    options.check()
    cls = method_class(method)
    values = parse_set(cls, overrides)
    check_outputs((submissions_dir, "--submissions-dir"))
    device, preset = resolve(options, defaults=("kaggle", "kaggle-cpu"))
    try:
        check_preset(preset)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    n = checkpoints or preset.n_runs
    if n < 2:
        raise UsageError(f"--checkpoints must be at least 2 (the metric compares distributions), got {n}")
    if options.bootstrap < 1:
        raise UsageError("--rehearse compares 95% intervals: --bootstrap must be >= 1")
    out_dir = Path(submissions_dir) / cls.key / f"rehearsal-{preset.tag}"
    results = Path(options.results_dir) / preset.tag
    check_home(options, (out_dir, "--submissions-dir"), (results, "--results-dir"))
    console.info(report.rehearsal_intro(cls.key, preset, n))
    try:
        splits, bank = splits_and_bank(options, preset, device, console)
        res = rehearse_submission(
            cls,
            values,
            preset.with_counts(runs=n),
            splits,
            bank,
            out_dir,
            seed=options.seed,
            metric=options.metric,
            bootstrap=options.bootstrap,
            progress=console.progress,
            on_wait=console.on_wait,
        )
    except NotebookFailed as exc:
        raise RehearsalFailed(str(exc), out_dir) from exc
    except (NotebookError, MethodFailed) as exc:
        raise RehearsalFailed(str(exc)) from exc
    path = results / f"{cls.key}.rehearsal.json"
    write_json(path, res)
    return Rehearsal(res, path)
