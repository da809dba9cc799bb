"""Cost per clip of the issue-15 metrics (Density / Coverage on CLAP-music and VGGish, Inception Score on PANN, KL on
sigmoid outputs of PaSST and PANN), on CPU with RANDOM weights of the real shapes written in the published layouts.

    .venv/bin/python benchmarks/metrics_new.py [--seconds 10 30] [--clips 300] [--repeats 2] [--threads N]

Each metric is built through the registry (vm_eval.weights finds the random files in a temporary $VM_EVAL_WEIGHTS),
so what is timed is what `vm-eval run` computes. Two parts: (1) the backbone features of one stereo 44.1 kHz clip
per distinct extractor (the feature cache computes them once per clip for every metric sharing the extractor:
density and coverage on one backbone, the FAD on it too), best of the repeats; (2) the metric's own arithmetic
on the cached features of `--clips` generated and as many reference clips (set metrics: reference statistics +
score_set with its bootstrap, divided by the clips), or per clip pair (KL). Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def best_of(fn, repeats: int):
    """(wall s, CPU s of this process) of the fastest of `repeats` calls, and its result. CPU time is the figure
    that a loaded shared machine distorts least (with --threads 1 it is the single-core cost)."""
    best, out = None, None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        t = (time.perf_counter() - w0, time.process_time() - c0)
        best = t if best is None or t[0] < best[0] else best
    return best, out


def write_random_weights(root: Path) -> None:
    """Seeded random networks of the published shapes, saved as the published files (what the tests do)."""
    import torch
    from torch import nn

    from metrics.backbones import clap as C
    from metrics.backbones import passt as P
    from metrics.backbones.pann import Cnn14

    torch.manual_seed(0)

    def save(obj, name: str, file: str) -> None:
        (root / name).mkdir(parents=True, exist_ok=True)
        torch.save(obj, root / name / file)

    from torchvggish.torchvggish import VGG, make_layers

    save(VGG(make_layers(), postprocess=False).state_dict(), "vggish", "vggish-10086976.pth")
    save({"model": Cnn14(32_000).state_dict()}, "pann-cnn14", "Cnn14_mAP=0.431.pth")
    from hear21passt.models.passt import get_model

    with contextlib.redirect_stdout(io.StringIO()):
        net = get_model(arch=P.ARCH, pretrained=False)
    save(net.state_dict(), "passt", P.CHECKPOINT_FILE)
    cfg = C.model_config("HTSAT-base")  # the music checkpoint's audio tower, as ClapAudio builds it
    cm = C.clap_module()
    from clap_module.htsat import create_htsat_model

    tower = nn.Module()
    tower.audio_branch = create_htsat_model(cm.CLAPAudioCfp(**cfg["audio_cfg"]), False, "None")
    tower.audio_projection = C._mlp(cfg["embed_dim"])
    save({"state_dict": {f"module.{k}": v for k, v in tower.state_dict().items()}}, "clap-music",
         "music_audioset_epoch_15_esc_90.14.pt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0, 30.0])
    ap.add_argument("--clips", type=int, default=300, help="generated (and reference) clips for the set metrics")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, help="torch and BLAS threads (default: what the environment gives)")
    args = ap.parse_args()
    import vm_eval  # noqa: F401  first: the compat shims laion_clap needs
    import numpy as np
    import torch

    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads, user_api="blas")
    print(f"CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}, torch threads {torch.get_num_threads()}")

    from metrics.base import ClipContext
    from vm_eval.registries import METRICS
    from vm_eval.scoring.resolve import build

    names = ["density-clap-music", "coverage-clap-music", "density-vggish", "coverage-vggish", "is-pann-cnn14",
             "kl-sigmoid-passt-ref-gen-w10s", "kl-sigmoid-pann-ref-gen-w10s"]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VM_EVAL_WEIGHTS"] = tmp
        t0 = time.perf_counter()
        write_random_weights(Path(tmp))
        print(f"random weights written in {time.perf_counter() - t0:.1f} s")
        built = {n: build(METRICS.get(n)) for n in names}
        extractors = {}  # one per extractor identity: what the feature cache computes once per clip
        for n, m in built.items():
            ext = m.inputs["audio"]
            extractors.setdefault(ext.info.name + str(ext.info.params.get("window_s")), (ext, []))[1].append(n)
        rng = np.random.default_rng(0)
        feats = {}
        print("\n| extractor (metrics using it) | " + " | ".join(f"{s:g} s clip" for s in args.seconds) + " |")
        print("| --- | " + " | ".join("---" for _ in args.seconds) + " |")
        for key, (ext, users) in extractors.items():
            cells = []
            for s in args.seconds:
                audio = (0.1 * rng.standard_normal((2, int(s * 44_100)))).astype(np.float32)
                (wall, cpu), out = best_of(lambda: ext(audio, 44_100), args.repeats)
                feats[(key, s)] = out
                cells.append(f"{wall:.2f} s wall, {cpu:.2f} s CPU")
            print(f"| {ext.info.name}, window {ext.info.params.get('window_s')} ({', '.join(users)}) | "
                  + " | ".join(cells) + " |")

        n = args.clips
        print(f"\n| metric | own arithmetic on cached features ({n} generated + {n} reference clips) | "
              "per clip (CPU) |")
        print("| --- | --- | --- |")
        s = args.seconds[-1]
        for name, m in built.items():
            ext = m.inputs["audio"]
            one = feats[(ext.info.name + str(ext.info.params.get("window_s")), s)]
            # clip features of the real shape, varied by seeded noise (the arithmetic does not depend on the values)
            gen = [one + rng.standard_normal(one.shape).astype(np.float32) for _ in range(n)]
            ref = [one + rng.standard_normal(one.shape).astype(np.float32) for _ in range(n)]
            if m.is_set:
                def run():
                    stats = m.metric.reference_statistics(ref) if "reference" in m.inputs else None
                    return m.metric.score_set({f"c{i:04d}": {"audio": g} for i, g in enumerate(gen)}, stats, 0)

                (wall, cpu), score = best_of(run, args.repeats)
                what = f"{wall:.3f} s wall, {cpu:.3f} s CPU (value {score.value:.4g} [{score.lo:.4g}, {score.hi:.4g}])"
            else:
                ctx = ClipContext(clip_id="c", duration_s=s)
                (wall, cpu), _ = best_of(lambda: [m.metric.score_features({"audio": g, "reference": r}, ctx)
                                                  for g, r in zip(gen, ref)], args.repeats)
                what = f"{wall:.3f} s wall, {cpu:.3f} s CPU for {n} clip pairs"
            print(f"| {name} | {what} | {cpu / n * 1e3:.2f} ms |")


if __name__ == "__main__":
    main()
