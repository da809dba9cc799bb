"""Exact binomial inference: the Clopper-Pearson interval and the two-sided exact binomial test.

Clopper & Pearson (1934), "The use of confidence or fiducial limits illustrated in the case of the binomial",
Biometrika 26(4): the central interval inverting two one-sided exact tests, in its beta-quantile form
    lo = Beta^{-1}(alpha/2; k, n-k+1),  hi = Beta^{-1}(1-alpha/2; k+1, n-k)   (lo = 0 at k = 0, hi = 1 at k = n).
The beta form is also defined for a fractional k (ties counted as half wins); we use it as is there.

The two-sided p-value is the "minimum likelihood" (point-probability) definition: the total probability of all
outcomes no more likely than the observed one under H0, P = sum_{i: f(i) <= f(k)} f(i) with f the Binomial(n, p0)
pmf (Siegel 1956; the method of R's binom.test and scipy.stats.binomtest, including their relative tolerance
1e-7 on the comparison, so that tied probabilities at p0 = 0.5 are counted on both sides).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import gammaln, xlog1py, xlogy
from scipy.stats import beta

_RTOL = 1.0 + 1e-7


def clopper_pearson(k: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Clopper-Pearson (1934) exact (1 - alpha) interval for a binomial proportion with k successes in n trials.

    Returns (nan, nan) for n = 0. `k` may be fractional (beta-quantile form, see the module docstring).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (math.nan, math.nan)
    lo = 0.0 if k <= 0 else float(beta.ppf(alpha / 2.0, k, n - k + 1))
    hi = 1.0 if k >= n else float(beta.ppf(1.0 - alpha / 2.0, k + 1, n - k))
    return (lo, hi)


def _log_pmf(n: int, p: float) -> np.ndarray:
    i = np.arange(n + 1, dtype=np.float64)
    log_comb = gammaln(n + 1.0) - gammaln(i + 1.0) - gammaln(n - i + 1.0)
    lp = xlogy(i, p) + xlog1py(n - i, -p)  # 0 * log(0) = 0 at p in {0, 1}
    return log_comb + lp


def binomial_test(k: int, n: int, p: float = 0.5) -> float:
    """Two-sided exact binomial test of H0: success probability = p; the p-value (see module docstring).

    Returns nan for n = 0. Agrees with scipy.stats.binomtest(k, n, p, alternative="two-sided").pvalue.
    """
    if int(k) != k or int(n) != n:
        raise ValueError(f"the exact binomial test needs integer counts, got k={k}, n={n}")
    k, n = int(k), int(n)
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    if n == 0:
        return math.nan
    pmf = np.exp(_log_pmf(n, p))
    observed = pmf[k]
    return float(min(1.0, pmf[pmf <= observed * _RTOL].sum()))


@dataclass(frozen=True)
class BinomialSummary:
    """k successes of n with the proportion, its Clopper-Pearson interval and the exact two-sided p-value vs p0."""

    k: float
    n: int
    proportion: float
    ci_lo: float
    ci_hi: float
    p_value: float
    p0: float = 0.5
    alpha: float = 0.05

    def as_dict(self) -> dict:
        return asdict(self)


def binomial_summary(k: int, n: int, p0: float = 0.5, alpha: float = 0.05) -> BinomialSummary:
    """Proportion k/n with its Clopper-Pearson (1 - alpha) interval and the exact binomial test against p0."""
    lo, hi = clopper_pearson(k, n, alpha)
    prop = k / n if n else math.nan
    return BinomialSummary(k, n, prop, lo, hi, binomial_test(k, n, p0), p0, alpha)
