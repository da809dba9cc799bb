"""The Ray executor: units on Ray actors, so one cluster serves GPU work (generation) and CPU work (decoding, beat
tracking, scoring) at once and each actor loads its model or metrics once.

Each actor asks Ray for the spec's resources (``num_cpus`` / ``num_gpus``); Ray places actors where those are free
and queues the rest. An actor that dies mid-unit is restarted by Ray and the unit re-run on it (``max_restarts``
and ``max_task_retries`` from ``max_attempts``); after that the unit is reported failed with Ray's reason.
`ray` is an optional dependency: ``pip install 'vm-eval[ray]'``.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from vm_eval.executors.base import Executor, Outcome, Unit, WorkerSpec, error_text
from vm_eval.errors import MissingPackage

INSTALL_HINT = "the ray executor needs Ray: pip install 'vm-eval[ray]' (or: pip install ray)"


def import_ray():
    try:
        import ray
    except ImportError:
        raise MissingPackage(INSTALL_HINT) from None
    return ray


FORWARDED_PREFIXES = ("VM_EVAL_", "HF_", "TRANSFORMERS_")


def forwarded_env() -> dict[str, str]:
    """The driver's settings that must hold on the workers too (plugins, config, data and weights folders, hub
    offline mode): Ray's workers start from its raylet's environment, not from the driver's."""
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIXES)}


class _Actor:
    """Holds one worker (built once) and runs units on it."""

    def __init__(self, factory, args):
        self.worker = factory(*args)

    def run(self, payload):
        return self.worker(payload)


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, max_attempts: int = 3):
        super().__init__(max_attempts)
        self.address, self.workers = address, workers
        self.ray = import_ray()

    def _connect(self) -> None:
        if not self.ray.is_initialized():
            kwargs = {"ignore_reinit_error": True, "log_to_driver": False}
            if self.address:
                kwargs["address"] = self.address
            self.ray.init(**kwargs)

    def gpus(self) -> float:
        self._connect()
        return float(self.ray.cluster_resources().get("GPU", 0))

    def describe(self) -> dict:
        out = {"executor": self.name, "address": self.address or "local"}
        if self.ray.is_initialized():
            res = self.ray.cluster_resources()
            out.update(cluster_cpus=res.get("CPU", 0), cluster_gpus=res.get("GPU", 0),
                       nodes=len([n for n in self.ray.nodes() if n.get("Alive")]))
        return out

    def _n_actors(self, spec: WorkerSpec, n_units: int) -> int:
        if self.workers:
            return max(1, min(self.workers, n_units))
        res = self.ray.cluster_resources()
        fits = [res.get("CPU", 0) / spec.resources.cpus] if spec.resources.cpus else []
        if spec.resources.gpus:
            fits.append(res.get("GPU", 0) / spec.resources.gpus)
        return max(1, min(n_units, int(min(fits)) if fits else 1))

    def map(self, spec: WorkerSpec, units: Sequence[Unit]) -> Iterator[Outcome]:
        if not units:
            return
        self._connect()
        ray = self.ray
        retries = self.max_attempts - 1
        actor_cls = ray.remote(_Actor).options(num_cpus=spec.resources.cpus, num_gpus=spec.resources.gpus,
                                               max_restarts=retries, max_task_retries=retries,
                                               runtime_env={"env_vars": forwarded_env()})
        actors = [actor_cls.remote(spec.factory, spec.args) for _ in range(self._n_actors(spec, len(units)))]
        queue = list(units)[::-1]
        running = {}  # object ref -> (unit, actor)
        idle = list(actors)
        try:
            while queue or running:
                while queue and idle:
                    u, a = queue.pop(), idle.pop()
                    running[a.run.remote(u.payload)] = (u, a)
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    u, a = running.pop(ref)
                    try:
                        value = ray.get(ref)
                        idle.append(a)
                        yield Outcome(u.key, value)
                    except ray.exceptions.RayActorError as e:  # died more often than Ray may restart it
                        fresh = actor_cls.remote(spec.factory, spec.args)  # the other units get a live actor
                        actors.append(fresh)
                        idle.append(fresh)
                        yield Outcome(u.key, error=f"Ray worker died running this unit: {e}".splitlines()[0],
                                      attempts=self.max_attempts)
                    except ray.exceptions.RayTaskError as e:
                        idle.append(a)
                        yield Outcome(u.key, error=error_text(e.cause) if e.cause else str(e).splitlines()[0])
        finally:
            for a in actors:
                ray.kill(a)
