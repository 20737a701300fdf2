"""Forget requests that arrive over time: the forget set split into k requests, scored after each one.

A user rarely deletes everything at once. `--requests K` splits the preset's forget set into K
requests (a seeded permutation of its examples cut into K nearly equal parts); the method processes
them in turn on one network (`BaseMethod.run_requests`), and after request j the model is scored
against models retrained without the union of requests 1..j. Request j's retain loader holds the data
still kept at that time (the retain set plus the requests still to come), its forget loader only that
request's examples. After the last request the union is the whole forget set, so the last row is
scored against the preset's usual bank; each earlier prefix has a bank of its own (built or reused
like any bank). Runs are cached per (method, parameters, banks, K, seed) under the final bank, one
file per run holding every request's outputs, so an interrupted evaluation resumes.

Each request's loaders get their own random streams (children of the run's streams in the seed
tree, keyed by the request index), and row j's runtime is request j's own time, compared with one
retraining timed beside the runs (`timing.RetrainClock`): each request's alternative is a retraining,
so the efficiency rule applies per request; the table also shows the total so far.
"""

import dataclasses
import hashlib
import json
import time

import numpy as np

from data.splits import make_loader
from eval.harness.bank import Bank
from eval.harness.fingerprint import code_fingerprint
from eval.harness.forget_sets import resplit
from eval.harness.memorization_bank import training_subset
from eval.harness.row import References, summarize_runs
from eval.harness.runs import cached_runs
from eval.harness.seeds import run_streams
from eval.harness.timing import RetrainClock
from eval.harness.unlearn import MethodFailed, raised_at, run_key
from eval.outputs import model_outputs

REQUEST_SEED = 7  # root of the permutation that cuts the forget set into requests (with K)


def request_chunks(forget_idx: np.ndarray, k: int, seed: int = REQUEST_SEED) -> list[np.ndarray]:
    """The forget set's training-subset indices cut into `k` requests: a permutation seeded by (seed, k),
    split into nearly equal parts, each part sorted. ValueError unless 1 <= k <= len(forget_idx)."""
    forget_idx = np.asarray(forget_idx, np.int64)
    if not 1 <= k <= len(forget_idx):
        raise ValueError(f"--requests must be between 1 and the forget set's size {len(forget_idx)}, got {k}")
    perm = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(k,))).permutation(forget_idx)
    return [np.sort(part) for part in np.array_split(perm, k)]


@dataclasses.dataclass
class RequestPlan:
    """Per request j: `splits[j]` (forget set = union of requests 0..j; the last is the preset's own splits),
    `chunks[j]` (request j's training-subset indices) and the banks retrained without each union."""

    splits: list
    chunks: list
    banks: list


def plan_requests(splits, k: int, bank_factory) -> RequestPlan:
    """The K prefix splits and their banks; `bank_factory(splits_j)` builds (or reuses) a `Bank`.

    The last prefix is `splits` itself, so its bank is the preset's usual one."""
    chunks = request_chunks(splits.forget_idx, k)
    prefixes = []
    for j in range(k):
        if j == k - 1:
            prefixes.append(splits)
        else:
            union = np.concatenate(chunks[: j + 1])
            prefixes.append(resplit(splits, union, f"{splits.protocol}; requests 1-{j + 1} of {k}"))
    return RequestPlan(prefixes, chunks, [bank_factory(s) for s in prefixes])


def _request_loaders(plan: RequestPlan, batch_size: int, streams: dict, dict_batches: bool):
    """Retain and forget loaders of every request, and the validation loader (the run's)."""
    x, y = training_subset(plan.splits[-1])
    retain, forget = [], []
    for j, (s, idx) in enumerate(zip(plan.splits, plan.chunks)):
        sub = {
            n: int(np.random.SeedSequence(streams[n], spawn_key=(j,)).generate_state(1, np.uint64)[0] >> 1)
            for n in ("retain", "forget")
        }
        retain.append(
            make_loader(s.retain_x, s.retain_y, batch_size, shuffle=True, seed=sub["retain"], dict_batches=dict_batches)
        )
        sel = np.asarray(idx, np.int64)
        forget.append(
            make_loader(x[sel], y[sel], batch_size, shuffle=True, seed=sub["forget"], dict_batches=dict_batches)
        )
    last = plan.splits[-1]
    val = make_loader(last.val_x, last.val_y, batch_size, shuffle=True, seed=streams["val"], dict_batches=dict_batches)
    return retain, forget, val


def _run_requests_once(cls, params, preset, plan: RequestPlan, base_seed: int, index: int, dict_batches: bool) -> dict:
    """Run `index`: the method on every request in turn; outputs after request j under keys `r{j}_*`."""
    streams = run_streams(base_seed, index)
    if params.seed is None:
        params = dataclasses.replace(params, seed=streams["method"])
    method = cls(**{f.name: getattr(params, f.name) for f in dataclasses.fields(params)})
    method.configure(preset.recipe)
    net = plan.banks[-1].load("original")
    retain, forget, val = _request_loaders(plan, preset.batch_size, streams, dict_batches)
    outs, logs = {}, []
    it = method.run_requests(net, retain, forget, val)
    for j in range(len(plan.splits)):
        t0 = time.perf_counter()
        try:
            done = next(it)
        except StopIteration:
            raise MethodFailed(cls.key, f"run_requests stopped after {j} of {len(plan.splits)} requests") from None
        except SystemExit as exc:
            raise MethodFailed(cls.key, f"called sys.exit({exc.code!r}) on request {j + 1}{raised_at(exc)}") from exc
        except Exception as exc:
            raise MethodFailed(cls.key, f"request {j + 1}: {type(exc).__name__}: {exc}{raised_at(exc)}") from exc
        elapsed = time.perf_counter() - t0
        if done != j:
            raise MethodFailed(cls.key, f"run_requests yielded {done!r} for request {j}")
        net.eval()
        o = model_outputs(net, plan.splits[j])
        if not o["finite"]:
            raise MethodFailed(cls.key, f"request {j + 1}: the model gives NaN or infinite logits")
        o["time_s"] = np.float64(elapsed)  # this request alone (its alternative: one retraining)
        outs.update({f"r{j}_{k}": v for k, v in o.items()})
        logs.append(method.log_)
    it.close()
    outs["log"] = np.array(json.dumps(logs, default=float))
    outs["method_seed"] = np.uint64(params.seed)
    return outs


def requests_key(cls, params, preset, plan: RequestPlan, seed: int, dict_batches: bool) -> str:
    """Cache key: the run key on the final bank, every prefix bank, K and this module's code."""
    blob = json.dumps(
        {
            "run": run_key(cls, params, preset, plan.banks[-1], seed, dict_batches),
            "banks": [b.key for b in plan.banks],
            "code": code_fingerprint([__name__]),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def evaluate_requests(
    cls,
    params,
    preset,
    plan: RequestPlan,
    *,
    seed: int = 0,
    dict_batches: bool = False,
    progress=lambda it, **kw: it,
    on_wait=None,
) -> list[dict]:
    """`preset.n_runs` sequential runs (cached, locked, timed beside a retraining slice); per request j the
    runs' outputs stacked as `runs.evaluate_runs` returns them (`time_s`: request j's own time)."""
    k = len(plan.splits)
    run_dir = (
        plan.banks[-1].dir
        / "requests"
        / f"{cls.key}-k{k}-{requests_key(cls, params, preset, plan, seed, dict_batches)}"
    )
    runs = cached_runs(
        run_dir,
        preset.n_runs,
        lambda i: _run_requests_once(cls, params, preset, plan, seed, i, dict_batches),
        lambda: RetrainClock(preset, plan.splits[-1], plan.banks[-1].device),
        desc=f"unlearn {cls.key} ({k} requests)",
        progress=progress,
        on_wait=on_wait,
        method=cls.key,
    )
    logs = [json.loads(str(r["log"])) for r in runs]
    per_request = []
    for j in range(k):
        keys = [name[len(f"r{j}_") :] for name in runs[0] if name.startswith(f"r{j}_")]
        stacked = {name: np.stack([r[f"r{j}_{name}"] for r in runs]) for name in keys}
        stacked["reference_retrain_s"] = np.stack([r["reference_retrain_s"] for r in runs])
        stacked["logs"] = [lg[j] for lg in logs]
        stacked["run_dir"] = str(run_dir)
        per_request.append(stacked)
    return per_request


def score_requests(
    cls,
    preset,
    plan: RequestPlan,
    per_request: list[dict],
    *,
    metric: str = "official",
    bootstrap: int = 0,
    seed: int = 0,
) -> list[dict]:
    """One summary per request (`row.summarize_runs` against that prefix's bank), with `request`, `n_union`."""
    out = []
    for j, (runs, s, bank) in enumerate(zip(per_request, plan.splits, plan.banks)):
        refs = References(bank, preset.n_retrained, s.forget_y, s.test_y)
        res, _ = summarize_runs(runs, refs, valid_entry=cls.valid_entry, metric=metric, bootstrap=bootstrap, seed=seed)
        out.append(
            {"request": j + 1, "n_request": len(plan.chunks[j]), "n_union": len(s.forget_y), "bank": bank.key, **res}
        )
    return out


def requests_table(rows: list[dict]) -> str:
    """Markdown: one line per request, the score after it and what it cost so far."""
    head = (
        "| after request | forgotten so far | final score [95% CI] | F | RA ratio | TA ratio | forget acc "
        "(retrained) | % of a retraining (this request; all so far) |\n|---|---|---|---|---|---|---|---|"
    )
    lines, so_far = [head], 0.0
    for r in rows:
        lo, hi = r.get("score_ci95", (float("nan"), float("nan")))
        a = r["accuracy"]
        so_far += r["time_ratio"] or 0.0
        ratio = "–" if r["time_ratio"] is None else f"{100 * r['time_ratio']:.1f}%; {100 * so_far:.1f}%"
        verdict = " rejected" if r["rejected"] else ""
        lines.append(
            f"| {r['request']} (+{r['n_request']}) | {r['n_union']} | {r['final_score']:.4f} "
            f"[{lo:.4f}, {hi:.4f}] | {r['F']:.4f} | {r['ra_ratio']:.3f} | {r['ta_ratio']:.3f} | "
            f"{a['forget_unlearned']:.3f} ({a['forget_retrained']:.3f}) | {ratio}{verdict} |"
        )
    return "\n".join(lines)


def make_bank_factory(preset, home=None, data_root=None, device="cpu", progress=lambda it, **kw: it, on_wait=None):
    """`plan_requests`' bank factory: a `Bank` of `preset` for the given splits, built or reused."""

    def factory(s):
        bank = Bank(preset, s, home=home, data_root=data_root, device=device)
        bank.ensure(preset.n_retrained, progress=progress, on_wait=on_wait)
        return bank

    return factory
