"""One call that runs the whole analysis of a votes table: `report(votes, config)`.

Order: validate the table (`votes_frame`); screen raters on catch trials (`quality.apply_exclusion`); drop catch
trials; then per question, on the kept raters' votes: pairwise win rates, Bradley-Terry strengths with
bootstrap intervals and ranks, position bias, Krippendorff's alpha, split-half reliability. Returns the tables
as pandas DataFrames and a JSON-serialisable summary (floats rounded to 4 decimals, p-values to 4 significant
digits, NaN as None). Writing files and plotting are left to the caller.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from .agreement import Agreement, vote_agreement
from .bradley_terry import BT_COLUMNS, BTConfig, fit_bradley_terry
from .pairwise import pairwise_win_rates
from .quality import ExclusionRule, PositionBias, apply_exclusion, position_bias
from .reliability import SplitHalf, split_half_reliability
from .votes import Vote, votes_frame

SUMMARY_VERSION = 1


class AnalysisConfig(BaseModel):
    """Settings of `report`; every field has a default, unknown keys are rejected.

    ties: "exclude" (default; sign-test convention) or "half", for win rates and Bradley-Terry alike.
    alpha: 1 - level of the Clopper-Pearson intervals. confidence: level of the bootstrap and split-half
    intervals. resamples / cluster / prior: Bradley-Terry bootstrap (see bradley_terry). splits: random
    split-halves. seed: for every random draw. exclusion: the catch-trial rule. system_order: canonical order
    of systems (the rest follow alphabetically). questions: the questions to report (default: all, in
    first-seen order).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ties: Literal["exclude", "half"] = "exclude"
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    resamples: int = Field(1000, ge=0)
    cluster: Literal["rater", "vote"] = "rater"
    prior: float = Field(1.0, gt=0.0)
    splits: int = Field(200, ge=0)
    seed: int = 0
    exclusion: ExclusionRule = ExclusionRule()
    system_order: list[str] | None = None
    questions: list[str] | None = None

    def bt(self) -> BTConfig:
        """The Bradley-Terry settings this config implies."""
        return BTConfig(ties=self.ties, prior=self.prior, resamples=self.resamples, cluster=self.cluster,
                        confidence=self.confidence, seed=self.seed)


@dataclass
class QuestionReport:
    """Everything computed for one question on the kept raters' non-catch votes."""

    question: str
    votes: int
    raters: int
    win_rates: pd.DataFrame
    bradley_terry: pd.DataFrame
    connected: bool
    position_bias: PositionBias
    agreement: Agreement
    reliability: SplitHalf


@dataclass
class StudyReport:
    """Per-question reports, the rater screening table, and the JSON-able summary."""

    questions: dict[str, QuestionReport]
    raters: pd.DataFrame
    summary: dict[str, Any]
    config: AnalysisConfig = field(default_factory=AnalysisConfig)

    @property
    def win_rates(self) -> pd.DataFrame:
        """All questions' win-rate tables stacked (the `question` column tells them apart)."""
        return _stack([q.win_rates for q in self.questions.values()])

    @property
    def bradley_terry(self) -> pd.DataFrame:
        """All questions' Bradley-Terry tables stacked, with a leading `question` column."""
        return _stack([q.bradley_terry.assign(question=q.question)[["question", *q.bradley_terry.columns]]
                       for q in self.questions.values()])


def _stack(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _num(x: Any, digits: int = 4) -> Any:
    """JSON-safe scalar: numpy to Python, NaN/inf to None, floats rounded to `digits` decimals."""
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return round(x, digits) if math.isfinite(x) else None
    return x


def _p(x: Any) -> Any:
    """A p-value to 4 significant digits (small p-values keep their magnitude)."""
    x = float(x)
    return float(f"{x:.4g}") if math.isfinite(x) else None


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in df.to_dict(orient="records"):
        out.append({k: (_p(v) if k.startswith("p_") else _num(v)) for k, v in row.items()})
    return out


def _flat(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_p(v) if k.startswith("p_") else _num(v)) for k, v in d.items()}


def report(votes: pd.DataFrame | Iterable[Vote | dict], config: AnalysisConfig | Mapping[str, Any] | None = None,
           ) -> StudyReport:
    """Run the full analysis (module docstring) and return tables plus a JSON-serialisable summary."""
    cfg = config if isinstance(config, AnalysisConfig) else AnalysisConfig(**dict(config or {}))
    df = votes_frame(votes)
    kept, raters = apply_exclusion(df, cfg.exclusion, cfg.alpha)
    main = kept[~kept["is_catch"]].reset_index(drop=True)
    names = cfg.questions if cfg.questions is not None else list(dict.fromkeys(df["question"]))
    order = cfg.system_order
    per_question: dict[str, QuestionReport] = {}
    for q in names:
        qv = main[main["question"] == q].reset_index(drop=True)
        wr = pairwise_win_rates(qv, cfg.ties, cfg.alpha, order)
        if len(qv):
            bt = fit_bradley_terry(qv, cfg.bt(), system_order=order)
            bt_table, connected = bt.table(), bt.connected
        else:
            bt_table, connected = pd.DataFrame(columns=list(BT_COLUMNS)), True
        pb = position_bias(qv, cfg.alpha)
        ag = vote_agreement(qv, order)
        rel = split_half_reliability(qv, cfg.splits, cfg.seed, cfg.confidence, cfg.ties, cfg.prior, order)
        per_question[q] = QuestionReport(q, len(qv), int(qv["rater_id"].nunique()), wr, bt_table, connected, pb,
                                         ag, rel)

    summary: dict[str, Any] = {
        "version": SUMMARY_VERSION,
        "votes": len(df),
        "catch_votes": int(df["is_catch"].sum()),
        "raters": int(df["rater_id"].nunique()),
        "raters_kept": int((~raters["excluded"]).sum()),
        "excluded": [{"rater_id": r, "reason": why}
                     for r, why in zip(raters.loc[raters["excluded"], "rater_id"],
                                       raters.loc[raters["excluded"], "reason"])],
        "position_bias": _flat(position_bias(main, cfg.alpha).as_dict()),
        "config": cfg.model_dump(mode="json"),
        "questions": {},
    }
    for q, r in per_question.items():
        summary["questions"][q] = {
            "votes": r.votes,
            "raters": r.raters,
            "connected": r.connected,
            "ranking": _records(r.bradley_terry.sort_values(["rank", "strength"], ascending=[True, False])
                                [["system", "strength", "ci_lo", "ci_hi", "rank", "votes"]]),
            "pairs": _records(r.win_rates.drop(columns=["question"])),
            "position_bias": _flat(r.position_bias.as_dict()),
            "agreement": _flat(r.agreement.as_dict()),
            "reliability": _flat(r.reliability.as_dict()),
        }
    return StudyReport(per_question, raters, summary, cfg)
