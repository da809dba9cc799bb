"""Baselines benchmark: the weight-free reference systems' speed, and the cost of running a published system.

    .venv/bin/python benchmarks/baselines.py [--out DIR] [--clips N]

1. beat-sync, anchor-beat-shift, anchor-other-category and musicgen-text-tiny-random on the demo test clips:
   seconds per clip and the real-time factor (seconds of music made per second of compute; > 1 is faster).
2. The fixed cost vm-eval adds around an upstream program, per clip: staging the silent video, starting the
   upstream interpreter through the seeding wrapper, checking and fitting its output. Measured with an upstream
   stand-in that writes its output at once (the VidMuse fake of the tests), so the number is vm-eval's overhead
   plus one Python start; the real system's own load and generation time comes on top.
3. FluidSynth rendering speed for a 30 s GM MIDI file (the MIDI systems' extra step).
Nothing here asserts a speed: it measures.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import vm_eval  # noqa: E402,F401  first: installs the compat hook madmom needs


def clips(data: Path, cache: Path, n: int) -> list:
    from vm_eval.data.demo import make_demo
    from vm_eval.data.manifest import load_manifest
    from vm_eval.models.api import ClipInput

    manifest = load_manifest(make_demo(data / "demo"))
    chosen = sorted(manifest.split("test"), key=lambda c: c.id)[:n]
    return [ClipInput(c, manifest, 0, cache / "media") for c in chosen]


def time_model(name: str, model, batch: list) -> None:
    from vm_eval.models.api import NotApplicable, as_audio

    if hasattr(model, "prepare"):
        model.prepare(batch)
    done, secs, music = 0, 0.0, 0.0
    for clip in batch:
        t0 = time.perf_counter()
        out = model.generate([clip])[0]
        dt = time.perf_counter() - t0
        if isinstance(out, NotApplicable):
            continue
        if isinstance(out, BaseException):
            print(f"  {name}: {clip.id} failed: {out}")
            continue
        done, secs, music = done + 1, secs + dt, music + as_audio(out).duration_s
    if done:
        print(f"{name:28s} {done:3d} clips  {secs / done:6.2f} s/clip  real-time factor {music / secs:7.1f}x")


def adapter_overhead(batch: list, work: Path) -> None:
    from baseline_fakes import checkpoint_dir, fake_checkout
    from baselines.vidmuse import VidMuse

    checkout = fake_checkout(work / "VidMuse", {"infer.py": "vidmuse_infer.py"})
    ckpt = checkpoint_dir(work / "model", ("state_dict.bin", "compression_state_dict.bin"))
    os.environ.update(VM_EVAL_CONFIG="", VM_EVAL_VIDMUSE_CHECKOUT=str(checkout), VM_EVAL_VIDMUSE_PYTHON=sys.executable,
                      VM_EVAL_VIDMUSE_CKPT_MODEL=str(ckpt), FAKE_UPSTREAM_MODE="ok")
    model = VidMuse(device="cpu")
    model.generate(batch[:1])  # the silent-video cache is filled once per clip in a real run too
    t0 = time.perf_counter()
    outs = model.generate(batch)
    dt = (time.perf_counter() - t0) / len(batch)
    ok = sum(not isinstance(o, BaseException) for o in outs)
    t0 = time.perf_counter()
    import subprocess

    for _ in range(3):
        subprocess.run([sys.executable, "-c", "import numpy, soundfile"], check=True)
    start = (time.perf_counter() - t0) / 3
    print(f"adapter round trip (instant upstream stand-in): {dt:.2f} s/clip over {ok} clips; of which a bare "
          f"interpreter start with numpy + soundfile: {start:.2f} s")


def fluidsynth_speed(work: Path) -> None:
    import mido

    from baselines.external.midi import render_midi
    from baselines.external.config import DEFAULT_SOUNDFONTS

    sf = next((p for p in DEFAULT_SOUNDFONTS if p.is_file()), None)
    if sf is None:
        print("FluidSynth: no SoundFont installed (fluid-soundfont-gm)")
        return
    mid = mido.MidiFile(ticks_per_beat=480)
    for program, base in ((0, 48), (33, 36), (48, 60)):  # piano, bass, strings: 30 s at 120 BPM
        tr = mido.MidiTrack()
        mid.tracks.append(tr)
        tr.append(mido.Message("program_change", program=program, channel=len(mid.tracks) - 1, time=0))
        for i in range(60):
            note = base + (i * 5) % 12
            tr.append(mido.Message("note_on", note=note, velocity=90, channel=len(mid.tracks) - 1, time=0))
            tr.append(mido.Message("note_off", note=note, velocity=0, channel=len(mid.tracks) - 1, time=480))
    path = work / "bench.mid"
    mid.save(str(path))
    t0 = time.perf_counter()
    audio = render_midi(path, sf, work / "bench.wav")
    dt = time.perf_counter() - t0
    print(f"FluidSynth render ({sf.name}, 3 tracks, {audio.duration_s:.1f} s at 32 kHz): {dt:.2f} s "
          f"({audio.duration_s / dt:.0f}x real time)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="work folder (default: a temporary one, removed)")
    ap.add_argument("--clips", type=int, default=10)
    args = ap.parse_args()
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="vm-bench-baselines-"))
    try:
        batch = clips(work / "data", work / "cache", args.clips)
        from baselines.anchors import OtherCategoryAnchor, ShiftedBeatAnchor
        from baselines.beat_sync import BeatSync
        from baselines.musicgen_text import tiny_random

        print(f"{len(batch)} demo test clips, {sum(c.duration_s for c in batch):.1f} s of video; one process, "
              f"{os.cpu_count()} cores")
        time_model("beat-sync", BeatSync(), batch)
        time_model("anchor-beat-shift", ShiftedBeatAnchor(), batch)
        time_model("anchor-other-category", OtherCategoryAnchor(), batch)
        time_model("musicgen-text-tiny-random", tiny_random(results=work / "results"), batch)
        adapter_overhead(batch, work / "adapter")
        fluidsynth_speed(work)
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
