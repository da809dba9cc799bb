"""Leaderboard speed with many results: synthetic runs x clips in the run store's format (tests'
write_synthetic: 9 metric identities per run, one metric in two backbones), then

  first load      load_results (run.json + scores.parquet + manifest) and the per-clip matrix, what the app does
                  once per results folder (cached afterwards)
  filter change   the cells, ranks and display table of the full table for a new filter: family (stored
                  aggregates), category and source (recomputed with the Poisson bootstrap, 1000 resamples);
                  and the summary's records + like-with-like summary (vm_eval.summary) for the same filters
  app rerun       the same filter change through Streamlit's AppTest (script rerun incl. widgets, tables and, on
                  the summary view, which a bare URL opens, the forest plots), on the summary and the full table

    .venv/bin/python benchmarks/leaderboard.py [--runs 100] [--clips 1000]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):
    sys.path.insert(0, str(p))

from leaderboard_results import write_synthetic  # noqa: E402

from leaderboard.data import load_results  # noqa: E402
from leaderboard.records import records  # noqa: E402
from leaderboard.table import ClipMatrix, Filters, cells, filter_runs, wide  # noqa: E402
from leaderboard.views.summary import default_metrics  # noqa: E402
from vm_eval.summary import summarize  # noqa: E402


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--clips", type=int, default=1000)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.runs} runs x {args.clips} clips")
    with tempfile.TemporaryDirectory() as d:
        results = Path(d) / "results"
        t0 = time.perf_counter()
        write_synthetic(results, args.runs, args.clips)
        print(f"writing the synthetic results: {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        res = load_results(results)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        matrix = ClipMatrix.build(res)
        t_matrix = time.perf_counter() - t0
        print(f"first load: load_results {t_load:.2f} s + clip matrix {t_matrix:.2f} s = {t_load + t_matrix:.2f} s "
              f"({len(res.scores):,} per-clip scores, matrix {matrix.values.shape[0]} x {matrix.values.shape[1]})")
        views = {"no filter (stored aggregates)": Filters(), "family": Filters(families=("baseline",)),
                 "category (recomputed)": Filters(categories=("promo",)),
                 "category x2 + source (recomputed)": Filters(categories=("promo", "other"), sources=("real",))}
        for name, f in views.items():
            t, _ = timed(lambda: wide(res, cells(res, f, matrix), filter_runs(res, f)))
            print(f"filter change, full table, {name:<36s} {t * 1000:7.0f} ms")

        def summary(f: Filters):
            recs = records(res, f, matrix)
            return summarize(recs, default_metrics(recs))

        for name, f in views.items():
            t, _ = timed(lambda: summary(f))
            print(f"filter change, summary,    {name:<36s} {t * 1000:7.0f} ms")
        from streamlit.testing.v1 import AppTest

        os.environ["VM_EVAL_RESULTS"] = str(results)
        for view in ("summary", "runs"):
            at = AppTest.from_file(str(ROOT / "leaderboard" / "app.py"), default_timeout=600)
            at.query_params["view"] = view
            t0 = time.perf_counter()
            at.run()
            assert not at.exception, at.exception
            print(f"app first run, {view} view (load + view): {time.perf_counter() - t0:.2f} s")
            for label, key, value in (("category", "filter-category", ["promo"]),
                                      ("source", "filter-source", ["real"]),
                                      ("family", "filter-family", ["baseline"])):
                t0 = time.perf_counter()
                at.sidebar.multiselect(key=key).set_value(value).run()
                assert not at.exception, at.exception
                print(f"app rerun, {view} view, after a {label} filter change: "
                      f"{(time.perf_counter() - t0) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
