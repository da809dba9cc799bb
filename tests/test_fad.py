"""metrics.fad (FAD set metric) end to end on synthetic embeddings, and the LogMelStats stand-in embedding."""
from __future__ import annotations

import math

import numpy as np
import pytest

from metrics.backbones.logmel import LogMelStats, mel_filterbank
from metrics.base import ExtractorInfo, MetricError, SetScore
from metrics.fad import FrechetAudioDistance, pack_stats, unpack_stats
from metrics.frechet import frechet_distance, gaussian_stats


pytestmark = pytest.mark.usefixtures("one_blas_thread")


class FakeEmbedding:
    """Stands in for an extractor; the metric only reads its identity."""

    def __init__(self, name="toy", standard=None):
        self.info = ExtractorInfo(name=name, version=1, sample_rate=16000,
                                  backbone={"name": name, "file": "toy.pt", "sha256": "0" * 64})
        if standard is not None:
            self.standard = standard

    def __call__(self, audio, sample_rate):  # pragma: no cover - never called here
        raise AssertionError


D = 8
MIX = np.eye(D) + 0.4 * np.random.default_rng(99).standard_normal((D, D)) / np.sqrt(D)


def clips(seed, n_clips, frames, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((frames, D)) @ MIX) * scale + shift for _ in range(n_clips)]


@pytest.fixture(scope="module")
def metric():
    return FrechetAudioDistance(FakeEmbedding(), resamples=100)


@pytest.fixture(scope="module")
def ref_stats(metric):
    return metric.reference_statistics(clips(0, 80, 10))


def as_gen(clip_list, prefix="c"):
    return {f"{prefix}{i:03d}": {"audio": c.astype(np.float32)} for i, c in enumerate(clip_list)}


def test_info(metric):
    info = metric.info
    assert info.name == "fad-toy" and info.kind == "set" and info.higher_is_better is False
    assert info.standard is True and info.backbone["name"] == "toy" and info.needs_reference
    assert info.params["resamples"] == 100 and info.params["fad_inf"]["min_n"] == 500
    assert set(metric.inputs) == {"audio", "reference"}
    assert FrechetAudioDistance(FakeEmbedding(), name="fad-custom").info.name == "fad-custom"
    assert FrechetAudioDistance(FakeEmbedding(standard=False)).info.standard is False
    other = FrechetAudioDistance(FakeEmbedding(), resamples=100, ci_method="percentile")
    assert other.info.key("r") != metric.info.key("r")
    with pytest.raises(ValueError):
        FrechetAudioDistance(FakeEmbedding(), ci_method="bca")


def test_reference_statistics_pack(ref_stats):
    ref = unpack_stats(ref_stats)
    mu, sigma = gaussian_stats(np.concatenate(clips(0, 80, 10)))
    np.testing.assert_allclose(ref.mu, mu, atol=1e-12)
    np.testing.assert_allclose(ref.sigma, sigma, atol=1e-12)
    assert (ref.n_clips, ref.n_frames) == (80, 800) and ref_stats.dtype == np.float64
    again = unpack_stats(pack_stats(ref.mu, ref.sigma, 3, 7))
    assert (again.n_clips, again.n_frames) == (3, 7) and np.array_equal(again.sigma, ref.sigma)
    with pytest.raises(ValueError):
        unpack_stats(ref_stats[:-1])


def test_reference_needs_frames(metric):
    with pytest.raises(MetricError):
        metric.reference_statistics([np.zeros((1, D)), np.zeros((0, D))])


def test_shifted_generation_scores_worse_and_outlier_is_flagged(metric, ref_stats):
    same = metric.score_set(as_gen(clips(1, 60, 10)), ref_stats, seed=0)
    shifted = metric.score_set(as_gen(clips(2, 60, 10, shift=0.5)), ref_stats, seed=0)
    assert isinstance(same, SetScore)
    assert shifted.value > same.value + 1.0
    assert shifted.lo <= shifted.value <= shifted.hi
    # near-zero FAD: resampled FADs carry more small-sample bias than the estimate (see bootstrap_fad's caveat)
    assert same.extra["bootstrap-bias"] > 0 and same.value < same.hi
    assert shifted.lo > same.hi  # the shift is far beyond clip-sampling spread
    assert (same.n, same.n_reference, same.extra["frames"]) == (60, 80, 600.0)
    # the value is the FAD of all frames pooled against the reference Gaussian
    ref = unpack_stats(ref_stats)
    pooled = np.concatenate(clips(2, 60, 10, shift=0.5)).astype(np.float32)
    assert shifted.value == pytest.approx(frechet_distance(*gaussian_stats(pooled), ref.mu, ref.sigma), rel=1e-9)
    # 600 > 500 frames: FAD-inf is reported
    assert math.isfinite(shifted.extra["fad-inf"]) and -1 <= shifted.extra["fad-inf-r2"] <= 1

    gen = clips(3, 30, 10)
    gen[17] = gen[17] * 4.0 + 3.0  # one clip from another distribution
    s = metric.score_set(as_gen(gen), ref_stats, seed=0)
    assert max(s.per_clip, key=s.per_clip.get) == "c017"
    assert s.per_clip["c017"] > 5 * np.median(list(s.per_clip.values()))
    assert math.isnan(s.extra["fad-inf"])  # 300 frames: too few to extrapolate


def test_short_clips_and_determinism(metric, ref_stats):
    gen = as_gen(clips(4, 20, 6))
    gen["one-frame"] = {"audio": np.ones((1, D), np.float32)}
    gen["empty"] = {"audio": np.zeros((0, D), np.float32)}
    s = metric.score_set(gen, ref_stats, seed=5)
    assert "one-frame" not in s.per_clip and "empty" not in s.per_clip and len(s.per_clip) == 20
    assert s.extra["per-clip-omitted"] == 2.0
    assert s.n == 21 and s.extra["frames"] == 121.0  # the one-frame clip still counts in the pooled FAD
    reordered = dict(reversed(list(gen.items())))
    assert metric.score_set(reordered, ref_stats, seed=5) == s
    assert metric.score_set(gen, ref_stats, seed=6).lo != s.lo
    with pytest.raises(MetricError):
        metric.score_set({"x": {"audio": np.zeros((5, D + 1))}}, ref_stats, seed=0)


# ------------------------------------------------------------------------------------------------ LogMelStats
SR = 16000


def tones(seed, n, seconds=3.0):
    """n clips of a random harmonic tone (f0 200-400 Hz) with a little noise: one 'signal family'."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    out = []
    for _ in range(n):
        f0 = rng.uniform(200, 400)
        x = sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) for k in (1, 2, 3))
        out.append((x + 0.01 * rng.standard_normal(t.size))[None, :].astype(np.float32))
    return out


def noise(seed, n, seconds=3.0):
    rng = np.random.default_rng(seed)
    return [(0.3 * rng.standard_normal((1, int(seconds * SR)))).astype(np.float32) for _ in range(n)]


def test_logmel_shapes_and_determinism():
    e = LogMelStats()
    assert e.info.name == "logmel-nonstandard" and e.standard is False
    assert e.info.sample_rate == SR and e.info.mono
    x = tones(0, 1, 5.0)[0]
    f = e(x, SR)
    assert f.dtype == np.float32 and f.shape == (1 + (5 * SR - 15360) // 7680, 128)
    assert np.array_equal(f, e(x.copy(), SR))
    assert e(x[:, :15359], SR).shape == (0, 128)  # shorter than one 0.96 s window
    assert e(x[:, :15360], SR).shape == (1, 128)
    stereo = np.vstack([x, x])
    np.testing.assert_allclose(e(stereo, SR), f, rtol=1e-6, atol=1e-6)
    assert np.all(f[:, 64:] >= 0)  # second half: standard deviations
    fb = mel_filterbank()
    assert fb.shape == (257, 64) and np.all(fb.sum(axis=0) > 0)
    with pytest.raises(ValueError):
        e(x, 22050)


def test_logmel_fad_separates_families():
    e = LogMelStats()
    metric = FrechetAudioDistance(e, resamples=20)
    assert metric.info.name == "fad-logmel-nonstandard" and metric.info.standard is False
    family = [e(x, SR) for x in tones(1, 120)]  # 120 clips x 5 frames
    ref = metric.reference_statistics(family[:60])
    half = metric.score_set({f"t{i}": {"audio": f} for i, f in enumerate(family[60:])}, ref, seed=0)
    other = metric.score_set({f"n{i}": {"audio": e(x, SR)} for i, x in enumerate(noise(2, 60))}, ref, seed=0)
    print(f"logmel FAD: same family {half.value:.3f} [{half.lo:.3f}, {half.hi:.3f}], "
          f"noise vs tones {other.value:.1f} [{other.lo:.1f}, {other.hi:.1f}]")
    assert half.value < 0.02 * other.value
    assert other.lo > half.hi
