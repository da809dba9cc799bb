"""Data-quality checks: position bias, catch-trial accuracy per rater, and the rater exclusion rule.

Position bias: the share of decisive (non-tie) votes for side A, with its Clopper-Pearson (1934) interval and
the two-sided exact binomial test against 0.5. In a design that shows every pair in both side orders, a share
away from 0.5 is a preference for a position, not for a system. Catch trials are left out by default (their
correct side is set by the design, not by the rater's taste).

Catch accuracy: on catch trials with an expected side (`catch_expected` "A"/"B"; questions without a catch are
not scored), an answer is correct when it names the expected side; a tie counts as wrong, since a careful rater
hears the difference. Accuracy is pooled over questions per rater.

Exclusion (post-screening as in ITU-R BS.1534-3 MUSHRA section 4.1.2, adapted to catch trials): a rater is
excluded when they saw fewer than `min_catch_trials` scored catch trials (distinct trials; not screenable), or
when their accuracy over the scored catch answers (one per trial and question) is below `min_accuracy`. When
the study has no scored catch trials at all the rule cannot apply and nobody is excluded. With
`exclude_failed_screening`, a rater whose headphone screening failed (`screening_passed` False on their votes) is
excluded too ("failed headphone screening"; the reason takes precedence). All other statistics run on the kept
raters.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from .binomial import binomial_test, clopper_pearson

CATCH_COLUMNS: tuple[str, ...] = (
    "rater_id", "votes", "catch_trials", "catch_answers", "catch_correct", "catch_accuracy", "ci_lo", "ci_hi",
    "excluded", "reason", "screening_passed",
)


@dataclass(frozen=True)
class PositionBias:
    """Votes for side A and side B (ties apart), share_a = n_a / (n_a + n_b), its interval and p-value vs 0.5."""

    n_a: int
    n_b: int
    n_ties: int
    share_a: float
    ci_lo: float
    ci_hi: float
    p_value: float

    def as_dict(self) -> dict:
        return asdict(self)


def position_bias(votes: pd.DataFrame, alpha: float = 0.05, include_catch: bool = False) -> PositionBias:
    """Share of non-tie votes for side A, Clopper-Pearson interval, exact two-sided binomial test vs 0.5."""
    df = votes if include_catch else votes[~votes["is_catch"].astype(bool)]
    n_a = int((df["answer"] == "A").sum())
    n_b = int((df["answer"] == "B").sum())
    n_t = int((df["answer"] == "tie").sum())
    n = n_a + n_b
    lo, hi = clopper_pearson(n_a, n, alpha)
    return PositionBias(n_a, n_b, n_t, n_a / n if n else math.nan, lo, hi, binomial_test(n_a, n, 0.5))


@dataclass(frozen=True)
class ExclusionRule:
    """Rater screening on catch trials: exclude below `min_accuracy`, or with fewer than `min_catch_trials`.

    `enabled=False` keeps everybody on the catch trials (the table still reports accuracy).
    `exclude_failed_screening`: also exclude raters who failed the headphone screening (the study config's
    `screening.exclude_failed`), whatever `enabled` says.
    """

    min_accuracy: float = 0.75
    min_catch_trials: int = 2
    enabled: bool = True
    exclude_failed_screening: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_accuracy <= 1.0:
            raise ValueError(f"min_accuracy must lie in [0, 1], got {self.min_accuracy}")
        if self.min_catch_trials < 0:
            raise ValueError(f"min_catch_trials must be >= 0, got {self.min_catch_trials}")


def catch_accuracy(votes: pd.DataFrame, rule: ExclusionRule | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """Per rater (every rater in `votes`, sorted by id): catch accuracy, its interval and the exclusion decision.

    Columns CATCH_COLUMNS; `reason` is "" for kept raters. `votes` counts all of the rater's answers,
    `catch_trials` the distinct scored catch trials, `catch_answers` / `catch_correct` the scored answers.
    """
    rule = rule or ExclusionRule()
    raters = sorted(votes["rater_id"].astype(str).unique())
    scored = votes[votes["is_catch"].astype(bool) & votes["catch_expected"].notna()]
    correct = (scored["answer"] == scored["catch_expected"]).groupby(scored["rater_id"]).agg(["sum", "size"])
    trials = scored.groupby("rater_id")["trial_id"].nunique()
    totals = votes.groupby("rater_id").size()
    passed = _screening(votes)
    screening = rule.enabled and len(scored) > 0
    rows = []
    for r in raters:
        k = int(correct.at[r, "sum"]) if r in correct.index else 0
        n = int(correct.at[r, "size"]) if r in correct.index else 0
        t = int(trials.get(r, 0))
        acc = k / n if n else math.nan
        lo, hi = clopper_pearson(k, n, alpha)
        reason = ""
        if rule.exclude_failed_screening and passed.get(r) is False:
            reason = "failed headphone screening"
        elif screening and t < rule.min_catch_trials:
            reason = f"too few catch trials ({t} < {rule.min_catch_trials})"
        elif screening and n and acc < rule.min_accuracy:
            reason = f"catch accuracy {k}/{n} = {acc:.2f} < {rule.min_accuracy:.2f}"
        rows.append((r, int(totals.get(r, 0)), t, n, k, acc, lo, hi, bool(reason), reason, passed.get(r)))
    return pd.DataFrame(rows, columns=list(CATCH_COLUMNS))


def _screening(votes: pd.DataFrame) -> dict[str, bool | None]:
    """Per rater: False if any vote says the screening failed, True if one says passed, else None (not screened)."""
    if "screening_passed" not in votes.columns:
        return {}
    out: dict[str, bool | None] = {}
    for r, x in zip(votes["rater_id"].astype(str), votes["screening_passed"]):
        if x is None or (isinstance(x, float) and math.isnan(x)):
            out.setdefault(r, None)
        elif not bool(x):
            out[r] = False
        elif out.get(r) is None:
            out[r] = True
    return out


def apply_exclusion(votes: pd.DataFrame, rule: ExclusionRule | None = None,
                    alpha: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept votes, the catch table): the votes of raters the rule keeps, and every rater's screening row."""
    table = catch_accuracy(votes, rule, alpha)
    excluded = set(table.loc[table["excluded"], "rater_id"])
    kept = votes[~votes["rater_id"].astype(str).isin(excluded)].reset_index(drop=True)
    return kept, table
