"""Foundation benchmark: demo generation, media decode, a full run, the resume no-op, and scoring throughput.

    .venv/bin/python benchmarks/foundation.py [--out DIR]

Prints wall times and ratios; figures go to BENCHMARKS.md. Nothing here asserts a speed: it measures.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def timed(label: str, fn, results: list):
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    results.append((label, dt))
    print(f"{label:<58} {dt:8.3f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="work folder (default: a temporary one, removed)")
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="vm-eval-bench-"))
    from vm_eval.data.demo import make_demo
    from vm_eval.data.manifest import load_manifest
    from vm_eval.media import decode_frames, load_audio
    from vm_eval.runner import RunConfig, execute

    res: list = []
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    timed("demo dataset: generate (first call)", lambda: make_demo(data / "demo"), res)
    timed("demo dataset: materialise again (idempotent no-op)", lambda: make_demo(data / "demo"), res)
    m = load_manifest(data / "demo")
    clips = m.split("test")
    video_s = sum(c.duration for c in clips)
    print(f"test split: {len(clips)} clips, {video_s:.1f} s of video")
    timed("decode test videos at 1 fps, 224x224 (CLIP global)",
          lambda: [decode_frames(m.resolve(c.video), 1, (224, 224)) for c in clips], res)
    t25 = timed("decode test videos at 25 fps, 224x224 (CLIP patches)",
                lambda: [decode_frames(m.resolve(c.video), 25, (224, 224)) for c in clips], res)
    refs = [c for c in clips if c.reference]
    timed("load references + resample 44.1 -> 16 kHz mono",
          lambda: [load_audio(m.resolve(c.reference), 16000, True) for c in refs], res)
    for model in ("ground-truth", "random-retrieval"):
        cfg = RunConfig(model=model, data=data, results=work / "results", progress=False)
        timed(f"run {model} on demo/test (generate + score, fresh)", lambda: execute(cfg), res)
        timed(f"run {model} again (resume: nothing to do)", lambda: execute(cfg), res)
        timed(f"run {model} --rescore (scores only)",
              lambda: execute(RunConfig(**{**cfg.__dict__, "rescore": True})), res)
    d = dict(res)
    print(f"\n25 fps decode speed: {video_s / d['decode test videos at 25 fps, 224x224 (CLIP patches)']:.1f}x real time")
    fresh = d["run ground-truth on demo/test (generate + score, fresh)"]
    again = d["run ground-truth again (resume: nothing to do)"]
    print(f"resume no-op / fresh run: {again / fresh:.2f}")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if not args.out:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
