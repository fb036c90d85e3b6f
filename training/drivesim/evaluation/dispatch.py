"""Route dispatch for `eval` and `collect`: one call of a function per route, each in an isolated worker, with the
routes' outcomes reported in completion order. Two backends, one contract:

- local (``--workers N``): a forked process per route, at most N at a time; its return value comes back through a
  pipe.
- Ray (``--ray [ADDRESS]``): a Ray task per route (``num_cpus=1``), at most as many in flight as the cluster has
  CPUs; Ray re-runs a task whose worker process or node died (``max_retries``), ``ray.wait`` collects them.

Either way a route ends as one `Outcome`: ``ok`` (the function returned: its value, which may itself say the route
failed), ``died`` (the worker ended without a result: killed, exited, its node lost, after Ray's retries) or
``hung`` (no result after ``timeout_s``: the worker is killed, ``ray.cancel(force=True)`` on Ray). The caller
records and checkpoints each as it comes, so both backends leave the same files.

`RayChunks` is the same idea for the learners' rollouts (RL, Scenario Dreaming): a batch function run by Ray actors
on contiguous chunks of the rows, the results concatenated in order.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

RAY_MISSING = "--ray needs the ray extra: pip install -e '.[ray]'"
LOCAL = "local"  # `--ray` without an address: start a Ray on this machine with --workers CPUs


class RayMissing(RuntimeError):
    """`--ray` was asked for but the ray package is not installed."""


@dataclass
class Outcome:
    job: int  # index into the jobs passed to `dispatch`
    kind: str  # "ok" | "died" | "hung"
    result: Any = None  # kind "ok": what the function returned
    message: str = ""  # kinds "died" and "hung": what happened to the worker, in words
    wall: float = 0.0  # seconds since the route was handed to its worker


def exit_reason(code: int | None) -> str:
    """How a worker process ended, in words (a negative exit code is the signal that killed it)."""
    import signal

    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def dispatch(fn: Callable, jobs: Sequence[tuple], *, workers: int = 1, ray: str | None = None,
             timeout_s: float | None = None, max_retries: int = 1, inline: bool = False) -> Iterator[Outcome]:
    """Run ``fn(*job)`` for every job in isolated workers; yields one `Outcome` per job as each finishes.

    ray: None runs on this machine (`workers` forked processes; with ``inline`` and one worker, in this process,
    unisolated); ``"local"`` starts a Ray with `workers` CPUs; ``"auto"``, ``"host:port"`` or ``"ray://host:port"``
    joins a running cluster (a Ray already initialised in this process is used as it is). `max_retries`: Ray
    re-runs of a route whose worker died (the local backend does not retry). `fn` and the jobs must pickle, and on
    Ray every node must import this package (the same install). Leaving the iteration early stops the routes still
    running."""
    if ray:
        yield from _ray_dispatch(fn, jobs, workers, ray, timeout_s, max_retries)
    elif inline and workers <= 1:
        for i, job in enumerate(jobs):
            t0 = time.perf_counter()
            result = fn(*job)
            yield Outcome(i, "ok", result, wall=time.perf_counter() - t0)
    else:
        yield from _local_dispatch(fn, jobs, workers, timeout_s)


# ------------------------------------------------------------------------------------------------ local processes
def _child(conn, fn: Callable, args: tuple) -> None:
    """Runs in a forked process: one route, its result sent back through the pipe."""
    try:
        conn.send(fn(*args))
    finally:
        conn.close()


def _local_dispatch(fn: Callable, jobs: Sequence[tuple], workers: int, timeout_s: float | None) -> Iterator[Outcome]:
    ctx = mp.get_context("fork")
    running: dict = {}
    pending = list(enumerate(jobs))
    try:
        while pending or running:
            while pending and len(running) < max(workers, 1):
                i, args = pending.pop(0)
                parent, child = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_child, args=(child, fn, args), daemon=True)
                t0 = time.perf_counter()  # before the start: a forked child can run before start() returns
                p.start()
                child.close()
                running[p.pid] = (p, parent, i, t0)
            for pid in list(running):
                p, conn, i, t0 = running[pid]
                wall = time.perf_counter() - t0
                if conn.poll():
                    wall = time.perf_counter() - t0  # after the poll: the result may have come after the line above
                    try:
                        out = Outcome(i, "ok", conn.recv(), wall=wall)
                    except EOFError:
                        p.join(timeout=5)
                        out = Outcome(i, "died", message=f"worker {exit_reason(p.exitcode)} before sending a result",
                                      wall=wall)
                elif not p.is_alive():
                    out = Outcome(i, "died", message=f"worker {exit_reason(p.exitcode)} before sending a result",
                                  wall=wall)
                elif timeout_s is not None and wall > timeout_s:
                    p.kill()
                    out = Outcome(i, "hung", message=f"worker hung: no result after {wall:.0f} s", wall=wall)
                else:
                    continue
                p.join(timeout=5)
                conn.close()
                del running[pid]
                yield out
            time.sleep(0.01)
    finally:  # left early (an error in the caller, Ctrl-C): no orphaned route keeps running
        for p, conn, _, _ in running.values():
            if p.is_alive():
                p.kill()
            conn.close()


# ------------------------------------------------------------------------------------------------ Ray
def _ray_call(fn: Callable, args: tuple):
    """The Ray task: one route."""
    return fn(*args)


def import_ray():
    try:
        import ray
    except ImportError as e:
        raise RayMissing(RAY_MISSING) from e
    return ray


def ray_init(address: str, workers: int) -> bool:
    """Start or join Ray unless this process already has; True when this call did (so the caller shuts it down).
    The driver's DRIVE_STACK_* variables (cache, models, maps) go to every task through the job's runtime_env."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    env = {k: v for k, v in os.environ.items() if k.startswith("DRIVE_STACK_")}
    kw: dict = {"runtime_env": {"env_vars": env}} if env else {}
    if address == LOCAL:
        ray.init(num_cpus=max(workers, 1), include_dashboard=False, **kw)
    else:
        ray.init(address=address, **kw)
    return True


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def _ray_dispatch(fn: Callable, jobs: Sequence[tuple], workers: int, address: str, timeout_s: float | None,
                  max_retries: int) -> Iterator[Outcome]:
    ray = import_ray()
    if not jobs:  # nothing left (a resumed run): no Ray to start
        return
    own = ray_init(address, workers)
    task = ray.remote(_ray_call).options(num_cpus=1, max_retries=max(int(max_retries), 0), retry_exceptions=False)

    def capacity() -> int:  # routes in flight: one per CPU of the cluster (a lost node's CPUs drop out)
        return max(int(ray.cluster_resources().get("CPU", 0)), 1)

    pending = list(enumerate(jobs))
    running: dict = {}  # ObjectRef -> (job index, time handed to Ray)
    cap, cap_t = capacity(), time.perf_counter()
    try:
        while pending or running:
            if time.perf_counter() - cap_t > 5.0:
                cap, cap_t = capacity(), time.perf_counter()
            while pending and len(running) < cap:
                i, args = pending.pop(0)
                t0 = time.perf_counter()  # before the submit: the task may start before remote() returns
                running[task.remote(fn, args)] = (i, t0)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            for ref in ready:
                i, t0 = running.pop(ref)
                wall = time.perf_counter() - t0
                try:
                    out = Outcome(i, "ok", ray.get(ref), wall=wall)
                except ray.exceptions.RayError as e:  # the worker or its node died, and so did its retries
                    out = Outcome(i, "died", wall=wall, message=f"worker died on Ray after {1 + max(max_retries, 0)} "
                                  f"attempt(s): {_first_line(e)}")
                yield out
            if timeout_s is not None:
                for ref, (i, t0) in list(running.items()):
                    wall = time.perf_counter() - t0
                    if wall > timeout_s:
                        ray.cancel(ref, force=True)  # kills the worker process; a cancelled task is not retried
                        del running[ref]
                        yield Outcome(i, "hung", message=f"worker hung: no result after {wall:.0f} s", wall=wall)
    finally:
        for ref in running:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort while leaving
                pass
        if own:
            ray.shutdown()


class _ChunkActor:
    """A Ray actor (one CPU) holding the batch function `make(*args)` built once (a world model loaded once)."""

    def __init__(self, make: Callable, args: tuple):
        self.fn = make(*args)

    def run(self, *xs):
        return self.fn(*xs)


class RayChunks:
    """A batch function spread over `n` Ray actors (one CPU each, on any node of the cluster). Each call's rows go in
    n contiguous chunks (`part(i, j)` gives the function's arguments for rows i..j), the actors' dicts of arrays
    come back in order and are concatenated along axis 0. The function must depend only on what it is sent (the
    learner samples every action), so the result is the in-process one. An actor whose process or node dies is
    restarted and its chunk re-run (`max_restarts`, `max_task_retries`)."""

    def __init__(self, make: Callable, args: tuple, address: str, n: int, log=print, what: str = "rollouts"):
        self.ray = ray = import_ray()
        self.own = ray_init(address, n)
        ref = ray.put(args)  # once for all actors (a world model's weights)
        cls = ray.remote(_ChunkActor).options(num_cpus=1, max_restarts=2, max_task_retries=2)
        self.actors = [cls.remote(make, ref) for _ in range(max(n, 1))]
        log(f"{what} on {len(self.actors)} Ray actors ({address}; cluster CPUs: "
            f"{int(ray.cluster_resources().get('CPU', 0))})")

    def map(self, rows: int, part: Callable[[int, int], tuple]) -> dict:
        import numpy as np

        cuts = np.linspace(0, rows, min(len(self.actors), rows) + 1).round().astype(int)
        refs = [a.run.remote(*part(int(i), int(j))) for a, i, j in zip(self.actors, cuts[:-1], cuts[1:])]
        parts = self.ray.get(refs)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
        if self.own:
            self.ray.shutdown()


__all__ = ["LOCAL", "RAY_MISSING", "Outcome", "RayChunks", "RayMissing", "dispatch", "exit_reason", "import_ray", "ray_init"]
