"""Cost per clip of the Frechet distances on further backbones (issue 15): fd-passt, fd-openl3-music-mel256-512 and
fad-mert-v1-95m, on CPU, with random weights at the published architectures (PaSST-S, OpenL3 mel256, MERT-v1-95M:
the real checkpoints have the same shapes, so the same cost).

    .venv/bin/python benchmarks/metrics_new_fd.py [--seconds 10 30] [--repeats 2] [--clips 20] [--threads N]

For each metric: building it (checkpoint read + network), then the embedding of one stereo 44.1 kHz clip per length
(best of the repeats, after a warm-up clip: resampy compiles its kernel with numba on first use) with the rows it
gives, then the set-level step (reference statistics + score_set: FD, the 200-resample clip bootstrap and FAD-inf)
on --clips generated and --clips reference clips of the longest length, their rows drawn at random with the
embedding's real shape, timed twice: with the BLAS threads the process has (after torch ran in it, as in a run)
and with one BLAS thread. Nothing here asserts a speed: it measures.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import vm_eval  # noqa: E402,F401  first: installs the compat import hook (torchvision) transformers needs
from metrics_new import best_of  # noqa: E402  this folder's other metrics benchmark: one timing helper


def write_checkpoints(root: Path) -> None:
    """Random weights under the published names, at the published sizes (helpers shared with the tests)."""
    import torch
    from test_backbone_passt import random_passt
    from test_fd_backbones import write_mert_folder, write_openl3_h5

    from metrics.backbones import passt as P
    from metrics.backbones.openl3 import CHECKPOINT_FILES

    (root / "passt").mkdir(parents=True)
    torch.save(random_passt(0).state_dict(), root / "passt" / P.CHECKPOINT_FILE)
    write_openl3_h5(root / "openl3-mel256-music" / CHECKPOINT_FILES[0])
    write_mert_folder(root / "mert-v1-95m")  # MERT-v1-95M sizes (configuration_MERT.py defaults)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0, 30.0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--clips", type=int, default=4, help="clips per side for the set-level step")
    ap.add_argument("--threads", type=int, help="torch and BLAS threads (default: what the machine gives)")
    ap.add_argument("--metrics", nargs="+", default=["fd-passt", "fd-openl3-music-mel256-512", "fad-mert-v1-95m"])
    args = ap.parse_args()

    import numpy as np
    import torch
    from backbone_helpers import signal
    from threadpoolctl import threadpool_limits

    if args.threads:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads, user_api="blas")
    print(f"CPUs {os.cpu_count()}, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights"
        t0 = time.perf_counter()
        write_checkpoints(weights)
        print(f"random checkpoints written in {time.perf_counter() - t0:.1f} s")
        os.environ["VM_EVAL_WEIGHTS"] = str(weights)
        from vm_eval.registries import METRICS
        from vm_eval.scoring.resolve import build

        rng = np.random.default_rng(0)
        for name in args.metrics:
            t0 = time.perf_counter()
            bound = build(METRICS.get(name))
            t_build = time.perf_counter() - t0
            ext = bound.inputs["audio"]
            ext(signal(1.0, seed=99), 44_100)  # warm-up
            print(f"== {name}: built in {t_build:.1f} s")
            rows = None
            for seconds in args.seconds:
                audio = signal(seconds, seed=1)
                (t, cpu), emb = best_of(lambda: ext(audio, 44_100), args.repeats)
                rows = emb.shape
                print(f"  {seconds:g} s stereo 44.1 kHz clip: {t:.2f} s per clip (CPU {cpu:.2f} s; {seconds / t:.1f}x "
                      f"real time), rows {emb.shape[0]} x {emb.shape[1]}")
            gen = {f"g{i:03d}": {"audio": rng.standard_normal(rows).astype(np.float32)} for i in range(args.clips)}
            ref = [rng.standard_normal(rows).astype(np.float32) + 0.1 for _ in range(args.clips)]
            t0 = time.perf_counter()
            stats = bound.metric.reference_statistics(ref)
            t_ref = time.perf_counter() - t0
            (t_set, c_set), score = best_of(lambda: bound.metric.score_set(gen, stats, seed=0), 1)
            with threadpool_limits(1, user_api="blas"):
                (t_one, c_one), _ = best_of(lambda: bound.metric.score_set(gen, stats, seed=0), 1)
            print(f"  set step, {args.clips} + {args.clips} clips of {rows[0]} rows: reference statistics "
                  f"{t_ref:.2f} s, score_set {t_set:.2f} s (CPU {c_set:.2f} s); with one BLAS thread {t_one:.2f} s "
                  f"(CPU {c_one:.2f} s); FD {score.value:.4g}, FAD-inf {score.extra['fad-inf']:.4g}")


if __name__ == "__main__":
    main()
