"""Seeded bootstrap confidence intervals over clips (percentile method, Efron & Tibshirani 1993, ch. 13).

Every resample draws clip indices with replacement from a numpy Generator seeded by `seed`, so the same values
give the same interval everywhere. Paired differences resample clips jointly, keeping each clip's pairing.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """Mean with a (confidence) bootstrap interval; lo/hi are NaN when n < 2."""

    mean: float
    lo: float
    hi: float
    n: int
    std: float
    confidence: float = DEFAULT_CONFIDENCE
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _clean(values) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(a)):
        raise ValueError("bootstrap needs finite values; drop failed clips before aggregating")
    return a


def bootstrap_mean(
    values, seed: int = 0, resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE
) -> Estimate:
    """Mean of `values` with a percentile bootstrap CI over the clips."""
    a = _clean(values)
    n = a.size
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, math.nan, confidence, resamples, seed)
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if n > 1 else math.nan
    if n < 2:
        return Estimate(mean, math.nan, math.nan, n, std, confidence, resamples, seed)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 256):  # chunks keep memory flat for large n
        stop = min(resamples, start + 256)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = a[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return Estimate(mean, float(lo), float(hi), n, std, confidence, resamples, seed)


def paired_difference(
    a, b, seed: int = 0, resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE
) -> Estimate:
    """Mean of a - b over clips both runs scored (same order), with a paired bootstrap CI."""
    x, y = _clean(a), _clean(b)
    if x.shape != y.shape:
        raise ValueError(f"paired values need the same clips: got {x.size} and {y.size}")
    return bootstrap_mean(x - y, seed=seed, resamples=resamples, confidence=confidence)


def bootstrap_p_value(diffs, seed: int = 0, resamples: int = DEFAULT_RESAMPLES) -> float:
    """Two-sided p-value of H0 "mean difference = 0" by the shifted (null-centred) bootstrap over clips
    (Efron & Tibshirani 1993, sec. 16.4): resample ``d - mean(d)`` and count resampled means at least as far from 0
    as the observed one; ``(1 + count) / (1 + resamples)``, so never 0. NaN when n < 2."""
    d = _clean(diffs)
    n = d.size
    if n < 2:
        return math.nan
    observed = abs(float(d.mean()))
    centred = d - d.mean()
    rng = np.random.default_rng(seed)
    count = 0
    for start in range(0, resamples, 256):
        stop = min(resamples, start + 256)
        means = centred[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
        count += int(np.sum(np.abs(means) >= observed - 1e-12))
    return (1 + count) / (1 + resamples)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment (Holm 1979) of a family of p-values: sort ascending, multiply the i-th smallest
    (0-based) by (m - i), take the running maximum, cap at 1. NaN entries stay NaN and do not count in m."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out
