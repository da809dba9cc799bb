"""VidMusician benchmark: generation overhead over the plain backbone, conditioning cost, training step.

    .venv/bin/python benchmarks/vidmusician.py [--scale small] [--seconds 10] [--batch 2] [--repeats 2]
                                              [--device cpu|cuda] [--skip-train] [--paper-gpu]

1. Generation, side by side in one process, random weights, visual features precomputed: the plain MusicGen LM
   (our sampling loop, a fixed cross-attention source as a precomputed text condition would give, no rhythm hooks)
   against VidMusician in stage 2 (semantic condition through T5-base + rhythm added at every injection point),
   both with classifier-free guidance 3.0 and top-k 250. Runs alternate (plain, VidMusician, plain, ...) so drift
   on a shared machine hits both; the ratio of the medians is reported (target <= 1.10x).
2. Conditioning cost for the same clip length: CLIP ViT-B-32 at 1 fps and at 25 fps (frames 360x640, open_clip's
   preprocessing included) and the T5-base semantic encoder.
3. Training step of the `tiny` preset (batch 2, 2 s segments): seconds per step for stage 1 and stage 2, and the
   process's peak resident memory.
4. ``--paper-gpu`` (on a GPU): the paper preset (MusicGen-medium scale, random weights), 30 s, batch 1 and 8:
   seconds of audio per second and peak GPU memory.
Nothing here asserts a speed: it measures and prints.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import vm_eval  # noqa: E402,F401  compat hook first

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def build(scale: str, device: torch.device, max_duration_s: float = 30.0):
    from vidmusician.config import preset
    from vidmusician.model import VidMusician

    cfg = preset("paper").with_overrides({"backbone.scale": scale, "generation.max_duration_s": max_duration_s})
    model = VidMusician(cfg, stage="2", seed=0)
    with torch.no_grad():  # a trained-looking rhythm adapter: non-zero output at every injection point
        model.rhythm.zero_linear.weight.normal_(0, 0.02)
    return model.to(device).eval()


def generation(args, device) -> None:
    from vidmusician.generate import generate_codes

    model = build(args.scale, device)
    cfg, B = model.config, args.batch
    n = int(round(args.seconds * cfg.backbone.frame_rate))
    g = torch.Generator().manual_seed(0)
    cls = torch.randn(B, int(args.seconds), cfg.semantic.clip_dim, generator=g).to(device)
    d = torch.rand(B, n + 8, generator=g).to(device)
    gen = cfg.generation
    seeds = list(range(B))

    def plain():
        model.remove_hooks()
        model.set_stage("1")
        # the plain LM sees a fixed cross-attention source, as MusicGen does with precomputed text embeddings
        generate_codes(model, cls, n, seeds, gen)

    def ours():
        model._hook_handles = model.rhythm.attach(model.transformer_layers)
        model.set_stage("2")
        generate_codes(model, cls, n, seeds, gen, d=d)
        model.remove_hooks()

    print(f"== generation: MusicGen-{args.scale} random weights, {args.seconds:g} s, batch {B}, cfg "
          f"{gen.cfg_coef}, top-k {gen.top_k}, {device}")
    _timed(lambda: generate_codes(model, cls, 10, seeds, gen), device)  # warm-up (allocator, kernels)
    times = {"plain": [], "vidmusician": []}
    for _ in range(args.repeats):
        times["plain"].append(_timed(plain, device))
        times["vidmusician"].append(_timed(ours, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"  {k:12s} {med[k]:7.2f} s  ({', '.join(f'{x:.2f}' for x in v)})  "
              f"{args.seconds * B / med[k]:.3f} s audio / s")
    print(f"  overhead: {med['vidmusician'] / med['plain']:.3f}x wall time (target <= 1.10x)")

    # conditioning cost for the same clip
    from metrics.backbones.clip import ClipVisual

    path = Path(args.tmp) / "clip" / "open_clip_pytorch_model.bin"
    if not path.is_file():
        from vidmusician.visual import save_random_tower

        save_random_tower("ViT-B-32", path, seed=0)
    visual = ClipVisual(path, device=str(device), batch_size=64)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (int(args.seconds * 25), 360, 640, 3), dtype=np.uint8)
    t1 = _timed(lambda: visual.features(frames[::25]), device)
    t25 = _timed(lambda: visual.features(frames), device)
    with torch.inference_mode():
        t5 = _timed(lambda: model.semantic_condition(cls), device)
    print(f"== conditioning per {args.seconds:g} s clip (CLIP ViT-B-32 random weights, 360x640 frames)")
    print(f"  CLIP 1 fps ({len(frames[::25])} frames)   {t1:.3f} s")
    print(f"  CLIP 25 fps ({len(frames)} frames) {t25:.3f} s")
    print(f"  T5-base semantic encoder (batch {B}) {t5:.4f} s")


def training(args) -> None:
    from vidmusician.config import preset
    from vidmusician.data import TrainExample
    from vidmusician.model import VidMusician
    from vidmusician.train import train

    cfg = preset("tiny")
    g = torch.Generator().manual_seed(0)
    examples = [TrainExample(clip_id=f"c{i}", codes=torch.randint(0, cfg.backbone.card, (4, 400), generator=g),
                             cls=torch.randn(8, cfg.semantic.clip_dim, generator=g), d_frames=torch.rand(200, generator=g))
                for i in range(8)]
    print(f"== training step, tiny preset (batch {cfg.train.batch_size}, {cfg.train.segment_s:g} s segments), cpu")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for stage in ("1", "2"):
        model = VidMusician(cfg, stage=stage, seed=0)
        out = Path(args.tmp) / f"train-{stage}"
        shutil.rmtree(out, ignore_errors=True)  # a finished run in the folder would be skipped, not timed
        steps = args.train_steps
        t = time.perf_counter()
        train(model, examples, out, {}, stage=stage, steps=steps, progress=False, save_every=10**9)
        dt = time.perf_counter() - t
        print(f"  stage {stage}: {dt / steps * 1000:.1f} ms/step over {steps} steps (incl. the final checkpoint)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"  peak RSS of the process {rss / 1024:.0f} MiB (before training {rss0 / 1024:.0f} MiB)")


def paper_gpu(args, device) -> None:
    from vidmusician.generate import generate_codes

    model = build("medium", device)
    cfg = model.config
    n = 30 * cfg.backbone.frame_rate
    print("== paper preset (MusicGen-medium scale, T5-base, random weights), 30 s, cfg 3.0, top-k 250")
    for B in (1, 8):
        g = torch.Generator().manual_seed(0)
        cls = torch.randn(B, 30, cfg.semantic.clip_dim, generator=g).to(device)
        d = torch.rand(B, n + 8, generator=g).to(device)
        torch.cuda.reset_peak_memory_stats()
        dt = _timed(lambda: generate_codes(model, cls, n, list(range(B)), cfg.generation, d=d), device)
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(f"  batch {B}: {dt:.1f} s, {30 * B / dt:.2f} s audio / s, peak {peak:.1f} GiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="small")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--device", default=None)
    ap.add_argument("--skip-generation", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--paper-gpu", action="store_true")
    ap.add_argument("--tmp", default="/tmp/vm-eval-bench-vidmusician")
    args = ap.parse_args()
    from vidmusician.backbone import default_device

    device = default_device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    if not args.skip_generation:
        generation(args, device)
    if not args.skip_train:
        training(args)
    if args.paper_gpu:
        paper_gpu(args, device)


if __name__ == "__main__":
    main()
