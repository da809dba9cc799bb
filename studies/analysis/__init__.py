"""Statistics of pairwise listening tests, as pure functions on a votes table (see `votes.Vote`).

Modules: `votes` (the table and canonical pair order), `binomial` (Clopper-Pearson, exact binomial test),
`pairwise` (win rates per system pair), `bradley_terry` (Hunter's MM fit, bootstrap CIs, CI-based ranks),
`quality` (position bias, catch accuracy, rater exclusion), `agreement` (Krippendorff's alpha),
`reliability` (split-half reliability of the ranking), `report` (everything per question), `resample` (two-way
raters x clips bootstrap intervals), `metric_agreement` (which objective metric predicts the votes).
"""
from .agreement import Agreement, krippendorff_nominal, vote_agreement
from metrics.stats import holm

from .binomial import BinomialSummary, binomial_summary, binomial_test, clopper_pearson
from .bradley_terry import BT_COLUMNS, BTConfig, BTResult, bt_strengths, ci_ranks, fit_bradley_terry, mm_fit
from .pairwise import WIN_RATE_COLUMNS, pairwise_win_rates, win_rate
from .quality import (
    CATCH_COLUMNS,
    ExclusionRule,
    PositionBias,
    apply_exclusion,
    catch_accuracy,
    position_bias,
)
from .reliability import SplitHalf, spearman, spearman_brown, split_half_reliability
from .metric_agreement import AGREEMENT_COLUMNS, AgreementConfig, kendall_tau_b, metric_agreement
from .report import ARENA_COLUMNS, AnalysisConfig, QuestionReport, StudyReport, arena_table, report
from .resample import MIN_UNITS, crossed_interval
from .votes import VOTE_COLUMNS, Vote, canonical_outcome, canonical_pair, system_index, votes_frame

__all__ = [
    "AGREEMENT_COLUMNS",
    "ARENA_COLUMNS",
    "BT_COLUMNS",
    "MIN_UNITS",
    "AgreementConfig",
    "arena_table",
    "crossed_interval",
    "kendall_tau_b",
    "metric_agreement",
    "CATCH_COLUMNS",
    "VOTE_COLUMNS",
    "WIN_RATE_COLUMNS",
    "Agreement",
    "AnalysisConfig",
    "BTConfig",
    "BTResult",
    "BinomialSummary",
    "ExclusionRule",
    "PositionBias",
    "QuestionReport",
    "SplitHalf",
    "StudyReport",
    "Vote",
    "apply_exclusion",
    "binomial_summary",
    "binomial_test",
    "bt_strengths",
    "canonical_outcome",
    "canonical_pair",
    "catch_accuracy",
    "ci_ranks",
    "clopper_pearson",
    "fit_bradley_terry",
    "holm",
    "krippendorff_nominal",
    "mm_fit",
    "pairwise_win_rates",
    "position_bias",
    "report",
    "spearman",
    "spearman_brown",
    "split_half_reliability",
    "system_index",
    "vote_agreement",
    "votes_frame",
    "win_rate",
]
