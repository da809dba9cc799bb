"""Load benchmark of the listening-test server: N simulated raters at once (studies.server.loadtest) against
`vm-eval study serve` in its own process on loopback (one uvicorn worker, SQLite in WAL mode), on a synthetic study
(the tests' tiny study: every rater a design slot, 4 trials x the default 4 questions). Prints request latency
percentiles per kind, throughput, and the correctness check (votes in the database == votes acknowledged).

    .venv/bin/python benchmarks/study_load.py [--raters 100 200] [--trials 4]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):
    sys.path.insert(0, str(p))

from test_study_server import build_study  # noqa: E402

from studies.server.loadtest import simulate  # noqa: E402
from studies.server.storage import Repository  # noqa: E402
from vm_eval.media import Audio, write_video  # noqa: E402


def tiny_media(folder: Path) -> bytes:
    p = folder / "v.mp4"
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000, dtype=np.float32)[None]
    write_video(p, [np.full((16, 16, 3), i * 40, np.uint8) for i in range(5)], 10, Audio(tone, 16000))
    return p.read_bytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one(raters: int, trials: int, work: Path) -> None:
    study = build_study(work / f"study-{raters}", tiny_media(work), raters=raters, trials=trials, min_listen=0.2)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "vm_eval.cli", "study", "serve", str(study), "--port", str(port),
                               "--admin-token", "bench"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})  # (a full pipe would block its log)
    try:
        import httpx

        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/raters/probe/state", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        res = simulate(f"http://127.0.0.1:{port}", raters, listen_s=0.3, replay=0.2, seed=0)
    finally:
        server.terminate()
        server.wait(30)
    stored = len(Repository(f"sqlite:///{study / 'votes.sqlite'}").votes())
    print(f"\n{raters} raters x {trials} trials at once: {res.requests} requests in {res.wall_s:.1f} s "
          f"({res.requests / res.wall_s:.0f} req/s), {res.completed} raters completed, {res.retries} resent, "
          f"errors {dict(res.errors) or 'none'}")
    print(f"votes acknowledged {res.acknowledged}, in the database {stored}, replays answered as duplicates "
          f"{res.duplicate_acks}: {'OK' if stored == res.acknowledged else 'MISMATCH'}")
    print(f"  {'kind':<13s} {'n':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
    for kind, p in res.percentiles().items():
        print(f"  {kind:<13s} {p['n']:>6d} {p['p50']:>8.1f} {p['p95']:>8.1f} {p['p99']:>8.1f} {p['max']:>8.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raters", type=int, nargs="+", default=[100, 200])
    ap.add_argument("--trials", type=int, default=4)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as d:
        for n in args.raters:
            one(n, args.trials, Path(d))


if __name__ == "__main__":
    main()
