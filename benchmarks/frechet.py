"""Frechet distance benchmark: ours (metrics.frechet) against frechet_audio_distance, FAD-inf, the clip bootstrap,
and the weightless LogMelStats stand-in FAD.

    .venv/bin/python benchmarks/frechet.py [--repeats 3] [--resamples 200]

Prints wall times (best of the repeats), the speed ratio and how far the two Frechet values are apart. Nothing here
asserts a speed: it measures. BLAS threads are whatever the environment gives unless --threads limits them; on a
shared, loaded machine small-matrix loops (bootstrap, FAD-inf) run far faster with --threads 1.
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def best_of(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def two_sets(n: int, d: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    mix = np.eye(d) + 0.5 * rng.standard_normal((d, d)) / np.sqrt(d)
    a = rng.standard_normal((n, d)) * 0.8 + 0.1
    b = rng.standard_normal((n, d)) @ mix - 0.05
    return a, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--resamples", type=int, default=200)
    ap.add_argument("--threads", type=int, help="limit BLAS threads (threadpoolctl) for the whole run")
    args = ap.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads, user_api="blas")
    print(f"CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}, BLAS threads "
          f"{args.threads or 'default'}")

    import vm_eval  # noqa: F401  first: the torchvision shim frechet_audio_distance (laion_clap) needs
    import numpy as np
    from frechet_audio_distance.fad import FrechetAudioDistance as Upstream

    from metrics.backbones.logmel import LogMelStats
    from metrics.fad import FrechetAudioDistance
    from metrics.frechet import bootstrap_fad_detail, fad_inf, frechet_distance, gaussian_stats

    n, d = 10_000, 512
    a, b = two_sets(n, d)
    print(f"Frechet distance, two seeded sets of {n} x {d} float64 embeddings, best of {args.repeats}")

    def ours():
        return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))

    def theirs():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(np.real(Upstream.calculate_frechet_distance(
                None, *Upstream.calculate_embd_statistics(None, a), *Upstream.calculate_embd_statistics(None, b))))

    t_ours, v_ours = best_of(ours, args.repeats)
    t_theirs, v_theirs = best_of(theirs, args.repeats)
    stats = [gaussian_stats(a), gaussian_stats(b)]
    t_fd_ours, _ = best_of(lambda: frechet_distance(*stats[0], *stats[1]), args.repeats)

    def fd_theirs():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Upstream.calculate_frechet_distance(None, *stats[0], *stats[1])

    t_fd_theirs, _ = best_of(fd_theirs, args.repeats)
    t_st_ours, _ = best_of(lambda: gaussian_stats(a), args.repeats)
    t_st_theirs, _ = best_of(lambda: Upstream.calculate_embd_statistics(None, a), args.repeats)
    print(f"  stats + distance, ours (gaussian_stats + frechet_distance)        {t_ours:8.3f} s")
    print(f"  stats + distance, frechet_audio_distance (np.cov + sqrtm)         {t_theirs:8.3f} s")
    print(f"  ratio theirs / ours                                               {t_theirs / t_ours:8.2f} x")
    print(f"  distance only: ours {t_fd_ours:.3f} s, theirs {t_fd_theirs:.3f} s ({t_fd_theirs / t_fd_ours:.1f} x)")
    print(f"  one set's stats: ours {t_st_ours:.3f} s, theirs {t_st_theirs:.3f} s ({t_st_theirs / t_st_ours:.1f} x)")
    print(f"  values: ours {v_ours:.10f}, theirs {v_theirs:.10f}, |diff| {abs(v_ours - v_theirs):.3e}, "
          f"relative {abs(v_ours - v_theirs) / abs(v_theirs):.3e}")

    t, inf = best_of(lambda: fad_inf(a, *stats[1], seed=0), 1)
    print(f"FAD-inf on {n} x {d} (min_n 500, 25 steps)                            {t:8.3f} s")
    print(f"  FAD {v_ours:.4f} -> FAD-inf {inf.value:.4f} (slope {inf.slope:.1f}, r2 {inf.r2:.4f}), "
          f"FAD at n=500: {inf.points[0][1]:.4f}")

    rng = np.random.default_rng(1)
    clips = [rng.standard_normal((20, d)) * 0.8 + 0.1 for _ in range(100)]
    t, boot = best_of(lambda: bootstrap_fad_detail(clips, *stats[1], seed=0, resamples=args.resamples), 1)
    pooled = frechet_distance(*gaussian_stats(np.concatenate(clips)), *stats[1])
    print(f"bootstrap, {args.resamples} resamples over 100 clips x 20 frames x {d}                {t:8.3f} s")
    print(f"  FAD {pooled:.4f}, percentile CI [{boot.lo:.4f}, {boot.hi:.4f}], bootstrap bias {boot.bias:.4f}, "
          f"bias-shifted CI [{boot.lo - boot.bias:.4f}, {boot.hi - boot.bias:.4f}]")

    # the weightless stand-in on synthetic audio: tones vs tones (same family), noise vs tones
    sr = 16000
    t_axis = np.arange(3 * sr) / sr

    def tone(r):
        f0 = r.uniform(200, 400)
        x = sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t_axis + r.uniform(0, 6.3)) for k in (1, 2, 3))
        return (x + 0.01 * r.standard_normal(t_axis.size))[None].astype(np.float32)

    r = np.random.default_rng(2)
    ext = LogMelStats()
    metric = FrechetAudioDistance(ext, resamples=args.resamples)
    audio_ref = [tone(r) for _ in range(100)]
    audio_tone = [tone(r) for _ in range(100)]
    audio_noise = [(0.3 * r.standard_normal((1, t_axis.size))).astype(np.float32) for _ in range(100)]
    t, feats_ref = best_of(lambda: [ext(x, sr) for x in audio_ref], 1)
    print(f"LogMelStats: 100 clips x 3 s ({feats_ref[0].shape[0]} frames x {feats_ref[0].shape[1]} each)       "
          f"{t:8.3f} s")
    ref = metric.reference_statistics(feats_ref)
    for label, audio in (("tones vs tones", audio_tone), ("noise vs tones", audio_noise)):
        gen = {f"c{i:03d}": {"audio": ext(x, sr)} for i, x in enumerate(audio)}
        t, s = best_of(lambda: metric.score_set(gen, ref, seed=0), 1)
        print(f"  {metric.info.name} {label}: {s.value:9.3f} [{s.lo:.3f}, {s.hi:.3f}] "
              f"(score_set {t:.2f} s, {s.extra['frames']:.0f} frames)")


if __name__ == "__main__":
    main()
