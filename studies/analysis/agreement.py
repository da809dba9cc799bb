"""Inter-rater agreement: Krippendorff's alpha for nominal data.

Krippendorff (2011), "Computing Krippendorff's alpha-reliability" (Annenberg School, Univ. of Pennsylvania),
section C (nominal data, any number of observers, missing values): from the values of each unit u with
m_u >= 2 pairable values, the coincidence matrix o_ck = sum_u n_uc * (n_uk - [c = k]) / (m_u - 1), marginals
n_c = sum_k o_ck, n = sum_c n_c, and
    alpha = 1 - D_o / D_e = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c * n_k.
alpha = 1 is perfect agreement, 0 agreement at chance level. With a single value used throughout (D_e = 0) alpha
is undefined (0/0, Krippendorff 2011: the data show no variation) and is returned as NaN.

For a listening test a unit is (question, clip, system pair), the pair in canonical order, and a value is which
of the pair's systems a rater chose ("first" / "second"), or "tie": the side order a rater saw does not matter.
Every kept vote is one value; a rater who judged a unit twice (both side orders) contributes two values.
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .votes import with_canonical


@dataclass(frozen=True)
class Agreement:
    """Krippendorff's alpha with its parts: pairable units and values, observed and expected disagreement."""

    alpha: float
    units: int
    values: int
    observed_disagreement: float
    expected_disagreement: float

    def as_dict(self) -> dict:
        return asdict(self)


def _is_missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def krippendorff_nominal(units: Iterable[Sequence[Hashable | None]]) -> Agreement:
    """Krippendorff's (2011) nominal alpha from the values of each unit (None / NaN = missing).

    Pass a coders x units matrix transposed (one sequence per unit), or per unit any list of the values given.
    Units with fewer than two values are not pairable and are ignored.
    """
    rows = [[v for v in unit if not _is_missing(v)] for unit in units]
    rows = [r for r in rows if len(r) >= 2]
    categories = sorted({v for r in rows for v in r}, key=repr)
    if not rows:
        return Agreement(math.nan, 0, 0, math.nan, math.nan)
    pos = {c: i for i, c in enumerate(categories)}
    counts = np.zeros((len(rows), len(categories)))
    for u, r in enumerate(rows):
        for v in r:
            counts[u, pos[v]] += 1
    m = counts.sum(axis=1)
    coincidence = (counts[:, :, None] * counts[:, None, :]
                   - np.einsum("uc,ck->uck", counts, np.eye(len(categories)))) / (m - 1)[:, None, None]
    o = coincidence.sum(axis=0)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    off = ~np.eye(len(categories), dtype=bool)
    d_o = o[off].sum() / n
    d_e = (np.outer(n_c, n_c)[off].sum()) / (n * (n - 1))
    alpha = 1.0 - d_o / d_e if d_e > 0 else math.nan
    return Agreement(float(alpha), len(rows), round(n), float(d_o), float(d_e))


def vote_agreement(votes: pd.DataFrame, system_order: Sequence[str] | None = None) -> Agreement:
    """Nominal alpha over units (question, clip, canonical pair); values: first / second / tie (module docstring).

    Pass the votes of one question (or several: units never mix questions). Catch trials should be removed.
    """
    if len(votes) == 0:
        return Agreement(math.nan, 0, 0, math.nan, math.nan)
    df = with_canonical(votes, system_order)
    groups = df.groupby(["question", "clip_id", "first", "second"], sort=True)["outcome"]
    return krippendorff_nominal(list(v) for _, v in groups)
