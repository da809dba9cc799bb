"""Which objective metric agrees with people: per question and metric, vote-level accuracy and rank agreement.

Inputs: a votes table of one or more questions (validated, catch and practice trials and excluded raters already
removed) and per-clip metric scores of the compared systems, a table with columns system, clip_id, metric, value,
plus each metric's direction (higher or lower is better; a metric without one is left out, with a note).

Accuracy: for a vote on clip c between side A (system a) and side B (system b), the metric predicts A when
s * (m(a, c) - m(b, c)) > 0 and B when < 0, with s = +1 if higher is better, -1 if lower is better. Accuracy is
the share of votes whose answer the metric predicts, over the votes where the rater chose a side, both soundtracks
have a score and the metric separates them. Votes where the metric ties (equal scores, to 1e-12 relative) are
counted apart (`metric_ties`), as are the raters' "no preference" answers (`rater_ties`) and votes without a score
on one side (`missing`). Chance is 0.5: a metric unrelated to the preference predicts half the choices.
Because leaving ties out rewards a coarse metric that only speaks on easy pairs, metrics are ranked by
`accuracy_ties_half`, which counts each metric tie as half a correct prediction (a coin flip) over the votes with
both scores; with no metric ties it equals `accuracy`.

Rank agreement: Kendall's tau-b (Kendall 1945, ties in either ranking allowed) between the systems' mean metric
score over the study's clips (direction applied) and their Bradley-Terry strengths on the same question, over the
systems that have both.

Intervals: both statistics share one two-way (raters x clips) bootstrap, the Cameron-Gelbach-Miller combination
of `resample`: each replicate reweights the votes (accuracy, Bradley-Terry refit) and, in the clip pass, the clips
behind the metric means. `p_value` tests accuracy = 0.5 against the same standard error (normal approximation).
Below `min_units` raters or clips the intervals are undefined (NaN).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import norm

from .bradley_terry import _contributions, _encode, mm_fit
from .resample import MIN_UNITS, Cluster, crossed_interval, design
from .votes import system_index

CHANCE = 0.5
AGREEMENT_COLUMNS: tuple[str, ...] = (
    "question", "metric", "rank", "higher_is_better", "accuracy", "ci_lo", "ci_hi", "p_value", "votes",
    "accuracy_ties_half", "half_lo", "half_hi", "metric_ties", "rater_ties", "missing", "raters", "clips",
    "kendall_tau", "tau_lo", "tau_hi", "systems", "note",
)
SCORE_COLUMNS: tuple[str, ...] = ("system", "clip_id", "metric", "value")


@dataclass(frozen=True)
class AgreementConfig:
    """Bootstrap and Bradley-Terry settings of the agreement analysis (see the module docstring)."""

    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    cluster: Cluster = "two-way"
    min_units: int = MIN_UNITS
    ties: Literal["exclude", "half"] = "exclude"
    prior: float = 1.0
    tol: float = 1e-7  # of the Bradley-Terry refits: ranks need far less precision than the default fit

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence}")
        if self.resamples < 0:
            raise ValueError(f"resamples must be >= 0, got {self.resamples}")


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between x and y along the last axis (shapes (..., k)); NaN where a ranking is constant."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    iu = np.triu_indices(x.shape[-1], 1)
    sx = np.sign(x[..., :, None] - x[..., None, :])[..., iu[0], iu[1]]
    sy = np.sign(y[..., :, None] - y[..., None, :])[..., iu[0], iu[1]]
    denom = np.sqrt((sx != 0).sum(-1) * (sy != 0).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (sx * sy).sum(-1) / np.where(denom > 0, denom, 1.0), np.nan)


def _clip(x: float, lo: float, hi: float) -> float:
    """x limited to [lo, hi] (a normal interval can pass a bound the statistic cannot); NaN stays NaN."""
    return min(hi, max(lo, x)) if x == x else x


def _score_lookup(scores: pd.DataFrame, metric: str) -> dict[tuple[str, str], float]:
    part = scores[scores["metric"] == metric]
    return {(s, c): float(v) for s, c, v in zip(part["system"], part["clip_id"], part["value"]) if math.isfinite(v)}


def question_agreement(votes: pd.DataFrame, scores: pd.DataFrame, directions: Mapping[str, bool | None],
                       config: AgreementConfig | None = None,
                       system_order: Sequence[str] | None = None) -> pd.DataFrame:
    """Agreement table (AGREEMENT_COLUMNS) of every scored metric for the votes of ONE question, best first."""
    cfg = config or AgreementConfig()
    if votes["question"].nunique() > 1:
        raise ValueError("question_agreement takes the votes of one question; use metric_agreement")
    question = str(votes["question"].iloc[0]) if len(votes) else ""
    systems = system_index(pd.concat([votes["system_a"], votes["system_b"]]), system_order)
    k = len(systems)
    pos = {s: i for i, s in enumerate(systems)}
    d = design(votes["rater_id"].to_numpy(), votes["clip_id"].to_numpy())
    clip_pos = {c: i for i, c in enumerate(d.clips)}
    answer = votes["answer"].to_numpy()
    a_sys, b_sys, clip = (votes[c].astype(str).to_numpy() for c in ("system_a", "system_b", "clip_id"))

    metrics, notes = [], {}
    for m in sorted(scores["metric"].unique()):
        hib = directions.get(m)
        if hib is None:
            notes[m] = "no better direction (descriptive metric): left out"
            continue
        metrics.append(m)
    M = len(metrics)
    decided = np.zeros((M, len(votes)), bool)
    metric_tied = np.zeros((M, len(votes)), np.float64)
    correct = np.zeros((M, len(votes)), bool)
    counts = []
    means = np.full((M, k, len(d.clips)), np.nan)  # direction-applied score per system and clip
    for i, m in enumerate(metrics):
        sign = 1.0 if directions[m] else -1.0
        look = _score_lookup(scores, m)
        ma = np.array([look.get((s, c), np.nan) for s, c in zip(a_sys, clip)])
        mb = np.array([look.get((s, c), np.nan) for s, c in zip(b_sys, clip)])
        have = np.isfinite(ma) & np.isfinite(mb)
        diff = sign * (ma - mb)
        tied = have & (np.abs(ma - mb) <= 1e-12 * np.maximum(np.abs(ma), np.abs(mb)))
        chose = answer != "tie"
        decided[i] = have & ~tied & chose
        metric_tied[i] = tied & chose
        correct[i] = decided[i] & (np.where(diff > 0, "A", "B") == answer)
        counts.append({"metric_ties": int((tied & chose).sum()), "rater_ties": int((have & ~chose).sum()),
                       "missing": int((~have).sum())})
        for (s, c), v in look.items():
            if s in pos and c in clip_pos:
                means[i, pos[s], clip_pos[c]] = sign * v
    scored = np.isfinite(means).any(axis=2)  # (M, k): the system has the metric on some study clip

    correct_f, decided_f = correct.T.astype(np.float64), decided.T.astype(np.float64)  # (votes, M)
    half_f = correct_f + 0.5 * metric_tied.T  # a metric tie counts as half a correct prediction
    judged_f = decided_f + metric_tied.T
    winner, loser, tie = _encode(votes, systems)
    contrib = _contributions(winner, loser, tie, k, cfg.ties)

    def metric_means(wc: np.ndarray) -> np.ndarray:
        """(B, M, k) clip-weighted mean of each metric per system (NaN where unscored)."""
        have = np.isfinite(means)
        num = np.einsum("bc,mkc->bmk", wc, np.where(have, means, 0.0))
        den = np.einsum("bc,mkc->bmk", wc, have.astype(float))
        with np.errstate(invalid="ignore", divide="ignore"):
            return num / den

    def taus(strength: np.ndarray, mm: np.ndarray) -> np.ndarray:
        """(B, M) tau-b over the systems each metric scores."""
        out = np.full(mm.shape[:2], np.nan)
        for i in range(M):
            keep = scored[i]
            if keep.sum() >= 2:
                out[:, i] = kendall_tau_b(mm[:, i, keep], strength[:, keep])
        return out

    def stat(wv: np.ndarray, wc: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = (wv @ correct_f) / (wv @ decided_f)
            half = (wv @ half_f) / (wv @ judged_f)
        strength = mm_fit((wv @ contrib).reshape(len(wv), k, k), cfg.prior, tol=cfg.tol)
        return np.concatenate([acc, half, taus(strength, metric_means(wc))], axis=1)

    ones_v, ones_c = np.ones((1, len(votes))), np.ones((1, len(d.clips)))
    estimate = stat(ones_v, ones_c)[0] if M and k >= 2 else np.full(3 * M, np.nan)
    iv = crossed_interval(stat, d, estimate, cfg.resamples, cfg.confidence, cfg.seed, cfg.cluster, cfg.min_units) \
        if M and k >= 2 else None
    rows = []
    for i, m in enumerate(metrics):
        acc, half, tau = estimate[i], estimate[M + i], estimate[2 * M + i]
        lo, hi = (iv.lo[i], iv.hi[i]) if iv else (math.nan, math.nan)
        hlo, hhi = (iv.lo[M + i], iv.hi[M + i]) if iv else (math.nan, math.nan)
        tlo, thi = (iv.lo[2 * M + i], iv.hi[2 * M + i]) if iv else (math.nan, math.nan)
        se = iv.se[i] if iv else math.nan
        p = float(2 * norm.sf(abs(acc - CHANCE) / se)) if se > 0 and math.isfinite(acc) else math.nan
        note = iv.note if iv and iv.note else None
        if int(scored[i].sum()) < 3:
            note = "; ".join(filter(None, [note, "tau over fewer than 3 systems is +-1 or undefined"]))
        dv = decided[i]
        rows.append({"question": question, "metric": m, "higher_is_better": bool(directions[m]), "accuracy": acc,
                     "ci_lo": _clip(lo, 0.0, 1.0), "ci_hi": _clip(hi, 0.0, 1.0), "p_value": p,
                     "votes": int(dv.sum()), "accuracy_ties_half": half, "half_lo": _clip(hlo, 0.0, 1.0),
                     "half_hi": _clip(hhi, 0.0, 1.0), **counts[i],
                     "raters": int(votes.loc[dv, "rater_id"].nunique()),
                     "clips": int(votes.loc[dv, "clip_id"].nunique()), "kendall_tau": tau,
                     "tau_lo": _clip(tlo, -1.0, 1.0), "tau_hi": _clip(thi, -1.0, 1.0),
                     "systems": int(scored[i].sum()), "note": note})
    for m, why in notes.items():
        rows.append({"question": question, "metric": m, "higher_is_better": None, "note": why})
    table = pd.DataFrame(rows, columns=[c for c in AGREEMENT_COLUMNS if c != "rank"])
    for c in ("votes", "metric_ties", "rater_ties", "missing", "raters", "clips", "systems"):
        table[c] = table[c].astype("Int64")  # counts stay integers beside the rows of left-out metrics
    table = table.sort_values(["accuracy_ties_half", "metric"], ascending=[False, True], na_position="last",
                              kind="stable")
    table.insert(2, "rank", np.arange(1, len(table) + 1))
    return table.reset_index(drop=True)


def metric_agreement(votes: pd.DataFrame, scores: pd.DataFrame, directions: Mapping[str, bool | None],
                     config: AgreementConfig | None = None, system_order: Sequence[str] | None = None,
                     questions: Sequence[str] | None = None) -> pd.DataFrame:
    """`question_agreement` for every question (first-seen order, or `questions`), stacked."""
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"scores table lacks column(s) {missing}; expected {list(SCORE_COLUMNS)}")
    names = list(questions) if questions is not None else list(dict.fromkeys(votes["question"]))
    frames = [question_agreement(votes[votes["question"] == q].reset_index(drop=True), scores, directions, config,
                                 system_order) for q in names if (votes["question"] == q).any()]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(AGREEMENT_COLUMNS))
