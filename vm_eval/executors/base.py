"""The executor interface: run independent units of work on workers that each load their heavy state once.

A *worker* is built once per worker process (or Ray actor) by ``spec.factory(*spec.args)``, which returns a
callable taking one unit's payload and returning its result. Expensive state (models, metric backbones) lives in
that callable, never in the payload. Units are independent and their results come back as they finish; the
caller (the runner) is the only writer of the run store, so results land in the journals exactly as they would
from a single process, and aggregates do not depend on completion order.

Failures: an exception raised by the worker callable is that unit's result (``Outcome.error``); callers that want
per-item failures (a clip whose metric raised) catch them inside the worker and return them as records. A worker
that DIES mid-unit (killed, out of memory, segfault) loses only the units it was running: they are retried on a
fresh worker up to ``max_attempts`` times in all, then reported failed with the reason.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Resources:
    """What one worker needs: CPU cores and GPUs (fractions allowed for Ray)."""

    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class WorkerSpec:
    """How to build a worker: ``factory(*args)`` -> callable(payload) -> result. For process and Ray executors the
    factory must be importable (a module-level function) and the args picklable."""

    factory: Callable[..., Callable[[Any], Any]]
    args: tuple = ()
    resources: Resources = field(default_factory=Resources)
    name: str = "work"
    single: bool = False  # heavy state (a model): an executor on this machine builds one worker, in this process
    min_units: int = 1  # a worker process is worth starting only for at least this many units (start-up costs)


@dataclass(frozen=True)
class Unit:
    key: str
    payload: Any


@dataclass
class Outcome:
    key: str
    value: Any = None
    error: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


class Executor(ABC):
    """Runs units on workers; see the module docstring."""

    name: str = "executor"

    def __init__(self, max_attempts: int = DEFAULT_MAX_ATTEMPTS):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts

    @abstractmethod
    def map(self, spec: WorkerSpec, units: Sequence[Unit]) -> Iterator[Outcome]:
        """Yield one Outcome per unit, in completion order."""

    def describe(self) -> dict:
        """What ran the work, for the run's provenance (never part of its identity)."""
        return {"executor": self.name}

    def in_process(self, spec: WorkerSpec, n_units: int) -> bool:
        """Whether this executor would run these units in the calling process; a caller that already holds the
        worker's state (metrics with their backbones) may then use it instead of having a worker built."""
        return False

    def gpus(self) -> float:
        """GPUs this executor can hand to units (0 for the local executor: local work shares this process's)."""
        return 0.0

    def close(self) -> None:
        """Release any workers still held: each `map` call starts its workers (which load their state once for all
        its units) and shuts them down when it ends; this covers a map that was abandoned half-way."""


def error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"
