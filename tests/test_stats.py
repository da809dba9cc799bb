"""Seeded percentile bootstrap: determinism, degenerate inputs, coverage of a known distribution, pairing."""
from __future__ import annotations

import math

import numpy as np
import pytest

from metrics.stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, Estimate, bootstrap_mean, paired_difference


@pytest.fixture(scope="module")
def normal400() -> np.ndarray:
    return np.random.default_rng(12345).standard_normal(400)


def test_deterministic_for_a_seed(normal400):
    a = bootstrap_mean(normal400, seed=3)
    b = bootstrap_mean(normal400.tolist(), seed=3)  # lists and arrays alike
    assert a == b
    assert a.seed == 3 and a.resamples == DEFAULT_RESAMPLES and a.confidence == DEFAULT_CONFIDENCE


def test_other_seed_gives_another_interval(normal400):
    a = bootstrap_mean(normal400, seed=0)
    b = bootstrap_mean(normal400, seed=1)
    assert a.mean == b.mean  # the point estimate does not depend on the seed
    assert (a.lo, a.hi) != (b.lo, b.hi)
    assert a.lo == pytest.approx(b.lo, abs=0.02) and a.hi == pytest.approx(b.hi, abs=0.02)


def test_constant_values_have_no_width():
    for v in (0.1, 1 / 3, -7.0, 0.0):
        e = bootstrap_mean(np.full(50, v))
        assert e.lo == e.hi == e.mean
        assert e.mean == pytest.approx(v, abs=1e-15)
        assert e.std == pytest.approx(0.0, abs=1e-15)
        assert e.n == 50


def test_empty_and_single_value():
    e = bootstrap_mean([])
    assert e.n == 0 and math.isnan(e.mean) and math.isnan(e.lo) and math.isnan(e.hi) and math.isnan(e.std)
    e = bootstrap_mean([2.5])
    assert e.n == 1 and e.mean == 2.5
    assert math.isnan(e.lo) and math.isnan(e.hi) and math.isnan(e.std)
    e = bootstrap_mean([1.0, 3.0])
    assert e.n == 2 and e.mean == 2.0 and 1.0 <= e.lo <= e.hi <= 3.0 and e.std == pytest.approx(math.sqrt(2))


def test_width_of_a_normal_sample(normal400):
    e = bootstrap_mean(normal400, seed=0)
    expected_width = 2 * 1.96 / math.sqrt(400)  # 95% normal CI of the mean of 400 N(0, 1) draws
    assert e.hi - e.lo == pytest.approx(expected_width, rel=0.2)
    assert e.lo < float(np.mean(normal400)) < e.hi
    assert e.mean == pytest.approx(float(np.mean(normal400)), abs=1e-12)
    assert e.std == pytest.approx(float(np.std(normal400, ddof=1)), abs=1e-12)
    assert e.n == 400


def test_confidence_level_orders_the_widths(normal400):
    w90 = bootstrap_mean(normal400, confidence=0.90)
    w99 = bootstrap_mean(normal400, confidence=0.99)
    w95 = bootstrap_mean(normal400)
    assert (w90.hi - w90.lo) < (w95.hi - w95.lo) < (w99.hi - w99.lo)
    # the 90% width is 1.645/1.96 of the 95% width for a normal mean
    assert (w90.hi - w90.lo) / (w95.hi - w95.lo) == pytest.approx(1.645 / 1.96, rel=0.1)


@pytest.mark.parametrize("bad", [[1.0, float("nan"), 2.0], [1.0, float("inf")], [float("-inf")]])
def test_non_finite_values_raise(bad):
    with pytest.raises(ValueError):
        bootstrap_mean(bad)
    with pytest.raises(ValueError):
        paired_difference(bad, [0.0] * len(bad))


def test_paired_difference_of_mismatched_runs_raises():
    with pytest.raises(ValueError, match="same clips"):
        paired_difference([1.0, 2.0, 3.0], [1.0, 2.0])


def test_paired_difference_of_a_constant_shift():
    b = np.random.default_rng(5).integers(-1000, 1000, 200) / 8.0  # exact in binary floating point
    e = paired_difference(b + 1.0, b)
    assert e.mean == 1.0 and e.lo == 1.0 and e.hi == 1.0
    assert e.std == 0.0 and e.n == 200
    # with arbitrary floats the difference is 1 up to rounding
    c = np.random.default_rng(6).standard_normal(200)
    e = paired_difference(c + 1.0, c)
    assert e.mean == pytest.approx(1.0, abs=1e-12) and e.hi - e.lo == pytest.approx(0.0, abs=1e-12)


def test_pairing_removes_shared_variation():
    """Clip difficulty shared by both runs cancels in the paired CI but not in separate CIs."""
    rng = np.random.default_rng(8)
    difficulty = 10 * rng.standard_normal(300)
    a = difficulty + 0.5 + 0.1 * rng.standard_normal(300)
    b = difficulty + 0.1 * rng.standard_normal(300)
    d = paired_difference(a, b)
    assert d.lo > 0.4 and d.hi < 0.6  # clearly positive, narrow
    sep = bootstrap_mean(a)
    assert (sep.hi - sep.lo) > 10 * (d.hi - d.lo)


def test_estimate_as_dict():
    e = bootstrap_mean([1.0, 2.0, 3.0], seed=4)
    d = e.as_dict()
    assert d["mean"] == 2.0 and d["n"] == 3 and d["seed"] == 4
    assert Estimate(**d) == e
