"""Where the tasks of an evaluation run: in this process, in local worker processes, or on a Ray cluster.

A task (`tasks.py`) is a picklable callable that does one unit of work (one bank model, one
memorization model, one unlearning run) and writes its file into the content-addressed cache under
that file's lock, so every executor, any mix of them and any re-run end with the same files.
`execute(tasks, executor)` runs them and returns one `TaskResult` per task (a task that fails is
reported, the others go on).

- `InProcess()`: one after the other, here (the default, and what `--shard` uses).
- `Workers(n)`: `n` local processes (spawned, so no state leaks from the parent), each with its
  share of this process's threads (`torch.set_num_threads`).
- `RayExecutor(address)`: tasks on a Ray cluster, each asking for `cpus_per_task` CPUs and
  `gpus_per_task` GPUs (a fraction shares one GPU between tasks). Ray is optional
  (`pip install -r requirements-ray.txt`); it is imported here only, when this executor is made.
  Every node needs this repository at the same path and the data and artifacts folders on a shared
  file system (the cache is the only channel between tasks).
"""

import os
import socket
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import torch

from eval.harness.unlearn import raised_at

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class TaskResult:
    label: str
    ok: bool
    seconds: float
    reason: str = ""


def call_task(task, threads: int | None = None) -> TaskResult:
    """Run one task (with `threads` torch threads if given); any exception becomes a failed result."""
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        task()
    except Exception as exc:  # noqa: BLE001 (reported with the task's label; the other tasks go on)
        return TaskResult(task.label, False, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}{raised_at(exc)}")
    return TaskResult(task.label, True, time.perf_counter() - t0)


class WorkerDied(RuntimeError):
    """A worker process ended abruptly (killed, out of memory): the pool cannot go on. Every model and run
    that finished is in the cache, so the same command resumes."""

    def __init__(self, done: int, total: int):
        super().__init__(
            f"a worker process died (killed by a signal, or out of memory?) after {done} of {total} tasks; "
            "every model and run that finished is kept: run the same command again to resume "
            "(with fewer --workers if memory ran out)"
        )


class InProcess:
    """Tasks one after the other in this process."""

    name = "in-process"

    def submit_all(self, tasks):
        for task in tasks:
            yield call_task(task)

    def close(self):
        pass


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


class Workers:
    """`n` local worker processes, each with `threads` torch threads (default: this process's threads // n)."""

    def __init__(self, n: int, threads: int | None = None):
        if n < 1:
            raise ValueError(f"--workers must be >= 1, got {n}")
        self.n, self.threads = n, threads or max(1, torch.get_num_threads() // n)
        self.name = f"{n} worker processes x {self.threads} threads"
        self.pool = ProcessPoolExecutor(
            n, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(self.threads,)
        )

    def submit_all(self, tasks):
        futures = [self.pool.submit(call_task, t) for t in tasks]
        done = 0
        for future in as_completed(futures):
            try:
                result = future.result()
            except BrokenProcessPool:
                raise WorkerDied(done, len(futures)) from None
            done += 1
            yield result

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """For a host:port (or ray://host:port) address, fail fast when nothing listens there: Ray itself retries
    an unreachable address for minutes."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(
            f"no Ray cluster answers at {address} ({exc}); start one with `ray start --head`, or use --ray local"
        ) from None


class RayExecutor:
    """Tasks on Ray: `address` "local" starts a private local cluster (`num_cpus` CPUs), anything else is
    passed to `ray.init` ("auto": the running cluster, or "ray://host:10001")."""

    def __init__(
        self, address: str = "auto", cpus_per_task: float = 1, gpus_per_task: float = 0, num_cpus: int | None = None
    ):
        try:
            import ray
        except ImportError:
            raise RuntimeError("--ray needs Ray: pip install -r requirements-ray.txt") from None
        if cpus_per_task <= 0 or gpus_per_task < 0:
            raise ValueError(
                f"--cpus-per-task must be > 0 and --gpus-per-task >= 0, got {cpus_per_task}, {gpus_per_task}"
            )
        self.ray = ray
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}}
        if not ray.is_initialized():
            if address == "local":
                # Ray nices its workers to 15; on a machine shared with other jobs they then starve (importing
                # torch took 136 s instead of 6 s beside two evaluations). Local tasks run at our priority.
                os.environ.setdefault("RAY_worker_niceness", "0")
                ray.init(
                    num_cpus=num_cpus or os.cpu_count(), runtime_env=env, include_dashboard=False, log_to_driver=False
                )
            else:
                _check_reachable(address)
                ray.init(address=address, runtime_env=env, log_to_driver=False)
        self.threads = max(1, int(cpus_per_task))
        self.remote = ray.remote(call_task).options(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=0)
        self.name = f"Ray ({address}; {cpus_per_task} CPU, {gpus_per_task} GPU per task)"

    def submit_all(self, tasks):
        pending = [self.remote.remote(t, self.threads) for t in tasks]
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            yield self.ray.get(done[0])

    def close(self):
        pass  # a cluster we connected to stays up; a local one ends with this process


def make_executor(
    workers: int | None = None, ray: str | None = None, *, cpus_per_task: float = 1, gpus_per_task: float = 0
):
    """The executor `--workers N` / `--ray ADDRESS` ask for (in-process when neither)."""
    if workers and ray:
        raise ValueError("--workers and --ray are exclusive: Ray schedules its own workers")
    if ray:
        return RayExecutor(ray, cpus_per_task, gpus_per_task)
    return Workers(workers) if workers else InProcess()


def execute(tasks, executor, progress=lambda it, **kw: it) -> list[TaskResult]:
    """Run `tasks` on `executor`; one result per task, in completion order (progress: tasks done / total)."""
    tasks = list(tasks)
    if not tasks:
        return []
    return list(progress(executor.submit_all(tasks), total=len(tasks), desc=f"tasks ({executor.name})", unit="task"))
