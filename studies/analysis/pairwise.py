"""Pairwise win rates per (question, system pair) with Clopper-Pearson intervals and exact binomial tests.

Each pair is reported once, in canonical order (`votes.canonical_pair`): `system` is the pair's first system,
`opponent` the second, and `wins`/`losses` count votes for `system`/`opponent`, whatever side each was shown on.

Ties, `ties="exclude"` (the default): the win rate is wins / (wins + losses), the sign-test convention of
dropping ties (Dixon & Mood 1946), so the Clopper-Pearson interval and the exact test use integer counts.
`ties="half"`: a tie is half a win for each system; the rate is (wins + ties/2) / (wins + losses + ties) and its
interval is the Clopper-Pearson beta-quantile form at the fractional count. In both modes the p-value is the
two-sided exact binomial test of wins vs losses against 0.5 (a sign test): ties carry no direction, and under
H0 either rate equals 0.5. `p_holm` adjusts the p-values within the table by Holm (1979).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from metrics.stats import holm

from .binomial import binomial_test, clopper_pearson
from .votes import FIRST, SECOND, TIE, system_sort_key, with_canonical

TiePolicy = Literal["exclude", "half"]

WIN_RATE_COLUMNS: tuple[str, ...] = (
    "question", "system", "opponent", "wins", "losses", "ties", "n", "win_rate", "ci_lo", "ci_hi", "p_value",
    "p_holm",
)


def win_rate(wins: int, losses: int, ties: int, ties_policy: TiePolicy = "exclude",
             alpha: float = 0.05) -> tuple[float, float, float, float]:
    """(win_rate, ci_lo, ci_hi, p_value) for one pair's counts; see the module docstring for the tie policies."""
    if ties_policy == "exclude":
        k, n = float(wins), wins + losses
    elif ties_policy == "half":
        k, n = wins + ties / 2.0, wins + losses + ties
    else:
        raise ValueError(f"ties must be 'exclude' or 'half', got {ties_policy!r}")
    rate = k / n if n else math.nan
    lo, hi = clopper_pearson(k, n, alpha)
    return rate, lo, hi, binomial_test(wins, wins + losses, 0.5)


def pairwise_win_rates(votes: pd.DataFrame, ties: TiePolicy = "exclude", alpha: float = 0.05,
                       system_order: Sequence[str] | None = None) -> pd.DataFrame:
    """Win-rate table with one row per (question, canonical pair) present in `votes` (columns WIN_RATE_COLUMNS).

    `votes` is a validated votes table (`votes_frame`); pass it without catch trials for the system comparison.
    Holm adjustment runs over the pairs of each question separately.
    """
    if ties not in ("exclude", "half"):
        raise ValueError(f"ties must be 'exclude' or 'half', got {ties!r}")
    if len(votes) == 0:
        return pd.DataFrame(columns=list(WIN_RATE_COLUMNS))
    df = with_canonical(votes, system_order)
    counts = (
        df.groupby(["question", "first", "second", "outcome"], sort=False).size().unstack("outcome", fill_value=0)
    )
    for col in (FIRST, SECOND, TIE):
        if col not in counts.columns:
            counts[col] = 0
    rows = []
    for (question, first, second), c in counts.iterrows():
        w, l, t = int(c[FIRST]), int(c[SECOND]), int(c[TIE])
        rate, lo, hi, p = win_rate(w, l, t, ties, alpha)
        n = w + l if ties == "exclude" else w + l + t
        rows.append((question, first, second, w, l, t, n, rate, lo, hi, p))
    table = pd.DataFrame(rows, columns=list(WIN_RATE_COLUMNS[:-1]))
    table["p_holm"] = np.nan
    for idx in table.groupby("question", sort=False).groups.values():
        table.loc[idx, "p_holm"] = holm(table.loc[idx, "p_value"].to_numpy())
    order = list(dict.fromkeys(votes["question"]))  # questions in first-seen order, pairs canonically
    table["_q"] = table["question"].map({q: i for i, q in enumerate(order)})
    table["_a"] = [system_sort_key(s, system_order) for s in table["system"]]
    table["_b"] = [system_sort_key(s, system_order) for s in table["opponent"]]
    table = table.sort_values(["_q", "_a", "_b"], kind="stable").drop(columns=["_q", "_a", "_b"])
    return table.reset_index(drop=True)
