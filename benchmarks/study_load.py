"""Load benchmark of the listening-test server: N simulated raters at once (studies.server.loadtest) against
`vm-eval study serve` in its own process(es) on loopback, on a synthetic study (the tests' tiny study: every rater a
design slot, --trials trials x the default 4 questions), on each backend asked for:

- ``sqlite``: one uvicorn worker, SQLite in WAL mode (the embedded default; the baseline of the ratios);
- ``postgres``: ``--workers`` uvicorn workers on a throwaway PostgreSQL server (tests/pg.py: Debian's binaries,
  initdb in a temporary folder, fsync on, synchronous_commit=off: the durability of SQLite's WAL mode with
  synchronous=NORMAL, so that both sides wait for the disk alike).

Each run is bounded in time (--time-limit; raters still going then send nothing more and are reported as cut off).
Prints per run the request latency percentiles per kind, throughput, and the correctness check (votes stored ==
votes acknowledged, no (rater, trial, question) stored twice, one rater per id); then throughput and p95 latency
of each backend as a ratio to one worker on SQLite. The simulated raters run in this process, on the same cores
as the server: on a small machine they take a share of the CPU the server could use.

    .venv/bin/python benchmarks/study_load.py [--raters 500] [--workers 4] [--trials 2] [--time-limit 240]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):
    sys.path.insert(0, str(p))

import pg  # noqa: E402
from test_study_server import build_study  # noqa: E402

from studies.server.loadtest import LoadResult, free_port, simulate, wait_until_serving  # noqa: E402
from studies.server.storage import Repository  # noqa: E402
from vm_eval.media import Audio, write_video  # noqa: E402

LISTEN_S = 0.3  # real seconds a simulated rater plays each side (the study's minimum is 0.2 s)


def tiny_media(folder: Path) -> bytes:
    p = folder / "v.mp4"
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000, dtype=np.float32)[None]
    write_video(p, [np.full((16, 16, 3), i * 40, np.uint8) for i in range(5)], 10, Audio(tone, 16000))
    return p.read_bytes()


@dataclass
class Run:
    label: str
    workers: int
    result: LoadResult
    stored: int
    distinct: int  # distinct (rater, trial, question) among the stored votes
    raters_stored: int


def one(label: str, db_url: str, workers: int, raters: int, trials: int, time_limit: float, work: Path) -> Run:
    study = build_study(work / f"study-{label}", tiny_media(work), raters=raters, trials=trials, min_listen=0.2)
    port = free_port()
    log = work / f"serve-{label}.log"
    with open(log, "wb") as fh:  # a file, not a pipe: a full pipe would block the server's log
        server = subprocess.Popen(
            [sys.executable, "-m", "vm_eval.cli", "study", "serve", str(study), "--port", str(port), "--db", db_url,
             "--workers", str(workers), "--admin-token", "bench"],
            stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, server, lambda: log.read_text(errors="replace"), workers=workers)
        res = simulate(url, raters, listen_s=LISTEN_S, replay=0.2, seed=0, time_limit_s=time_limit)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    repo = Repository(db_url)
    votes = repo.votes()
    n_raters = len(repo.raters())
    repo.engine.dispose()
    run = Run(label, workers, res, len(votes), len({(v.rater_id, v.trial_id, v.question) for v in votes}), n_raters)
    report(run, trials)
    return run


def report(run: Run, trials: int) -> None:
    res = run.result
    ok = run.stored == res.acknowledged and run.distinct == run.stored
    print(f"\n{run.label}: {res.raters} raters x {trials} trials at once, {run.workers} worker(s): {res.requests} "
          f"requests in {res.wall_s:.1f} s ({res.throughput:.0f} req/s), {res.completed} raters completed, "
          f"{res.cut_off} cut off by the time limit, {res.retries} resent, errors {dict(res.errors) or 'none'}")
    print(f"votes acknowledged {res.acknowledged}, stored {run.stored}, distinct (rater, trial, question) "
          f"{run.distinct}, raters stored {run.raters_stored}, replays answered as duplicates {res.duplicate_acks}: "
          f"{'OK' if ok else 'MISMATCH'}")
    for line in res.error_examples[:3]:
        print(f"  e.g. {line}")
    print(f"  {'kind':<13s} {'n':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
    for kind, p in res.percentiles().items():
        if p["n"]:
            print(f"  {kind:<13s} {p['n']:>6d} {p['p50']:>8.1f} {p['p95']:>8.1f} {p['p99']:>8.1f} {p['max']:>8.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raters", type=int, default=500)
    ap.add_argument("--workers", type=int, default=4, help="uvicorn workers on PostgreSQL (SQLite always has 1)")
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=240.0, metavar="S", help="seconds per run (default 240)")
    ap.add_argument("--backends", nargs="+", choices=("sqlite", "postgres"), default=["sqlite", "postgres"])
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; "
          f"python {sys.version.split()[0]}")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        if "sqlite" in args.backends:
            runs.append(one("sqlite", f"sqlite:///{work / 'votes.sqlite'}", 1, args.raters, args.trials,
                            args.time_limit, work))
        if "postgres" in args.backends:
            bindir = pg.find_bindir()
            if bindir is None:
                sys.exit(pg.missing_reason())
            server = pg.start(bindir, fsync=True)
            try:
                runs.append(one("postgres", server.create_database("bench"), args.workers, args.raters,
                                args.trials, args.time_limit, work))
            finally:
                pg.stop(server)
    base = next((r for r in runs if r.label == "sqlite"), None)
    if base is not None:
        b95 = base.result.percentiles()["all"]["p95"]
        print(f"\nratio to 1 worker on SQLite ({base.result.throughput:.0f} req/s, p95 {b95:.1f} ms):")
        for r in runs:
            p95 = r.result.percentiles()["all"]["p95"]
            ratio = r.result.throughput / base.result.throughput
            print(f"  {r.label:<9s} {r.workers} worker(s): throughput x{ratio:.2f}, p95 latency x{p95 / b95:.2f}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
