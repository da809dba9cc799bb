"""The CI rank rule, shared by the terminal table, the report and the leaderboard.

Rank (the studies issue's rule): 1 + the number of systems whose interval is entirely better than this one's (lower
bound above this upper bound when higher is better; upper bound below this lower bound otherwise). The rank range
adds the worst rank the intervals allow: N - the number of systems entirely worse. A system without a CI is not
ranked and does not count for the others.
"""
from __future__ import annotations

import numpy as np


def ci_ranks(lo, hi, higher_is_better: bool) -> tuple[np.ndarray, np.ndarray]:
    """(best rank, worst rank) per system as float arrays; NaN where lo or hi is missing (NaN)."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    ok = ~(np.isnan(lo) | np.isnan(hi))
    with np.errstate(invalid="ignore"):
        if higher_is_better:
            better = (lo[None, :] > hi[:, None])  # better[i, j]: j entirely better than i
        else:
            better = (hi[None, :] < lo[:, None])
    better &= ok[None, :] & ok[:, None]
    n_better = better.sum(axis=1)
    n_worse = better.sum(axis=0)
    best = np.where(ok, 1 + n_better, np.nan)
    worst = np.where(ok, ok.sum() - n_worse, np.nan)
    return best, worst
