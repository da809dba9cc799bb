"""Scoring the demo test split on each executor: local with 1 and 2 processes, Ray on 2 CPUs.

Generation is done once up front (random-retrieval, every test clip); each measured run then rescores it with
the alignment and level metrics (madmom beats, PySceneDetect cuts, frame differences, loudness) on a cold feature
cache, so the figure is the scoring stage's work split into per-clip units. Prints wall time, speed-up against
one process, and Ray's overhead per unit (a no-op unit's round trip through an actor).

    .venv/bin/python benchmarks/executors.py [--clips 10]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vm_eval.data.demo import make_demo  # noqa: E402
from vm_eval.executors import Unit, WorkerSpec, get_executor  # noqa: E402
from vm_eval.runner import RunConfig, execute  # noqa: E402

METRICS = ["duration-error", "loudness-lufs", "beat-visual-f1-cuts", "beat-visual-f1-framediff", "bcs-cuts-200ms",
           "beat-align-framediff"]


def noop_worker():
    return lambda x: x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=None, help="first N clips of the split (default: all)")
    ap.add_argument("--split", default="test", help="demo split (test: 10 clips; train: more)")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        make_demo(d / "data" / "demo")
        base = RunConfig(model="random-retrieval", data=d / "data", results=d / "results", metrics=METRICS,
                         split=args.split, limit=args.clips, progress=False)
        execute(replace(base, metrics=["duration-error"]))  # generation, once
        timings = {}
        # local with 1 worker scores in this process (no pool); 2 workers: a spawn pool of 2
        setups = {"local, 1 process": {"workers": 1}, "local, 2 processes": {"workers": 2},
                  "ray, 2 CPUs": {"executor": "ray", "workers": 2}}
        reference = None
        for name, kw in setups.items():
            shutil.rmtree(d / "results" / ".cache" / "features", ignore_errors=True)
            t0 = time.perf_counter()
            out = execute(replace(base, rescore=True, **kw))
            timings[name] = time.perf_counter() - t0
            aggs = {k: (v["mean"], v["lo"], v["hi"]) for k, v in out.aggregates.items()}
            same = "" if reference is None else ("  (aggregates identical)" if aggs == reference else "  DIFFERENT")
            reference = reference or aggs
            stage = out.run.meta()["timings"]["last_scoring_s"]
            print(f"{name:<22s} {out.counts.get('done', 0)} clips: run {timings[name]:5.1f} s, scoring stage "
                  f"{stage:5.1f} s, speed-up x{timings['local, 1 process'] / timings[name]:.2f}{same}")
        print(f"ray overhead per unit (no-op units through one actor, its start excluded): "
              f"{ray_overhead_per_unit() * 1000:.1f} ms")


def ray_overhead_per_unit(n: int = 200) -> float:
    """Seconds per no-op unit once the actor is up: every map call starts its own actor, so the clock runs from
    the first unit's result to the last one's."""
    ex = get_executor("ray", workers=1)
    list(ex.map(WorkerSpec(noop_worker), [Unit("warm", 0)]))  # Ray's own worker processes warm
    arrivals = [time.perf_counter() for _ in ex.map(WorkerSpec(noop_worker), [Unit(str(i), i) for i in range(n)])]
    return (arrivals[-1] - arrivals[0]) / (n - 1)


if __name__ == "__main__":
    main()
