"""Executors (vm_eval.executors): the local process pool and Ray give the same results as in-process work; a
worker that dies mid-unit is retried (bounded) and otherwise reported; the runner's scoring stores the same
aggregates whichever executor ran it, and a second run is fully cached."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
from executor_workers import dying_worker, square_worker

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
