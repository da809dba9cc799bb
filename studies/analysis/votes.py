"""The votes table every analysis function reads, its validation, and the canonical order of a system pair.

One row is one answer of one rater to one question of one trial. A trial shows one video with two soundtracks:
side A (shown/played first, on the left) is `system_a`, side B is `system_b`. `answer` is the side the rater
chose, or "tie" where the study allows ties. Catch trials pair the ground truth with a clearly wrong anchor;
`catch_expected` names the side a careful rater should pick, or None where the question has no catch (then
the answer is not scored).

Pairs are reported in a canonical order that does not depend on the side order a rater saw: by the position in
`system_order` when one is given, else alphabetically. `canonical_outcome` maps an answer to the canonical
pair's first system ("first"), second system ("second") or "tie".
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import pandas as pd

Answer = Literal["A", "B", "tie"]
ANSWERS: tuple[str, ...] = ("A", "B", "tie")
FIRST, SECOND, TIE = "first", "second", "tie"


@dataclass(frozen=True)
class Vote:
    """One row of the votes table.

    rater_id: who answered. trial_id: the presentation (one video, two soundtracks, one side order); a trial
    carries one vote per question. clip_id: the video. question: the question's key (e.g. "overall").
    system_a / system_b: the systems on side A (first, left) and side B. answer: "A", "B" or "tie".
    is_catch: whether the trial is a catch trial. catch_expected: "A"/"B" for the side a careful rater picks on
    a catch trial, None where this question has no catch. timestamp: when the answer was given (any type that
    pandas can store; only kept, never interpreted). is_practice: the vote is on the practice trial (never
    analysed). screening_passed: the rater's headphone-screening result, None where the study has no screening.
    """

    rater_id: str
    trial_id: str
    clip_id: str
    question: str
    system_a: str
    system_b: str
    answer: Answer
    is_catch: bool = False
    catch_expected: Literal["A", "B"] | None = None
    timestamp: Any = None
    is_practice: bool = False
    screening_passed: bool | None = None


VOTE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Vote))


def votes_frame(votes: pd.DataFrame | Iterable[Vote | dict]) -> pd.DataFrame:
    """Validate and normalise a votes table (a DataFrame with `VOTE_COLUMNS`, or `Vote` records / dicts).

    Returns a new DataFrame with exactly `VOTE_COLUMNS`: ids, question and systems as str, `is_catch` and
    `is_practice` as bool (False when absent), `catch_expected` as "A"/"B"/None, `screening_passed` as
    True/False/None (None when absent). Raises ValueError naming the first offending row for a missing column,
    an answer outside {"A","B","tie"}, identical systems on both sides, or a catch trial whose expectation is
    not A/B.
    """
    if isinstance(votes, pd.DataFrame):
        df = votes.copy()
    else:
        rows = [asdict(v) if isinstance(v, Vote) else dict(v) for v in votes]
        df = pd.DataFrame(rows, columns=list(VOTE_COLUMNS))
    for col in ("is_catch", "is_practice"):
        if col not in df.columns:
            df[col] = False
    for col in ("catch_expected", "timestamp", "screening_passed"):
        if col not in df.columns:
            df[col] = None
    missing = [c for c in VOTE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"votes table lacks column(s) {missing}; expected {list(VOTE_COLUMNS)}")
    df = df[list(VOTE_COLUMNS)].reset_index(drop=True)
    for col in ("rater_id", "trial_id", "clip_id", "question", "system_a", "system_b"):
        if df[col].isna().any():
            i = int(df.index[df[col].isna()][0])
            raise ValueError(f"votes row {i}: {col} is missing")
        df[col] = df[col].astype(str)
    df["answer"] = df["answer"].astype(str)
    bad = ~df["answer"].isin(ANSWERS)
    if bad.any():
        i = int(df.index[bad][0])
        raise ValueError(f"votes row {i}: answer {df.at[i, 'answer']!r} is not one of {list(ANSWERS)}")
    same = df["system_a"] == df["system_b"]
    if same.any():
        i = int(df.index[same][0])
        raise ValueError(f"votes row {i}: system_a and system_b are both {df.at[i, 'system_a']!r}")
    for col in ("is_catch", "is_practice"):  # a missing flag (None/NaN) is False
        df[col] = pd.Series([False if x is None or pd.isna(x) else bool(x) for x in df[col]], index=df.index,
                            dtype=bool)
    df["screening_passed"] = pd.Series([None if x is None or pd.isna(x) else bool(x) for x in df["screening_passed"]],
                                       index=df.index, dtype=object)
    expected = [None if e is None or pd.isna(e) else str(e) for e in df["catch_expected"]]
    for i, e in enumerate(expected):
        if e is not None and e not in ("A", "B"):
            raise ValueError(f"votes row {i}: catch_expected {e!r} must be 'A', 'B' or None")
    df["catch_expected"] = pd.Series(expected, index=df.index, dtype=object)
    return df


def system_index(systems: Iterable[str], system_order: Sequence[str] | None = None) -> list[str]:
    """The systems in canonical order: those in `system_order` first (in its order), the rest alphabetically."""
    return sorted(set(systems), key=lambda s: system_sort_key(s, system_order))


def system_sort_key(s: str, order: Sequence[str] | None = None) -> tuple[int, int, str]:
    """Sort key of the canonical order: systems listed in `order` first (by position), the rest alphabetically."""
    pos = {name: i for i, name in enumerate(order or ())}
    return (0, pos[s], s) if s in pos else (1, 0, s)


def canonical_pair(a: str, b: str, order: Sequence[str] | None = None) -> tuple[str, str]:
    """(a, b) in canonical order, the same as `system_index`: listed in `order` first, the rest alphabetically."""
    return (a, b) if system_sort_key(a, order) < system_sort_key(b, order) else (b, a)


def canonical_outcome(system_a: str, system_b: str, answer: str, order: Sequence[str] | None = None) -> str:
    """The answer relative to the canonical pair: "first", "second" or "tie" (side order no longer matters)."""
    if answer == "tie":
        return TIE
    chosen = system_a if answer == "A" else system_b
    first, _ = canonical_pair(system_a, system_b, order)
    return FIRST if chosen == first else SECOND


def with_canonical(df: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """`df` plus columns `first`, `second` (the canonical pair) and `outcome` ("first"/"second"/"tie")."""
    out = df.copy()
    pairs = [canonical_pair(a, b, order) for a, b in zip(out["system_a"], out["system_b"])]
    out["first"] = [p[0] for p in pairs]
    out["second"] = [p[1] for p in pairs]
    out["outcome"] = [
        canonical_outcome(a, b, ans, order) for a, b, ans in zip(out["system_a"], out["system_b"], out["answer"])
    ]
    return out
