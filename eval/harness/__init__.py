"""Orchestration: the one place that joins data, methods and metrics.

    bank.py, bank_models.py   the reference bank (original + retrained models), built, cached, locked
    unlearn.py                one unlearning run: its loaders, its random streams, its outputs
    runs.py                   a method's R runs, cached and resumable, timed beside a retraining slice
    timing.py                 the retraining slice (the efficiency rule's reference, same process)
    seeds.py                  the seed tree: one independent stream per consumer
    fingerprint.py            cache keys from the code a cache depends on (import closure, syntax tree)
    row.py, leaderboard.py    a method's leaderboard row; the leaderboard's table, text and plots
    tasks.py, executors.py    an evaluation as independent tasks (one model or run each), run in process,
                              in worker processes or on Ray (--workers, --ray, --shard, --dry-run)
    api/                      the evaluation API main.py and scripts/ call: evaluate_method, leaderboard,
                              forget_seed_study, evaluate_requests, rehearse...; raises, never prints or exits
    report.py                 every text the command line prints about what the API returns or is doing

Nothing outside this package (and `main.py`, `scripts/`) imports it; it imports `data`, `methods`
and the metric modules of `eval`.
"""
