"""Bootstrap intervals for statistics of votes crossed by raters and clips (two-way clustered data).

A vote belongs to one rater and one clip, and both are samples from larger populations: another panel would
judge differently, and so would the same panel on other videos. Votes of one rater are correlated, and so are
votes on one clip. Resampling raters alone treats clips as fixed (too narrow when clips differ); resampling raters
and clips together with product weights (the pigeonhole bootstrap, Owen 2007, Ann. Appl. Stat. 1(2)) counts the
vote-level noise once per factor and roughly doubles the variance when raters and clips do not matter (on synthetic
Bradley-Terry votes here: 99.7% coverage of nominal 95% intervals).

Method (`cluster="two-way"`): the two-way cluster-robust variance of Cameron, Gelbach & Miller (2011), "Robust
inference with multiway clustering", J. Bus. Econ. Stat. 29(2), 238-249, with each one-way variance estimated
by a cluster bootstrap: three seeded bootstraps of the statistic, resampling (1) raters, (2) clips, (3) rater x
clip cells, each unit with replacement, every vote weighted by the multiplicity of its unit. With V_R, V_C, V_RC
their variances, each times G / (G - 1) for its G units (the bootstrap variance of a mean of G cluster totals
is (G - 1) / G of the unbiased one),
    V = V_R + V_C - V_RC,   floored at max(V_R, V_C) (the variance of a crossed design is never below either
                             one-way part; a stronger form of CGM's fix for a negative V),
and the interval is the standard normal one, estimate +- z_{1 - alpha/2} sqrt(V) (Efron & Tibshirani 1993,
"An Introduction to the Bootstrap", ch. 12). `cluster="rater"`: V = V_R; `cluster="vote"`: V = V_vote.
Measured on synthetic Bradley-Terry votes (tests/test_study_stats_coverage.py): 95% intervals cover the truth
in 97.5%, 97.0% and 95.4% of 200 replications at 5, 20 and 100 raters; without the floor about 91%; with CGM's
t_{G-1} quantile (G = min(raters, clips)) 99-100%, so the normal quantile is used.
A statistic evaluated on the clip scores as well (e.g. a metric's mean per system) gets the clip pass's
multiplicities as clip weights, and weight 1 per clip in the other passes.

Minimum: G units have C(2G - 1, G) distinct resamples (3 at G = 2, 10 at 3, 35 at 4, 126 at 5): too few below
`MIN_UNITS` = 5 per clustering factor to estimate a variance. There the interval is undefined (NaN, with a note)
rather than falsely narrow.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import norm

Cluster = Literal["two-way", "rater", "vote"]
CLUSTERS: tuple[str, ...] = ("two-way", "rater", "vote")
MIN_UNITS = 5
#: stat(vote weights (B, n_votes), clip weights (B, n_clips)) -> (B, m) values of m statistics per replicate.
Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


def multiplicities(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(size, n) float multiplicities of n units drawn n times with replacement, one row per replicate."""
    idx = rng.integers(0, n, size=(size, n))
    flat = (idx + n * np.arange(size)[:, None]).ravel()
    return np.bincount(flat, minlength=size * n).reshape(size, n).astype(np.float64)


@dataclass(frozen=True)
class Design:
    """Who and what each vote belongs to: `rater[v]`, `clip[v]` and `cell[v]` (rater x clip) as indices into
    `raters`, `clips` and the cells."""

    raters: list[str]
    clips: list[str]
    rater: np.ndarray
    clip: np.ndarray
    cell: np.ndarray
    n_cells: int

    @property
    def n_votes(self) -> int:
        return int(self.rater.size)

    def units(self, cluster: Cluster) -> dict[str, int]:
        """Units of each clustering factor of `cluster` (what `MIN_UNITS` is checked against)."""
        if cluster == "two-way":
            return {"raters": len(self.raters), "clips": len(self.clips)}
        if cluster == "rater":
            return {"raters": len(self.raters)}
        return {"votes": self.n_votes}

    def too_few(self, cluster: Cluster, min_units: int = MIN_UNITS) -> str | None:
        """Why an interval is undefined (fewer than `min_units` units of a factor), or None."""
        short = [f"{n} {name}" for name, n in self.units(cluster).items() if n < min_units]
        if short:
            return f"interval undefined: only {' and '.join(short)} (fewer than {min_units} to resample)"
        return None


def design(raters: np.ndarray, clips: np.ndarray) -> Design:
    """The resampling design of votes given their rater and clip ids."""
    r_names, r_idx = np.unique(np.asarray(raters).astype(str), return_inverse=True)
    c_names, c_idx = np.unique(np.asarray(clips).astype(str), return_inverse=True)
    _, cell = np.unique(r_idx * max(c_names.size, 1) + c_idx, return_inverse=True)
    return Design(r_names.tolist(), c_names.tolist(), r_idx, c_idx, cell, int(cell.max()) + 1 if cell.size else 0)


@dataclass
class Interval:
    """Per statistic: the (1 - alpha) interval, the bootstrap standard error and its parts (NaN when undefined)."""

    lo: np.ndarray
    hi: np.ndarray
    se: np.ndarray
    note: str | None
    variances: dict[str, np.ndarray]


def _passes(cluster: Cluster) -> tuple[str, ...]:
    return {"two-way": ("rater", "clip", "cell"), "rater": ("rater",), "vote": ("vote",)}[cluster]


def _weights(d: Design, factor: str, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    ones = np.ones((size, len(d.clips)))
    if factor == "rater":
        return multiplicities(rng, len(d.raters), size)[:, d.rater], ones
    if factor == "clip":
        wc = multiplicities(rng, len(d.clips), size)
        return wc[:, d.clip], wc
    if factor == "cell":
        return multiplicities(rng, d.n_cells, size)[:, d.cell], ones
    return multiplicities(rng, d.n_votes, size), ones


def _units(d: Design, factor: str) -> int:
    return {"rater": len(d.raters), "clip": len(d.clips), "cell": d.n_cells, "vote": d.n_votes}[factor]


def crossed_interval(stat: Statistic, d: Design, estimate: np.ndarray, resamples: int = 1000,
                     confidence: float = 0.95, seed: int = 0, cluster: Cluster = "two-way",
                     min_units: int = MIN_UNITS, budget: int = 2_000_000) -> Interval:
    """Interval around `estimate` (m values) for the statistic `stat`, as the module docstring says.

    Replicates are drawn from `numpy.random.default_rng(seed)` in chunks of about `budget` weights. Replicates
    where the statistic is NaN (undefined on that resample) are left out of the variance.
    """
    if cluster not in CLUSTERS:
        raise ValueError(f"cluster must be one of {list(CLUSTERS)}, got {cluster!r}")
    estimate = np.asarray(estimate, dtype=np.float64)
    nan = np.full(estimate.shape, math.nan)
    note = d.too_few(cluster, min_units)
    if note is None and resamples < 2:
        note = "interval undefined: fewer than 2 bootstrap resamples requested"
    if note is not None:
        return Interval(nan, nan.copy(), nan.copy(), note, {})
    rng = np.random.default_rng(seed)
    variances: dict[str, np.ndarray] = {}
    step = max(1, min(resamples, budget // max(d.n_votes, len(d.clips), 1)))
    for factor in _passes(cluster):
        reps = np.empty((resamples, estimate.size))
        for start in range(0, resamples, step):
            size = min(resamples, start + step) - start
            wv, wc = _weights(d, factor, rng, size)
            reps[start:start + size] = np.asarray(stat(wv, wc), dtype=np.float64).reshape(size, estimate.size)
        g = _units(d, factor)
        with np.errstate(invalid="ignore"):
            variances[factor] = np.nanvar(reps, axis=0, ddof=1) * g / (g - 1)
    if cluster == "two-way":
        vr, vc = variances["rater"], variances["clip"]
        v = np.fmax(vr + vc - variances["cell"], np.fmax(vr, vc))
    else:
        v = variances[_passes(cluster)[0]]
    se = np.sqrt(v)
    q = float(norm.ppf(0.5 + confidence / 2.0))
    return Interval(estimate - q * se, estimate + q * se, se, None, variances)
