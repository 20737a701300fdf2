"""What the evaluation API raises: bad input before any work, or a failure the caller should report.

Missing data raises `data.cifar10.DataError` as everywhere else; Ctrl-C raises KeyboardInterrupt (every
finished model and run is kept, so the same call resumes).
"""

from pathlib import Path

from eval.harness.unlearn import MethodFailed


class UsageError(ValueError):
    """Bad input (a value, an unknown name, a combination), refused before any work; the message names the flag."""


class EvaluationFailed(MethodFailed):
    """The method raised, exited or diverged; its reason is written to `path` (<name>.failed.json), and `kept`
    says whether the last good result beside it survives."""

    def __init__(self, failure: MethodFailed, path: Path, kept: bool):
        super().__init__(failure.key, failure.reason)
        self.path, self.kept = path, kept


class ExecutorError(RuntimeError):
    """The chosen executor (worker processes, Ray) could not start (nothing ran), or a worker died (what
    finished is kept: the same call resumes)."""


class RehearsalFailed(RuntimeError):
    """A rehearsal stopped: the notebook failed (`out_dir` holds its executed copy) or the kit's own runs did."""

    def __init__(self, message: str, out_dir: Path | None = None):
        super().__init__(message)
        self.out_dir = out_dir
