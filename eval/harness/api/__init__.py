"""The evaluation API: what `main.py` and `scripts/` call to score methods, as a library.

    from eval.harness import api
    opts = api.Options(preset="tiny", runs=4)
    record = api.evaluate_method("ft", ["lr=0.01"], options=opts)   # results/tiny/ft.json + .npz
    record["final_score"], record.path

    evaluate_method, prepare_method   -m NAME: one method's runs, scored (method.py)
    method_tasks                      its missing models and runs as tasks: --shard, --dry-run
    evaluate_requests                 -m NAME --requests K: sequential forget requests (sequential.py)
    leaderboard, leaderboard_tasks    --leaderboard: many methods on one bank (boards.py)
    forget_seed_study                 --leaderboard --forget-seeds: one board per forget set + a summary
    kaggle_submission, rehearse       -p test: the Kaggle notebook, written or rehearsed here (kaggle.py)
    export_bank, import_bank          --export-bank / --import-bank: a bank as one verified archive (banks.py)

`Options` holds what every call shares (main.py's flags of the same names), `Console` where progress goes
(by default nowhere: the API never prints; `eval/harness/report.py` has the text). Bad input raises
`UsageError` before any work; a failing method raises `EvaluationFailed` (its .failed.json written), missing
data `DataError`; nothing here exits or reads argv.
"""

from .banks import export_bank, import_bank
from .boards import Study, forget_seed_study, leaderboard, leaderboard_tasks, parse_forget_seeds, prepare_leaderboard
from .errors import EvaluationFailed, ExecutorError, RehearsalFailed, UsageError
from .kaggle import Rehearsal, kaggle_submission, rehearse
from .method import MethodJob, evaluate_method, method_tasks, prepare_method
from .options import DEFAULTS, QUIET, Console, Options, ScaleOut
from .records import Record, write_record
from .sequential import evaluate_requests
from .work import TaskOutcome

__all__ = [
    "DEFAULTS",
    "QUIET",
    "Console",
    "EvaluationFailed",
    "ExecutorError",
    "MethodJob",
    "Options",
    "Record",
    "Rehearsal",
    "RehearsalFailed",
    "ScaleOut",
    "Study",
    "TaskOutcome",
    "UsageError",
    "evaluate_method",
    "evaluate_requests",
    "export_bank",
    "import_bank",
    "forget_seed_study",
    "kaggle_submission",
    "leaderboard",
    "leaderboard_tasks",
    "method_tasks",
    "parse_forget_seeds",
    "prepare_leaderboard",
    "prepare_method",
    "rehearse",
    "write_record",
]
