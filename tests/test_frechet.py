"""metrics.frechet: agreement with frechet_audio_distance, stability when n < d, FAD-inf, the clip bootstrap."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import vm_eval  # noqa: F401  (torchvision shim before frechet_audio_distance imports laion_clap)
from metrics import frechet
from metrics.frechet import (
    FramePool,
    ReferenceGaussian,
    bootstrap_fad,
    bootstrap_fad_detail,
    fad_inf,
    frechet_distance,
    gaussian_stats,
)


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def upstream():
    """frechet_audio_distance's methods; neither uses `self`, so no model is built."""
    from frechet_audio_distance.fad import FrechetAudioDistance

    return FrechetAudioDistance.calculate_embd_statistics, FrechetAudioDistance.calculate_frechet_distance


def _pair(rng, n: int, d: int, shift: float = 0.2):
    mix = np.eye(d) + 0.3 * rng.standard_normal((d, d)) / np.sqrt(d)
    return rng.standard_normal((n, d)), rng.standard_normal((n, d)) @ mix + shift


@pytest.mark.parametrize("n,d,seed", [(50, 4, 0), (400, 16, 1), (600, 128, 2), (2000, 128, 3), (1200, 512, 4)])
def test_matches_frechet_audio_distance(upstream, n, d, seed):
    stats_fn, fd_fn = upstream
    x, y = _pair(np.random.default_rng(seed), n, d)
    mu1, s1 = gaussian_stats(x)
    mu2, s2 = gaussian_stats(y)
    umu, us = stats_fn(None, x)
    np.testing.assert_allclose(mu1, umu, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s1, us, rtol=1e-12, atol=1e-12)
    theirs = float(fd_fn(None, mu1, s1, mu2, s2))
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(ours, rel=1e-9)  # symmetric
    # the frame-based path (used per clip, in FAD-inf and the bootstrap) gives the same value
    ref = ReferenceGaussian.from_stats(mu2, s2)
    assert ref.distance(x) == pytest.approx(ours, rel=1e-9)
    assert FramePool(x, ref).distance(np.ones(n)) == pytest.approx(ours, rel=1e-9)


def test_stable_where_sqrtm_is_not(upstream):
    """n < d: singular covariances. scipy's sqrtm returns noise (here: negative FAD for identical Gaussians, or a
    complex/failed root); the eigenvalue form stays finite, >= 0 and exactly 0 for identical statistics."""
    _, fd_fn = upstream
    upstream_bad = 0
    for seed, (n, d) in enumerate([(20, 64), (50, 128), (10, 32), (100, 256)]):
        rng = np.random.default_rng(seed)
        mu, s = gaussian_stats(rng.standard_normal((n, d)))
        mu2, s2 = gaussian_stats(rng.standard_normal((n, d)))
        ours_same = frechet_distance(mu, s, mu, s)
        ours_diff = frechet_distance(mu, s, mu2, s2)
        assert ours_same == pytest.approx(0.0, abs=1e-9 * np.trace(s))
        assert math.isfinite(ours_diff) and ours_diff > 0
        # the frame route (Gram matrix of n whitened frames) agrees with the d x d route
        assert ReferenceGaussian.from_stats(mu2, s2).distance(
            np.random.default_rng(seed).standard_normal((n, d))) == pytest.approx(ours_diff, rel=1e-7)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                theirs = complex(fd_fn(None, mu, s, mu, s))
                upstream_bad += (not np.isfinite(theirs)) or theirs.real < 0 or theirs.imag != 0
            except (ValueError, np.linalg.LinAlgError):
                upstream_bad += 1
    assert upstream_bad >= 1, "expected sqrtm to misbehave on at least one rank-deficient case"


def test_identical_statistics_give_zero():
    x = np.random.default_rng(5).standard_normal((500, 32))
    mu, s = gaussian_stats(x)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-10)
    assert frechet_distance(mu, s, mu, s) >= 0.0


def test_one_dimensional_hand_computed():
    # d^2 = (mu1 - mu2)^2 + (sd1 - sd2)^2 in 1-D
    assert frechet_distance([1.0], [[4.0]], [3.0], [[25.0]]) == pytest.approx((1 - 3) ** 2 + (2 - 5) ** 2)
    assert frechet_distance(np.array([0.5]), np.array([[1.0]]), np.array([0.5]), np.array([[0.25]])) == \
        pytest.approx(0.25)


def test_gaussian_stats_needs_two_frames():
    with pytest.raises(ValueError, match="at least 2 frames"):
        gaussian_stats(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="2-D"):
        gaussian_stats(np.zeros(3))


def test_fad_inf_recovers_exact_line(monkeypatch):
    """Where FAD really is a + b/n, FAD-inf is a, the slope b and r^2 = 1 (the fadtk fit)."""
    a, b = 1.5, 300.0
    monkeypatch.setattr(FramePool, "distance", lambda self, weights: a + b / weights.sum())
    x = np.random.default_rng(0).standard_normal((3000, 4))
    r = fad_inf(x, np.zeros(4), np.eye(4), min_n=500, steps=11, seed=0)
    assert r.value == pytest.approx(a, rel=1e-9)
    assert r.slope == pytest.approx(b, rel=1e-9)
    assert r.r2 == pytest.approx(1.0)
    assert [p[0] for p in r.points] == [int(v) for v in np.linspace(500, 3000, 11)]


def test_fad_inf_extrapolates_gaussian_data():
    """Generated ~ N(0.25, I), reference N(0, I) in 32-D: FAD at infinity is 32 * 0.25^2 = 2; small subsets are
    biased upwards, FAD-inf removes the bias."""
    d = 32
    x = np.random.default_rng(1).standard_normal((20000, d)) + 0.25
    r = fad_inf(x, np.zeros(d), np.eye(d), min_n=500, steps=15, seed=3)
    assert r.points[0][1] > 2.3  # 500 frames: clearly biased
    assert r.value == pytest.approx(2.0, abs=0.1)
    assert r.r2 > 0.8
    again = fad_inf(x, np.zeros(d), np.eye(d), min_n=500, steps=15, seed=3)
    assert again == r  # seeded, deterministic
    assert fad_inf(x, np.zeros(d), np.eye(d), min_n=500, steps=15, seed=4).points != r.points


def test_fad_inf_too_few_frames():
    with pytest.raises(ValueError, match="more than min_n=500"):
        fad_inf(np.zeros((500, 3)), np.zeros(3), np.eye(3))


def test_weighted_distance_equals_repeated_frames():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 6))
    w = rng.integers(0, 4, size=30)
    ref = ReferenceGaussian.from_stats(np.ones(6), np.diag(np.arange(1.0, 7.0)))
    repeated = np.repeat(x, w, axis=0)
    want = frechet_distance(*gaussian_stats(repeated), ref.mu, ref.sigma)
    assert FramePool(x, ref).distance(w) == pytest.approx(want, rel=1e-10)
    assert ref.distance(repeated) == pytest.approx(want, rel=1e-10)
    assert FramePool(x[:5], ref).distance(np.ones(5)) == pytest.approx(ref.distance(x[:5]), rel=1e-10)
    with pytest.raises(ValueError):
        FramePool(x, ref).distance(np.ones(3))


def _clips(rng, n_clips, frames, d, shift):
    return [rng.standard_normal((frames, d)) + shift for _ in range(n_clips)]


def test_bootstrap_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(3)
    d = 4
    clips = _clips(rng, 60, 30, d, 0.4)
    mu, s = np.zeros(d), np.eye(d)
    value = frechet_distance(*gaussian_stats(np.concatenate(clips)), mu, s)
    lo, hi = bootstrap_fad(clips, mu, s, seed=7, resamples=200)
    assert lo < value < hi
    assert (lo, hi) == bootstrap_fad(clips, mu, s, seed=7, resamples=200)
    assert (lo, hi) != bootstrap_fad(clips, mu, s, seed=8, resamples=200)
    assert all(math.isnan(v) for v in bootstrap_fad(clips[:1], mu, s))


def test_bootstrap_bias_in_high_dimension():
    """The trap the docstring names: few frames per dimension -> resampled FADs sit above the estimate, so the
    percentile interval excludes it; the bias-shifted interval is centred on it."""
    rng = np.random.default_rng(4)
    d = 64
    clips = _clips(rng, 40, 8, d, 0.0)  # 320 frames in 64-D
    mu, s = np.zeros(d), np.eye(d)
    value = frechet_distance(*gaussian_stats(np.concatenate(clips)), mu, s)
    pct = bootstrap_fad_detail(clips, mu, s, seed=0, resamples=100)
    shifted = bootstrap_fad_detail(clips, mu, s, seed=0, resamples=100, method="bias-shifted")
    assert pct.bias > 0 and pct.lo > value
    assert shifted.lo < value < shifted.hi
    assert shifted.hi - shifted.lo == pytest.approx(pct.hi - pct.lo)
    with pytest.raises(ValueError, match="method"):
        bootstrap_fad(clips, mu, s, method="bca")


def test_module_is_pure():
    assert not any(name in frechet.__dict__ for name in ("vm_eval", "torch"))
