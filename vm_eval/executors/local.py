"""The local executor: units in this process (``workers=1``, or a ``single`` spec: one model in memory) or in a pool
of worker processes on this machine.

Worker processes are started with the ``spawn`` method (no inherited locks, threads or CUDA state) and build
their worker once, in the pool's initializer. At most ``workers`` units are in flight, so when a worker process
dies the units it may have been running are known; a dead pool cannot say which of them killed it, so they are
re-run one at a time on a fresh pool, and only a unit that kills its worker while running alone is charged an
attempt: it is retried until ``max_attempts`` deaths, then reported failed. Innocent units are never failed.

Workers end with the process that started them, even on ``kill -9`` of it: left alone they would keep their memory
and finish their units for nobody (a pool's workers hold both ends of its call queue, so they never see it close).
Each worker asks the kernel for SIGKILL when its parent dies (Linux, `procs.die_with_parent`) and watches its
parent from a thread (`procs.watch_parent`: every platform, and a parent that died before the worker started).
multiprocessing's resource tracker then exits on its own: it ends when the last holder of its pipe has gone.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from vm_eval.executors.base import Executor, Outcome, Unit, WorkerSpec, error_text
from vm_eval.procs import die_with_parent, watch_parent
from vm_eval.errors import BadArgument

_WORKER = None  # the worker callable of this worker process (built by _init)


def _init(parent_pid: int, factory, args) -> None:
    global _WORKER
    die_with_parent(parent_pid)  # before anything slow: the parent may be killed while the factory loads
    watch_parent(parent_pid)
    # One core per worker: N workers must not each start N threads. torch and BLAS read these when first imported
    # (by the factory, after this), so a worker that never needs torch does not pay for importing it here.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    _WORKER = factory(*args)


def _call(payload):
    return _WORKER(payload)


def _end_workers(workers: Sequence[mp.Process], grace_s: float = 5.0) -> None:
    """End the workers of a broken pool that are still alive (SIGTERM, then SIGKILL after `grace_s` seconds).

    CPython 3.11's pool marks itself broken and terminates its workers from its manager thread without the lock
    that `submit` holds. A submit that passed the broken check a moment earlier still starts a worker, which the
    manager never terminates, never sends a stop to, and then joins forever; the interpreter hangs at exit
    waiting for that join (seen here: 3 runs in 10 of the worker-death test). Only this process submits, and
    `close` runs after its last submit, so the list it takes holds every worker the pool started."""
    for p in workers:
        if p.is_alive():
            p.terminate()
    for p in workers:
        p.join(grace_s)
        if p.is_alive():
            p.kill()
            p.join(grace_s)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, workers: int | None = None, max_attempts: int = 3):
        super().__init__(max_attempts)
        self.workers = workers or 1
        if self.workers < 1:
            raise BadArgument(f"workers must be at least 1, got {self.workers}")
        self._pool: ProcessPoolExecutor | None = None

    def describe(self) -> dict:
        return {"executor": self.name, "workers": self.workers}

    def _pool_for(self, spec: WorkerSpec, ctx) -> ProcessPoolExecutor:
        """A fresh pool of this spec's workers for one `map` call (closed when it ends or a worker dies)."""
        self.close()
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_init,
                                         initargs=(os.getpid(), spec.factory, spec.args))
        return self._pool

    def close(self, wait: bool = True) -> None:
        """Shut the pool down. A healthy pool is waited for: shut down without waiting, it could leave a worker
        blocked on its call queue and the interpreter hanging at exit (seen in CI). A broken pool is not waited
        for, and its workers that are still alive are ended here (`_end_workers`)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        broken = not wait or bool(getattr(pool, "_broken", False))
        # Taken before shutdown, which drops the table.
        workers = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=not broken, cancel_futures=True)
        if broken:
            _end_workers(workers)

    def in_process(self, spec: WorkerSpec, n_units: int) -> bool:
        """In process for one worker, a `single` spec, or too few units to give two workers `min_units` each."""
        return self.workers == 1 or spec.single or n_units // max(1, spec.min_units) <= 1

    def map(self, spec: WorkerSpec, units: Sequence[Unit]) -> Iterator[Outcome]:
        if not units:
            return
        if self.workers == 1 or spec.single:
            yield from self._inline(spec, units)
        else:
            yield from self._pooled(spec, units)

    def _inline(self, spec: WorkerSpec, units: Sequence[Unit]) -> Iterator[Outcome]:
        worker = spec.factory(*spec.args)
        for u in units:
            try:
                yield Outcome(u.key, worker(u.payload))
            except Exception as e:  # the unit's own failure; KeyboardInterrupt propagates
                yield Outcome(u.key, error=error_text(e))

    def _pooled(self, spec: WorkerSpec, units: Sequence[Unit]) -> Iterator[Outcome]:
        queue = list(units)[::-1]  # pop() from the end keeps the given order
        suspects: list[Unit] = []  # in flight when a worker died: retried one at a time to find the culprit
        deaths = {u.key: 0 for u in units}  # deaths while running alone (what max_attempts bounds)
        starts = {u.key: 0 for u in units}  # reported as Outcome.attempts
        ctx = mp.get_context("spawn")
        while queue or suspects:
            pool = self._pool_for(spec, ctx)
            running: dict[Future, Unit] = {}
            broken = False
            try:
                while (queue or suspects or running) and not broken:
                    source = suspects if suspects else queue
                    while source and len(running) < (1 if source is suspects else self.workers):
                        u = source.pop()
                        try:
                            fut = pool.submit(_call, u.payload)
                        except BrokenProcessPool:  # a worker died since the last wait: not this unit's doing
                            source.append(u)
                            broken = True
                            break
                        starts[u.key] += 1
                        running[fut] = u
                    # After a failed submit this still collects what finished; the rest fail as the pool broke.
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        u = running.pop(fut)
                        try:
                            yield Outcome(u.key, fut.result(), attempts=starts[u.key])
                        except BrokenProcessPool:
                            broken = True
                            running[fut] = u  # handled with the rest of the in-flight units below
                        except Exception as e:
                            yield Outcome(u.key, error=error_text(e), attempts=starts[u.key])
                if broken:
                    # Settle everything still in flight: a broken pool fails its pending futures at once, and a
                    # unit whose result did come back is not re-run.
                    inflight = []
                    for fut in wait(running).done:
                        u = running[fut]
                        try:
                            yield Outcome(u.key, fut.result(), attempts=starts[u.key])
                        except BrokenProcessPool:
                            inflight.append(u)
                        except Exception as e:
                            yield Outcome(u.key, error=error_text(e), attempts=starts[u.key])
                    if not inflight:  # the pool broke with nothing of ours running: start a fresh one
                        continue
                    if len(inflight) > 1:  # one of them killed its worker: find which, one unit at a time
                        suspects.extend(inflight)
                        continue
                    u = inflight[0]  # it died running alone: its own doing
                    deaths[u.key] += 1
                    if deaths[u.key] >= self.max_attempts:
                        yield Outcome(u.key, error=f"worker process died {deaths[u.key]} times running this unit "
                                                   "(killed, out of memory or crashed)", attempts=starts[u.key])
                    else:
                        suspects.append(u)
            finally:
                self.close(wait=not broken)  # never leave worker processes behind a finished (or abandoned) map
