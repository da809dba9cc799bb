"""One call that runs the whole analysis of a votes table: `report(votes, config)`.

Order: validate the table (`votes_frame`); drop practice-trial votes (never analysed); screen raters on catch
trials and, when configured, the headphone screening (`quality.apply_exclusion`); drop catch trials; then per
question, on the kept raters' votes: pairwise win rates, Bradley-Terry strengths with two-way (raters x clips)
bootstrap intervals and rank ranges, position bias, Krippendorff's alpha, split-half reliability. Returns the
tables as pandas DataFrames and a JSON-serialisable summary (floats rounded to 4 decimals, p-values to 4
significant digits, NaN as None). Writing files and plotting are left to the caller.

Small-n warnings: a question with fewer raters than `min_raters`, or a compared system pair with fewer votes than
`min_votes_per_pair` (the study config's `thresholds`, defaults 10 and 20), or whose intervals are undefined,
gets a plain-language warning in `QuestionReport.warnings` and the summary's `warnings`.
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
from .resample import MIN_UNITS
from .votes import Vote, canonical_pair, votes_frame

SUMMARY_VERSION = 2
DEFAULT_QUESTION = "overall"
ARENA_COLUMNS: tuple[str, ...] = ("system", "votes", "strength", "ci_lo", "ci_hi", "rank", "rank_worst", "rank_range")


class AnalysisConfig(BaseModel):
    """Settings of `report`; every field has a default, unknown keys are rejected.

    ties: "exclude" (default; sign-test convention) or "half", for win rates and Bradley-Terry alike.
    alpha: 1 - level of the Clopper-Pearson intervals. confidence: level of the bootstrap and split-half
    intervals. resamples / cluster / prior / min_units: Bradley-Terry intervals (see bradley_terry, resample).
    splits: random split-halves. seed: for every random draw. exclusion: the catch-trial (and headphone
    screening) rule. system_order: canonical order of systems (the rest follow alphabetically). questions: the
    questions to report (default: all, in first-seen order). min_raters / min_votes_per_pair: small-n warning
    thresholds (the study config's `thresholds`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ties: Literal["exclude", "half"] = "exclude"
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    resamples: int = Field(1000, ge=0)
    cluster: Literal["two-way", "rater", "vote"] = "two-way"
    min_units: int = Field(MIN_UNITS, ge=2)
    prior: float = Field(1.0, gt=0.0)
    splits: int = Field(200, ge=0)
    seed: int = 0
    exclusion: ExclusionRule = ExclusionRule()
    system_order: list[str] | None = None
    questions: list[str] | None = None
    min_raters: int = Field(10, ge=1)
    min_votes_per_pair: int = Field(20, ge=1)

    def bt(self) -> BTConfig:
        """The Bradley-Terry settings this config implies."""
        return BTConfig(ties=self.ties, prior=self.prior, resamples=self.resamples, cluster=self.cluster,
                        confidence=self.confidence, seed=self.seed, min_units=self.min_units)


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
    ci_note: str | None = None
    warnings: list[str] = field(default_factory=list)

    def arena(self) -> pd.DataFrame:
        """Arena-style table: system, votes, strength, 95% CI, rank range (best-worst the intervals allow)."""
        return arena_table(self.bradley_terry)


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

    @property
    def arena(self) -> pd.DataFrame:
        """All questions' arena tables stacked, with a leading `question` column."""
        return _stack([q.arena().assign(question=q.question)[["question", *ARENA_COLUMNS]]
                       for q in self.questions.values()])

    @property
    def default_question(self) -> str | None:
        """"overall" when the study asks it, else its first question (what tables and plots show first)."""
        return default_question(list(self.questions))


def default_question(questions: list[str]) -> str | None:
    """"overall" when present, else the first question, None when there is none."""
    return DEFAULT_QUESTION if DEFAULT_QUESTION in questions else (questions[0] if questions else None)


def arena_table(bt: pd.DataFrame) -> pd.DataFrame:
    """Columns ARENA_COLUMNS, best first: `rank_range` reads "1" or "1-3" (best-worst rank the CIs allow)."""
    t = bt.sort_values(["rank", "strength"], ascending=[True, False])
    rng = [f"{int(a)}" if int(a) == int(b) else f"{int(a)}-{int(b)}" for a, b in zip(t["rank"], t["rank_worst"])]
    return t.assign(rank_range=rng)[list(ARENA_COLUMNS)].reset_index(drop=True)


def small_n_warnings(question: str, raters: int, win_rates: pd.DataFrame, systems: list[str],
                     cfg: "AnalysisConfig", ci_note: str | None, order: list[str] | None = None) -> list[str]:
    """Plain-language warnings for a question: too few raters, system pairs with too few votes, undefined CIs."""
    out = []
    if raters < cfg.min_raters:
        out.append(f"{question}: {raters} rater{'s' if raters != 1 else ''}, fewer than the {cfg.min_raters} the "
                   "study config asks for (thresholds.raters): intervals and ranks are not reliable")
    counts = {(r["system"], r["opponent"]): int(r["n"]) for _, r in win_rates.iterrows()}
    short = []
    for i, a in enumerate(systems):
        for b in systems[i + 1:]:
            n = counts.get(canonical_pair(a, b, order), 0)
            if n < cfg.min_votes_per_pair:
                short.append((n, *canonical_pair(a, b, order)))
    if short:
        short.sort()
        shown = ", ".join(f"{a} vs {b}: {n}" for n, a, b in short[:4]) + (" ..." if len(short) > 4 else "")
        out.append(f"{question}: {len(short)} of {len(systems) * (len(systems) - 1) // 2} system pairs have fewer "
                   f"than {cfg.min_votes_per_pair} votes (thresholds.votes_per_pair; {shown})")
    if ci_note:
        out.append(f"{question}: Bradley-Terry {ci_note}")
    return out


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
    everything = votes_frame(votes)
    df = everything[~everything["is_practice"]].reset_index(drop=True)  # the practice trial is never analysed
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
            bt_table, connected, note = bt.table(), bt.connected, bt.ci_note
        else:
            bt_table, connected, note = pd.DataFrame(columns=list(BT_COLUMNS)), True, "no votes"
        pb = position_bias(qv, cfg.alpha)
        ag = vote_agreement(qv, order)
        rel = split_half_reliability(qv, cfg.splits, cfg.seed, cfg.confidence, cfg.ties, cfg.prior, order)
        n_raters = int(qv["rater_id"].nunique())
        warn = small_n_warnings(q, n_raters, wr, list(bt_table["system"]), cfg, note, order)
        if not connected:
            warn.append(f"{q}: the comparison graph is not connected; strengths of unlinked parts are not comparable")
        per_question[q] = QuestionReport(q, len(qv), n_raters, wr, bt_table, connected, pb, ag, rel, note, warn)

    summary: dict[str, Any] = {
        "version": SUMMARY_VERSION,
        "votes": len(df),
        "practice_votes": int(everything["is_practice"].sum()),
        "catch_votes": int(df["is_catch"].sum()),
        "raters": int(df["rater_id"].nunique()),
        "raters_kept": int((~raters["excluded"]).sum()),
        "excluded": [{"rater_id": r, "reason": why}
                     for r, why in zip(raters.loc[raters["excluded"], "rater_id"],
                                       raters.loc[raters["excluded"], "reason"])],
        "position_bias": _flat(position_bias(main, cfg.alpha).as_dict()),
        "config": cfg.model_dump(mode="json"),
        "default_question": default_question(list(per_question)),
        "warnings": [w for r in per_question.values() for w in r.warnings],
        "questions": {},
    }
    for q, r in per_question.items():
        summary["questions"][q] = {
            "votes": r.votes,
            "raters": r.raters,
            "connected": r.connected,
            "ranking": _records(r.arena()[["system", "strength", "ci_lo", "ci_hi", "rank", "rank_worst",
                                           "rank_range", "votes"]]),
            "ci_note": r.ci_note,
            "warnings": r.warnings,
            "pairs": _records(r.win_rates.drop(columns=["question"])),
            "position_bias": _flat(r.position_bias.as_dict()),
            "agreement": _flat(r.agreement.as_dict()),
            "reliability": _flat(r.reliability.as_dict()),
        }
    return StudyReport(per_question, raters, summary, cfg)
