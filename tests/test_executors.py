"""Executors (vm_eval.executors): the local process pool and Ray give the same results as in-process work; a
worker that dies mid-unit is retried (bounded) and otherwise reported; the runner's scoring stores the same
aggregates whichever executor ran it, and a second run is fully cached."""
from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
from executor_workers import dying_worker, dying_worker_for_the_late_spawn, square_worker

from vm_eval.executors import Unit, WorkerSpec, get_executor
from vm_eval.runner import RunConfig, execute

UNITS = [Unit(str(i), i) for i in range(12)]


def run_all(executor, spec, units):
    return {o.key: o for o in executor.map(spec, units)}


@pytest.mark.parametrize("workers", [1, 2])
def test_local_results_equal_inline_and_workers_build_once(workers, tmp_path, monkeypatch):
    builds = tmp_path / "builds"
    monkeypatch.setenv("EXECUTOR_TEST_BUILDS", str(builds))
    out = run_all(get_executor("local", workers), WorkerSpec(square_worker, (1,)), UNITS + [Unit("bad", "raise")])
    assert {k: o.value[0] for k, o in out.items() if k != "bad"} == {str(i): i * i + 1 for i in range(12)}
    assert out["bad"].error == "ValueError: this unit fails"  # a unit's own failure is its outcome
    pids = {o.value[1] for k, o in out.items() if k != "bad"}
    built = builds.read_text().split()
    assert len(built) <= workers and {str(p) for p in pids} <= set(built)  # one build per worker, not per unit


def test_local_worker_death_is_retried_then_reported(tmp_path):
    units = [Unit(n, n) for n in ("a", "die-once-1", "b", "die-always", "c", "die-once-2")]
    out = run_all(get_executor("local", 2, max_attempts=3), WorkerSpec(dying_worker, (str(tmp_path),)), units)
    assert {k for k, o in out.items() if o.ok} == {"a", "b", "c", "die-once-1", "die-once-2"}
    assert out["die-once-1"].value == "die-once-1" and out["die-once-1"].attempts >= 2
    assert not out["die-always"].ok and "died 3 times" in out["die-always"].error


def test_local_pool_breaking_between_wait_and_submit_loses_nothing(tmp_path, monkeypatch):
    """A worker can die after `wait` returned and before the next submit, which then raises BrokenProcessPool (a
    CI failure). The refused unit is not charged and every unit still gets exactly one outcome."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    import vm_eval.executors.local as local

    calls = {"n": 0}

    class RefusesThirdSubmit(ProcessPoolExecutor):  # stands in for a pool whose worker just died
        def submit(self, fn, /, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 3:
                raise BrokenProcessPool("a child process terminated abruptly")
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(local, "ProcessPoolExecutor", RefusesThirdSubmit)
    outcomes = list(get_executor("local", 2).map(WorkerSpec(square_worker, (0,)), UNITS[:6]))
    assert sorted(o.key for o in outcomes) == sorted(u.key for u in UNITS[:6])  # each once
    assert all(o.ok for o in outcomes) and {o.key: o.value[0] for o in outcomes} == {str(i): i * i for i in range(6)}
    assert calls["n"] == 7  # six units plus the refused submit, retried on a fresh pool


def _still_running(pid: int, grace_s: float = 5.0) -> bool:
    """Whether process `pid` is still running (neither gone nor a zombie) after up to `grace_s` seconds."""
    deadline = time.monotonic() + grace_s
    while True:
        try:
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in "ZX" or time.monotonic() > deadline:
            return state not in "ZX"
        time.sleep(0.05)


def test_a_worker_started_as_the_pool_breaks_is_ended(tmp_path, monkeypatch):
    """CPython 3.11's pool can start a worker after it has broken (its manager marks it broken without the lock
    a submit holds), and that worker was left alive: the interpreter then hung at exit joining it (3 runs in 10
    of the worker-death test). Forced here: the second worker is started while the first is about to die, and
    enters the pool's table only once the manager has terminated the workers it knew of. close() must end it."""
    from concurrent.futures import ProcessPoolExecutor

    import vm_eval.executors.local as local

    started = []

    class SpawnsLate(ProcessPoolExecutor):
        first_pool = [True]

        def _spawn_process(self):
            late = self.first_pool[0] and len(self._processes) == 1
            if late:  # the first worker must be built first, so that it is the one that takes "die-always"
                deadline = time.monotonic() + 60
                while not (tmp_path / "built").exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
                (tmp_path / "late-spawning").touch()
            super()._spawn_process()
            started.extend(p for p in self._processes.values() if p not in started)
            if late:  # hide the new worker from the manager until it has handled the first one's death
                self.first_pool[0] = False
                pid, proc = self._processes.popitem()
                (tmp_path / "late-pid.tmp").write_text(str(pid))
                (tmp_path / "late-pid.tmp").rename(tmp_path / "late-pid")
                (tmp_path / "late-started").touch()  # now the first worker may die
                deadline = time.monotonic() + 60
                # The manager closes the call queue once it has terminated, and sent a stop to, the workers it knows
                # of; it then waits for the lock this submit holds, and joins every worker in the table.
                while not self._call_queue._closed and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert self._broken, "the first worker never died"
                self._processes[pid] = proc

    if not hasattr(ProcessPoolExecutor, "_spawn_process"):
        pytest.skip("this Python's pool starts its workers differently")
    monkeypatch.setattr(local, "ProcessPoolExecutor", SpawnsLate)
    try:
        units = [Unit(n, n) for n in ("die-always", "a")]
        spec = WorkerSpec(dying_worker_for_the_late_spawn, (str(tmp_path), 60.0))
        out = run_all(get_executor("local", 2, max_attempts=1), spec, units)
        assert out["a"].ok and not out["die-always"].ok  # the innocent unit is re-run, the culprit reported
        assert len(started) >= 3  # the late worker, then a fresh pool per suspect
        # Asked of the kernel: is_alive() can say True for a child that the pool's manager thread reaped a moment
        # earlier (both threads wait on it; the loser of that race sees no child and reports it still running).
        assert not [p.pid for p in started if _still_running(p.pid)]  # nothing left for the interpreter to hang on
    finally:
        for p in started:  # a regression must fail this test, not hang the suite at exit
            if p.is_alive():
                p.kill()


def test_unknown_executor_and_missing_ray_message(monkeypatch):
    with pytest.raises(ValueError, match="unknown executor"):
        get_executor("slurm")
    import builtins

    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray":
            raise ImportError("no ray")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(RuntimeError, match=r"pip install 'vm-eval\[ray\]'"):
        get_executor("ray")


def scored(run) -> tuple[str, list]:
    meta = run.meta()
    records = sorted((r["clip_id"], r["metric_key"], r["status"], r.get("value"), r.get("inputs_sha"))
                     for r in run.scores.latest("clip_id", "metric_key").values())
    return json.dumps(meta["aggregates"], sort_keys=True), records


METRICS = ["duration-error", "loudness-lufs", "test-rms", "test-av"]


@pytest.fixture(scope="module")
def inline_run(data_dir, tmp_path_factory):
    import testsystems  # noqa: F401

    return execute(RunConfig(model="random-retrieval", data=data_dir, results=tmp_path_factory.mktemp("inline"),
                             metrics=METRICS, limit=8, progress=False)).run


def test_scoring_in_worker_processes_stores_the_same_results(inline_run, data_dir, tmp_path, monkeypatch):
    from vm_eval.executors.local import LocalExecutor

    monkeypatch.setenv("VM_EVAL_PLUGINS", "testsystems")  # the spawned workers register the test metrics too
    pools, real_pool = [], LocalExecutor._pooled
    monkeypatch.setattr(LocalExecutor, "_pooled", lambda self, spec, units: pools.append(len(units))
                        or real_pool(self, spec, units))
    run = execute(RunConfig(model="random-retrieval", data=data_dir, results=tmp_path, metrics=METRICS, limit=8,
                            workers=2, progress=False)).run
    assert pools[-1] == 8 and len(pools) == 2  # input files' features, then the 8 clips, in the worker processes
    assert scored(run) == scored(inline_run)
    assert run.meta()["last_command"]["workers"] == 2
    assert run.meta()["timings"]["feature_cache"]["misses"] > 0  # the workers' extractions are counted
    n = len(list(run.scores))
    execute(RunConfig(model="random-retrieval", data=data_dir, results=tmp_path, metrics=METRICS, limit=8,
                      workers=2, progress=False))
    assert len(list(run.scores)) == n  # a second run is fully cached
    execute(RunConfig(model="random-retrieval", data=data_dir, results=tmp_path, metrics=METRICS, limit=8,
                      workers=2, progress=False, rescore=True))
    cache = run.meta()["timings"]["feature_cache"]
    assert pools[-1] == 8 and cache["misses"] == 0 and cache["hits"] >= 8  # rescored in workers from the cache


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is installed by scripts/install.sh")
    from conftest import REPO, TESTS

    # Ray's workers start from its raylet, not from this process: they get the test plugins and paths explicitly
    env = {"VM_EVAL_PLUGINS": "testsystems", "PYTHONPATH": f"{TESTS}:{REPO}", "HF_HUB_OFFLINE": "1"}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield ray
    ray.shutdown()


def test_ray_executor(ray_local, tmp_path, inline_run, data_dir, monkeypatch):
    ex = get_executor("ray", max_attempts=3)
    out = run_all(ex, WorkerSpec(square_worker, (1,)), UNITS + [Unit("bad", "raise")])
    assert {k: o.value[0] for k, o in out.items() if k != "bad"} == {str(i): i * i + 1 for i in range(12)}
    assert "this unit fails" in out["bad"].error
    units = [Unit(n, n) for n in ("a", "die-once-1", "b", "die-always")]
    out = run_all(ex, WorkerSpec(dying_worker, (str(tmp_path),)), units)
    assert {k for k, o in out.items() if o.ok} == {"a", "b", "die-once-1"}  # died once: retried on a new actor
    assert not out["die-always"].ok and "died" in out["die-always"].error
    assert ex.describe()["cluster_cpus"] == 2
    monkeypatch.setenv("VM_EVAL_PLUGINS", "testsystems")
    # resume across executors: half the clips locally, the rest (generation and scoring) on Ray
    cfg = RunConfig(model="random-retrieval", data=data_dir, results=tmp_path / "r", metrics=METRICS, limit=4,
                    progress=False)
    run = execute(cfg).run
    first = list(run.generation)
    execute(replace(cfg, limit=8, executor="ray"))
    gen = list(run.generation)
    assert gen[:4] == first and len(gen) == 8  # the local clips were not redone
    assert scored(run) == scored(inline_run)  # same audio, records and byte-identical aggregates as in-process
    assert run.meta()["executor"]["executor"] == "ray"
    n_scores = len(list(run.scores))
    execute(replace(cfg, limit=8, executor="ray"))
    assert len(list(run.generation)) == 8 and len(list(run.scores)) == n_scores  # fully cached


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_worker_killed_mid_run_is_retried_and_the_run_completes(executor, data_dir, tmp_path, monkeypatch,
                                                                  request):
    import importlib

    from vm_eval.registries import METRICS

    if executor == "ray":
        request.getfixturevalue("ray_local")
    importlib.reload(importlib.import_module("dying_metric"))  # (re-)registers the metric here
    try:
        monkeypatch.setenv("VM_EVAL_PLUGINS", "dying_metric")
        monkeypatch.setenv("VM_EVAL_TEST_DIE_ONCE_DIR", str(tmp_path))
        monkeypatch.setenv("VM_EVAL_TEST_DIE_ONCE", "demo-001,demo-005")
        out = execute(RunConfig(model="random-retrieval", data=data_dir, results=tmp_path / "r", limit=8,
                                metrics=["duration-error", "test-die-once"], workers=2, executor=executor,
                                progress=False))
    finally:
        METRICS.remove("test-die-once")
    assert (tmp_path / "demo-001").exists() and (tmp_path / "demo-005").exists()  # both workers did die
    latest = out.run.scores.latest("clip_id", "metric_key").values()
    assert len(latest) == 16 and {r["status"] for r in latest} == {"done"} and out.failed == 0
