"""Executors for the runner's units of work (generation per clip batch, scoring per clip): `local` (this process
or a pool of processes on this machine; the default) and `ray` (a Ray cluster; optional dependency). The same
command stores the same results whichever executor ran it. See executors.base for the interface."""
from __future__ import annotations

from vm_eval.executors.base import Executor, Outcome, Resources, Unit, WorkerSpec
from vm_eval.errors import BadArgument

EXECUTORS = ("local", "ray")

__all__ = ["EXECUTORS", "Executor", "Outcome", "Resources", "Unit", "WorkerSpec", "get_executor"]


def get_executor(name: str = "local", workers: int | None = None, address: str | None = None,
                 max_attempts: int = 3) -> Executor:
    """An executor by name; `ray` raises RuntimeError saying what to install when Ray is missing."""
    if name == "local":
        from vm_eval.executors.local import LocalExecutor

        if address:
            raise BadArgument("--ray-address is for --executor ray")
        return LocalExecutor(workers, max_attempts)
    if name == "ray":
        from vm_eval.executors.ray_executor import RayExecutor

        return RayExecutor(address, workers, max_attempts)
    raise BadArgument(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")
