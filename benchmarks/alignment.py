"""Alignment benchmark: beat tracking and visual-change analysis over the demo clips.

    .venv/bin/python benchmarks/alignment.py [--out DIR] [--clips N] [--workers 1 2]

For each extractor (madmom beats and onsets; frame-difference changes, PySceneDetect cuts, optical-flow peaks)
it prints, over the demo clips with music, the compute time, clips per second and the real-time factor
(seconds of media analysed per second of compute; > 1 is faster than real time), single process. Then the
whole per-clip feature set (decode + every extractor, as the alignment metrics need it) runs in a process pool
of 1 and of 2 workers (spawned processes, one BLAS/OpenCV thread each) and it prints clips per second and the
speed-up. Nothing here asserts a speed: it measures.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import vm_eval  # noqa: E402,F401  first: installs the compat hook madmom needs

FPS, SIZE, SR = 25.0, (128, 128), 44100


def extractors() -> dict:
    from metrics.beats import BeatTimes, OnsetTimes
    from metrics.visual_change import FlowPeaks, FrameDiffChanges, SceneCuts

    return {"audio": {"madmom beats (RNN x8 + DBN)": BeatTimes(), "madmom onsets (RNN + peaks)": OnsetTimes()},
            "video": {"FrameDiffChanges": FrameDiffChanges(), "SceneCuts adaptive 3.0": SceneCuts("adaptive"),
                      "SceneCuts content 27.0": SceneCuts("content"),
                      "FlowPeaks (Farneback)": FlowPeaks(peaks="adaptive")}}


def single_threaded() -> None:
    """One BLAS and one OpenCV thread per process, so N workers use N cores."""
    import cv2

    cv2.setNumThreads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass


def clip_job(root: str, cid: str) -> float:
    """Everything the alignment metrics extract for one clip; returns the clip's duration (s)."""
    from vm_eval.media import decode_frames, load_audio

    ex = extractors()
    audio = load_audio(f"{root}/music/{cid}.wav", SR, mono=True)
    for e in ex["audio"].values():
        e(audio.samples, audio.sample_rate)
    frames = decode_frames(f"{root}/videos/{cid}.mp4", FPS, SIZE)
    for e in ex["video"].values():
        e(frames, FPS)
    return audio.duration_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="work folder for the demo dataset (default: a temporary one, removed)")
    ap.add_argument("--clips", type=int, default=0, help="use the first N clips with music (default: all 20)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="process-pool sizes to compare")
    args = ap.parse_args()
    from vm_eval.data.demo import load_ground_truth, make_demo
    from vm_eval.media import decode_frames, load_audio

    work = Path(args.out or tempfile.mkdtemp(prefix="vm-eval-align-bench-"))
    root = work / "demo"
    make_demo(root)
    truth = load_ground_truth(root)
    ids = sorted(cid for cid, t in truth.items() if t.beat_times)
    if args.clips:
        ids = ids[: args.clips]
    media_s = sum(truth[c].duration_s for c in ids)
    print(f"{len(ids)} demo clips with music, {media_s:.1f} s of audio and video; {os.cpu_count()} CPU cores")
    single_threaded()

    t0 = time.perf_counter()
    audio = {c: load_audio(root / "music" / f"{c}.wav", SR, mono=True) for c in ids}
    t_audio = time.perf_counter() - t0
    t0 = time.perf_counter()
    frames = {c: decode_frames(root / "videos" / f"{c}.mp4", FPS, SIZE) for c in ids}
    t_decode = time.perf_counter() - t0
    rows = [("load WAV 44.1 kHz mono", t_audio), ("decode video 25 fps 128x128", t_decode)]
    ex = extractors()
    for name, e in ex["audio"].items():
        e(audio[ids[0]].samples[:, :SR], SR)  # build the madmom processors (model loading) outside the timing
        t0 = time.perf_counter()
        for c in ids:
            e(audio[c].samples, audio[c].sample_rate)
        rows.append((name, time.perf_counter() - t0))
    for name, e in ex["video"].items():
        t0 = time.perf_counter()
        for c in ids:
            e(frames[c], FPS)
        rows.append((name, time.perf_counter() - t0))
    print(f"\n{'single process, per extractor':<34} {'seconds':>9} {'clips/s':>9} {'x real time':>12}")
    for name, dt in rows:
        print(f"{name:<34} {dt:9.2f} {len(ids) / dt:9.2f} {media_s / dt:12.1f}")
    total = sum(dt for _, dt in rows)
    print(f"{'all of the above':<34} {total:9.2f} {len(ids) / total:9.2f} {media_s / total:12.1f}")

    print(f"\n{'process pool, full feature set':<34} {'seconds':>9} {'clips/s':>9} {'x real time':>12} {'speed-up':>9}")
    base = None
    ctx = multiprocessing.get_context("spawn")
    for n in args.workers:
        with ProcessPoolExecutor(n, mp_context=ctx, initializer=single_threaded) as pool:
            list(pool.map(clip_job, [str(root)] * n, ids[:n]))  # warm-up: imports and model loading per worker
            t0 = time.perf_counter()
            list(pool.map(clip_job, [str(root)] * len(ids), sorted(ids, key=lambda c: -truth[c].duration_s)))
            dt = time.perf_counter() - t0
        base = base or dt
        print(f"{f'{n} worker(s)':<34} {dt:9.2f} {len(ids) / dt:9.2f} {media_s / dt:12.1f} {base / dt:9.2f}")
    if not args.out:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
