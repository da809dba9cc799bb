"""Cost of the ImageBind score per clip on this machine, on RANDOM weights of the real shape (imagebind_huge()).

    .venv/bin/python benchmarks/metrics_new_imagebind.py [--seconds 10 30] [--device cpu] [--keep DIR]

Writes a seeded random ImageBind-huge state dict as `imagebind_huge.pth` (4.5 GB; in a temporary folder unless
--keep names one, reused when present), loads it the way the metric does (build, memory-mapped strict load, sha256
for the identity, non-vision/audio towers dropped), then times the video extractor (1 fps frames of 640 x 360,
views as av-benchmark builds them), the audio extractor (44.1 kHz stereo) and the score for each clip length.
Random weights cost what the published ones do: same shapes, same operations. Prints a Markdown table; asserts
nothing about speed.
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def timed(fn):
    """(wall s, CPU s of this process, result): CPU time shows the cost when other jobs share the cores."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def memory() -> str:
    """Resident memory now: anonymous (the network's own tensors) and file-backed (the memory-mapped checkpoint,
    page cache the kernel can drop), and the process's peak RSS so far."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    gib = {k: int(status[k].split()[0]) / 2**20 for k in ("RssAnon", "RssFile") if k in status}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return f"anonymous {gib.get('RssAnon', 0):.1f} GiB, file-backed {gib.get('RssFile', 0):.1f} GiB, peak RSS {peak:.1f} GiB"


def write_random_checkpoint(folder: Path) -> tuple[Path, float]:
    import torch

    from metrics.backbones.imagebind import upstream

    imagebind_model = upstream()[0]
    path = folder / "imagebind_huge.pth"
    if path.is_file():
        return path, 0.0
    t0 = time.perf_counter()
    torch.manual_seed(0)
    torch.save(imagebind_model.imagebind_huge(pretrained=False).state_dict(), path)
    return path, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0, 30.0], help="clip lengths to time")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--keep", type=Path, help="folder for the random checkpoint (kept, reused); default a temp dir")
    args = ap.parse_args()

    import vm_eval  # noqa: F401  first: the compat import hook
    import numpy as np
    import torch

    from metrics.backbones.imagebind import DECODE_FPS, ImageBind, ImageBindAudio, ImageBindVideo
    from metrics.base import ClipContext
    from metrics.imagebind_score import ImageBindScore

    print(f"CPUs {os.cpu_count()}, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}, "
          f"device {args.device}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path, t_write = write_random_checkpoint(folder)
        print(f"random imagebind_huge checkpoint: {path.stat().st_size / 2**30:.2f} GiB, written in {t_write:.1f} s")
        t_load, c_load, model = timed(lambda: ImageBind(path, device=args.device))
        print(f"load (build + strict load + sha256 + drop towers): {t_load:.1f} s wall, {c_load:.1f} s CPU; "
              f"memory: {memory()}")
        metric = ImageBindScore(ImageBindAudio(model), ImageBindVideo(model))
        rng = np.random.default_rng(0)
        rows = []
        for seconds in args.seconds:
            frames = rng.integers(0, 256, (int(seconds * DECODE_FPS), 360, 640, 3), dtype=np.uint8)
            audio = (0.1 * rng.standard_normal((2, int(seconds * 44_100)))).astype(np.float32)
            t_v, c_v, video = timed(lambda: metric.inputs["video"](frames, DECODE_FPS))
            t_a, c_a, emb_a = timed(lambda: metric.inputs["audio"](audio, 44_100))
            t_s, _, _ = timed(lambda: metric.score_features({"video": video, "audio": emb_a},
                                                              ClipContext("bench", seconds)))
            rows.append((seconds, len(video), t_v, c_v, t_a, c_a, t_s))
            print(f"{seconds:g} s clip done, load average {os.getloadavg()[0]:.2f}")
        print(f"\nmemory after the clips: {memory()}\n")
        print("| clip | video views | video extractor, wall (CPU) | audio extractor, 3 x 2 s, wall (CPU) | score | "
              "per clip, wall |")
        print("| --- | --- | --- | --- | --- | --- |")
        for seconds, views, t_v, c_v, t_a, c_a, t_s in rows:
            print(f"| {seconds:g} s | {views} | {t_v:.1f} s ({c_v:.1f} s); {t_v / views:.2f} s/view | "
                  f"{t_a:.2f} s ({c_a:.2f} s) | {t_s * 1e3:.2f} ms | {t_v + t_a + t_s:.1f} s |")


if __name__ == "__main__":
    main()
