"""Every line and table the command line prints: results, progress notes, failures.

The evaluation API (`eval/harness/api/`) returns records and tables and says what it is doing through a
`Console`; this module turns both into text, so `main.py` and the scripts print the same words and the
API itself never prints.
"""

import methods
from eval.harness.requests import requests_table
from eval.io import is_disk_full
from eval.scoring import EFFICIENCY_LIMIT

INTERRUPTED = "interrupted; rerun the same command to resume (finished models and runs are kept)"
WAITING = "waiting: another process holds the lock of a model or run needed here; its result will be reused"


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def error(exc: BaseException) -> str:
    """A failure that is not the method's (missing data, an executor that does not start, a notebook)."""
    return f"error: {exc}"


def os_error(exc: OSError) -> str:
    """A file-system failure (not the method's): what happened, that nothing partial was left, what to do."""
    what = "the disk is full" if is_disk_full(exc) else "a file could not be written or read"
    where = f" ({exc.filename})" if exc.filename else ""
    return (
        f"error: {what}: {exc.strerror or exc}{where}. Files are written whole or not at all, so nothing partial "
        "was left and every finished model and run is kept: "
        + ("free some space" if is_disk_full(exc) else "fix the cause")
        + " and run the same command again to resume"
    )


def method_list() -> str:
    """`--list`: every registered method with its summary and aliases, then the files that failed to import."""
    handlers = methods.all_method_handlers()
    width = max(map(len, handlers))
    lines = ["registered methods:"]
    for key, cls in handlers.items():
        flag = "" if cls.valid_entry else "  [reference, not a valid entry]"
        alias = f"  (also: {', '.join(cls.aliases)})" if cls.aliases else ""
        lines.append(f"  {key:<{width}}  {cls.summary()}{alias}{flag}")
    broken = methods.broken_methods()
    if broken:
        lines.append("method files that failed to import (fix them to use them; the others work):")
        lines += [f"  {name}: {reason}" for name, reason in broken.items()]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# -m NAME: what runs, the result block, a failure


def set_text(tokens) -> str:
    """--set tokens (or an overrides dict) as the command line gives them."""
    return " ".join(f"{k}={v}" for k, v in tokens.items()) if isinstance(tokens, dict) else " ".join(tokens)


def values_line(key: str, record, tokens, published: bool) -> str:
    """Which values a method runs with: its committed tuned record (under the --set `tokens`) or its defaults."""
    if record is None:
        return (
            f"values: {key}'s published defaults"
            + ("" if published else " (no tuned record for this preset)")
            + (f", --set {set_text(tokens)}" if tokens else "")
        )
    return (
        f"values: the record {record.describe()} from {record.source}"
        + (f", --set {set_text(tokens)} over it" if tokens else "")
        + " (--published: the defaults)"
    )


def seed_note(seed) -> str:
    return (
        f"note: --set seed={seed} gives every run the same seed; runs differing only by "
        f"loader order may score low (the scorer needs run-to-run randomness)"
    )


def preset_line(preset, requests: int | None = None) -> str:
    return f"preset {preset.tag}: {preset.description}; forget set: {preset.forget_protocol}" + (
        f"; {requests} sequential requests" if requests is not None else ""
    )


def duration(seconds: float) -> str:
    """A rough duration: '40 s', '12 min', '3.5 h', '6.2 days'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def bank_cost(bank_name: str, missing: int, total: int, per_model) -> str:
    """What building the missing bank models will cost, said before the first one starts."""
    head = f"bank {bank_name}: {missing} of {total} models to train"
    if per_model is None:
        return f"{head} (no model of this preset built here yet: the first one's time tells the rest)"
    seconds, where = per_model
    return (
        f"{head}, about {duration(missing * seconds)} at {seconds:.3g} s a model (measured in {where}); "
        "Ctrl-C stops, finished models are kept and the same command resumes"
    )


def bank_exported(path, manifest: dict) -> str:
    """What --export-bank wrote."""
    size = sum(f["bytes"] for f in manifest["files"].values())
    return (
        f"wrote {path}: {manifest['kind']} bank {manifest['key']} of preset {manifest['preset']}, "
        f"{len(manifest['files'])} files ({size / 2**20:.1f} MiB) with their SHA-256 in the archive's manifest; "
        "install it elsewhere with python main.py --import-bank FILE"
    )


def bank_imported(path, done: dict) -> str:
    """What --import-bank installed."""
    kept = f"; {len(done['kept'])} it had already, identical" if done["kept"] else ""
    return f"installed {len(done['installed'])} verified files of {path} as bank {done['key']} in {done['dir']}{kept}"


def memorization_line(info: dict) -> str:
    """What the memorization estimate behind a mem-* forget set cost and selected."""
    return (
        f"memorization: {info['models']} half-subset models ({info['model_seconds']:.0f} s each), "
        f"per-example estimates in {info['estimates']}; forget set mean mem {info['forget_mem_mean']:.3f} "
        f"(training subset {info['all_mem_mean']:.3f})"
    )


def runtime_line(res: dict, valid_entry: bool) -> str:
    """Seconds per run and their share of a retraining, with the efficiency rule's verdict."""
    rt = f"{res['runtime_mean_s']:.2f} s per run"
    limit = f"limit {100 * EFFICIENCY_LIMIT:.0f}%"
    verdict = (
        "reference row, exempt from the limit"
        if not valid_entry
        else f"REJECTED ({limit}): final score 0"
        if res["rejected"]
        else f"ok ({limit})"
    )
    if res["time_ratio"] is not None:
        rt += (
            f" = {pct(res['time_ratio'])} of one retraining timed beside the runs "
            f"({res['retrain_time_s']:.1f} s): {verdict}"
        )
        if res["manifest_time_ratio"] is not None:
            rt += (
                f"\n{'':23}{pct(res['manifest_time_ratio'])} of the bank's recorded retraining time "
                f"({res['manifest_retrain_time_s']:.1f} s; depends on the load when the bank was built)"
            )
    elif res["manifest_time_ratio"] is not None:
        rt += (
            f" = {pct(res['manifest_time_ratio'])} of the bank's recorded retraining time "
            f"({res['manifest_retrain_time_s']:.1f} s): {verdict}"
        )
    return rt


def method_report(res: dict) -> str:
    """The human-readable result block of one method's record (the fields of results/<tag>/<method>.json)."""
    a = res["accuracy"]
    lines = [
        f"method {res['method']} · preset {res['tag']} · {res['n_runs']} runs vs {res['n_retrained']} "
        + ("reference models per example (subset bank)" if "subsets" in res["tag"] else "retrained models")
        + f" · {res['n_forget']} forget examples ({res['forget']}) · metric {res['metric']}",
        f"params: {', '.join(f'{k}={v}' for k, v in res['params'].items())}",
        "",
        f"{'accuracy':<12}{'retain':>9}{'forget':>9}{'test':>9}{'val':>9}",
    ]
    for who in ("original", "retrained", "unlearned"):
        lines.append(f"{who:<12}" + "".join(f"{a[f'{s}_{who}']:>9.4f}" for s in ("retain", "forget", "test", "val")))
    f_note = {
        "ulira": "1 - 2|U-LiRA accuracy - 0.5|",
        "klom": "mean over examples of a KLoM lower bound on 1 - total variation",
    }.get(res["metric"], f"mean epsilon {res['epsilon_mean']:.2f}")
    lines += [
        "",
        f"forgetting quality F   {res['F']:.4f}   ({f_note}; "
        f"compare with `retrain`: F's ceiling depends on the number of models)",
        f"retain accuracy ratio  {res['ra_ratio']:.4f}",
        f"test accuracy ratio    {res['ta_ratio']:.4f}",
        f"forget accuracy gap    {res['forget_gap']:+.4f}   (unlearned - retrained)",
        f"ToW                    {res['tow']:.4f}   (ToW-MIA {res['tow_mia']:.4f}; 1 = retrain-like)",
        f"loss MIA               {res['mia']:.4f}   (retrained {res['mia_retrained']:.4f}, "
        f"original {res['mia_original']:.4f})",
        f"U-LiRA accuracy        {res['ulira_acc']:.4f}   (0.5: runs indistinguishable from retrained "
        f"models; 1: always told apart)",
        f"KLoM p50 / p95 / p99   {res['klom_p50']:.3g} / {res['klom_p95']:.3g} / {res['klom_p99']:.3g}   "
        f"(nats, 0 ideal; compare with `retrain`)",
    ]
    spread = ""
    if "score_std" in res:
        lo, hi = res["score_ci95"]
        spread = f" ± {res['score_std']:.4f}  (bootstrap 95% CI {lo:.4f}–{hi:.4f})"
    lines.append(f"score                  {res['score']:.4f}{spread}")
    if res["runtime_mean_s"] is not None:
        lines.append(f"runtime                {runtime_line(res, res['valid_entry'])}")
    lines.append(f"FINAL SCORE            {res['final_score']:.4f}")
    return "\n".join(lines)


def method_written(path) -> str:
    return f"wrote {path} (+ .npz with the raw statistics)"


def failed(exc, note_kept: bool = True) -> str:
    """A method that raised, exited or diverged (`api.EvaluationFailed`): its reason and the .failed.json."""
    kept = " (the previous result beside it is kept)" if note_kept and exc.kept else ""
    return f"FAILED: {exc}\nwrote {exc.path}{kept}"


# ---------------------------------------------------------------------------------------------
# -m NAME --requests K


def requests_report(res: dict) -> str:
    """The header and table of a sequential-requests record (results/<tag>/<method>.requests-K.json)."""
    first = res["rows"][0]
    return (
        f"method {res['method']} · {res['requests']} requests · {first['n_runs']} runs vs {first['n_retrained']} "
        f"retrained models per prefix · metric {first['metric']}\n\n{requests_table(res['rows'])}"
    )


def requests_written(path, md_path) -> str:
    return f"wrote {path} and {md_path}"


# ---------------------------------------------------------------------------------------------
# scale-out: --workers, --ray, --shard, --dry-run


def task_list(where: str, stage: str, labels) -> str:
    labels = list(labels)
    return "\n".join([f"{where}: {len(labels)} {stage} tasks would run", *(f"  {label}" for label in labels)])


TASKS_UNKNOWN = "  (the bank's and the runs' tasks are known once every memorization model exists)"


def task_failed(label: str, reason: str) -> str:
    return f"FAILED {label}: {reason}"


def memorization_pending(where: str) -> str:
    return (
        f"{where}: memorization models still missing (other shards); run the shards "
        f"again once they exist: the bank's tasks depend on them"
    )


def shard_done(where: str, n_failed: int) -> str:
    return f"{where}: done ({n_failed} failed); run the command without --shard to gather and score"


def executor_failed(exc: BaseException) -> str:
    return f"cannot start the executor: {type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------------------------
# --leaderboard, --forget-seeds, --tuned


def tuned_line(folder, found: dict, keys) -> str:
    """Which methods of a leaderboard run a search's tuned values (--tuned DIR), which their defaults."""
    missing = [k for k in keys if k not in found]
    return f"tuned parameters from {folder}: {len(found)} of {len(keys)} methods" + (
        f" (defaults for {', '.join(missing)})" if missing else ""
    )


def board(out: dict) -> str:
    """A leaderboard's markdown and the files it wrote (`run_leaderboard`'s answer)."""
    return f"{out['markdown']}\n\nwrote {', '.join(str(p) for p in out['files'])}"


def forget_seed_header(seed: int, i: int, n: int) -> str:
    return f"\n=== forget seed {seed} ({i}/{n}) ==="


def summary(out: dict) -> str:
    """The rankings across forget sets (`seed_study.write_summary`'s answer) and its files."""
    return f"\n{out['markdown']}\nwrote {', '.join(str(p) for p in out['files'])}"


# ---------------------------------------------------------------------------------------------
# -p test, --rehearse


def rehearsal_intro(key: str, preset, n: int) -> str:
    return f"rehearsal of {key} on preset {preset.tag} ({preset.description}); {n} checkpoints"


def rehearsal_table(res: dict) -> str:
    """The notebook's submission.zip and the kit's own runs side by side: score with its 95% CI and the parts."""
    rows = []
    for name, r in (("submission.zip (notebook)", res["notebook"]), ("-m (the kit's runs)", res["kit"])):
        lo, hi = r.get("score_ci95", (float("nan"), float("nan")))
        a = r["accuracy"]
        rows.append(
            f"| {name} | {r['score']:.4f} [{lo:.4f}, {hi:.4f}] | {r['F']:.4f} | {r['ra_ratio']:.3f} | "
            f"{r['ta_ratio']:.3f} | {a['forget_unlearned']:.3f} | {r['runtime_mean_s']:.2f} | "
            f"{pct(r['time_ratio'])} |"
        )
    head = (
        "| source | score [95% CI] | F | RA ratio | TA ratio | forget acc | s / checkpoint | % retrain |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([head, *rows])


def rehearsal(res: dict, path) -> str:
    """A rehearsal's table, its problems, its verdict and the files it wrote."""
    lines = ["", rehearsal_table(res), *(f"PROBLEM: {line}" for line in res["problems"]), "", res["verdict"]]
    lines.append(f"wrote {path}; the notebook and its outputs are in {res['out_dir']}")
    return "\n".join(lines)


def rehearsal_failed(exc) -> str:
    """A rehearsal that stopped: the notebook failed (its executed copy kept) or the kit's runs did."""
    where = f"\nthe executed notebook is in {exc.out_dir}" if exc.out_dir is not None else ""
    return f"REHEARSAL FAILED: {exc}{where}"
