"""Scoring benchmark: first scoring of a run vs `--rescore` (feature cache), with the cache hit rate.

    .venv/bin/python benchmarks/scoring.py [--model ground-truth] [--metrics a,b]

Uses the demo test split and every metric that can run here unless --metrics says otherwise; a fresh results
folder (and so a cold cache) each time. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ground-truth")
    ap.add_argument("--metrics")
    args = ap.parse_args()
    import vm_eval  # noqa: F401
    from vm_eval.data.demo import make_demo
    from vm_eval.runner import RunConfig, execute

    work = Path(tempfile.mkdtemp(prefix="vm-eval-bench-"))
    try:
        make_demo(work / "data" / "demo")
        cfg = RunConfig(model=args.model, data=work / "data", results=work / "results", progress=False,
                        metrics=args.metrics.split(",") if args.metrics else None)
        t0 = time.perf_counter()
        first = execute(cfg)
        total = time.perf_counter() - t0
        t_first = first.run.meta()["timings"]["last_scoring_s"]
        second = execute(RunConfig(**{**cfg.__dict__, "rescore": True}))
        timings = second.run.meta()["timings"]
        t_re, cache = timings["last_scoring_s"], timings["feature_cache"]
        n = first.counts["done"]
        print(f"model {args.model}, {n} clips, {len(first.aggregates)} aggregates; whole first command {total:.1f} s")
        print(f"first scoring        {t_first:8.2f} s  ({n / t_first:.2f} clips/s)")
        print(f"--rescore            {t_re:8.2f} s  -> {t_first / t_re:.1f}x faster")
        hits, misses = cache["hits"], cache["misses"]
        print(f"feature cache on --rescore: {hits} hits, {misses} misses ({hits / max(1, hits + misses):.0%} hit rate)")
        same = all(abs(first.aggregates[k]["mean"] - second.aggregates[k]["mean"]) < 1e-12 for k in first.aggregates)
        print(f"aggregates identical after --rescore: {same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
