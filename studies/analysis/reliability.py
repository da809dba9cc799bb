"""Split-half reliability of the Bradley-Terry ranking.

Repeatedly (seeded) split the raters at random into two halves of equal size (one rater left out when their
number is odd), fit Bradley-Terry point strengths on each half (Hunter's MM, `bradley_terry.mm_fit`, same tie policy
and prior as the main fit), and take Spearman's rank correlation rho between the halves' strengths. Each rho
is stepped up to the full panel with the Spearman-Brown prophecy formula (Spearman 1910; Brown 1910),
    r_full = 2 rho / (1 + rho),
which diverges at rho = -1; corrected values are floored at -1 (a reliability below -1 has no meaning).
Reported: the mean over splits and the percentile interval, for rho and for the corrected value. Splits where
a half's strengths are all equal (rho undefined) are skipped and counted. With fewer than 3 systems a rank
correlation says nothing and the result is NaN; likewise with fewer than 4 raters.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from .bradley_terry import mm_fit, rater_win_matrices
from .votes import system_index


@dataclass(frozen=True)
class SplitHalf:
    """Split-half reliability summary over `splits` random splits (`valid` of them gave a defined rho)."""

    rho_mean: float
    rho_lo: float
    rho_hi: float
    corrected_mean: float
    corrected_lo: float
    corrected_hi: float
    splits: int
    valid: int
    confidence: float

    def as_dict(self) -> dict:
        return asdict(self)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of the (average-tied) ranks; NaN when either is constant."""
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / den) if den > 0 else math.nan


def spearman_brown(r: float | np.ndarray, factor: float = 2.0) -> np.ndarray:
    """Spearman-Brown prophecy: reliability of a test `factor` times as long, factor*r / (1 + (factor-1)*r)."""
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = factor * r / (1.0 + (factor - 1.0) * r)
    return np.where(r <= -1.0, -1.0, np.maximum(out, -1.0))


def split_half_reliability(votes: pd.DataFrame, splits: int = 200, seed: int = 0, confidence: float = 0.95,
                           ties: Literal["exclude", "half"] = "exclude", prior: float = 1.0,
                           system_order: Sequence[str] | None = None) -> SplitHalf:
    """Split-half reliability of the BT strengths of one question's votes (see the module docstring)."""
    systems = system_index(pd.concat([votes["system_a"], votes["system_b"]]), system_order)
    raters = votes["rater_id"].astype(str).unique()
    nan = math.nan
    if len(systems) < 3 or raters.size < 4 or splits < 1:
        return SplitHalf(nan, nan, nan, nan, nan, nan, splits, 0, confidence)
    rng = np.random.default_rng(seed)
    ids, per_rater = rater_win_matrices(votes, systems, ties)
    n = len(ids)
    half = n // 2
    member = np.zeros((2 * splits, n))  # row 2s: half A of split s, row 2s+1: half B
    for s in range(splits):
        perm = rng.permutation(n)
        member[2 * s, perm[:half]] = 1.0
        member[2 * s + 1, perm[half:2 * half]] = 1.0
    k = len(systems)
    wins = (member @ per_rater.reshape(n, k * k)).reshape(2 * splits, k, k)
    strengths = np.round(mm_fit(wins, prior), 9)  # equal strengths stay equal under floating-point noise
    rhos = [spearman(strengths[2 * s], strengths[2 * s + 1]) for s in range(splits)]
    rho = np.asarray(rhos)
    rho = rho[~np.isnan(rho)]
    if rho.size == 0:
        return SplitHalf(nan, nan, nan, nan, nan, nan, splits, 0, confidence)
    corrected = spearman_brown(rho)
    q = [(1.0 - confidence) / 2.0, 1.0 - (1.0 - confidence) / 2.0]
    r_lo, r_hi = np.quantile(rho, q)
    c_lo, c_hi = np.quantile(corrected, q)
    return SplitHalf(float(rho.mean()), float(r_lo), float(r_hi), float(corrected.mean()), float(c_lo),
                     float(c_hi), splits, int(rho.size), confidence)
