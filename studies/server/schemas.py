"""Request and response bodies of the rater API (pydantic, strict: no type coercion, unknown fields refused).

A malformed body is answered 422 by FastAPI with pydantic's error list (NaN / Infinity included: numbers must
be finite, and the error list names them as strings, :mod:`studies.server.app`).
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RATER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RATER_ID_PATTERN = RATER_ID_RE.pattern
Position = Literal["A", "B"]
AnswerIn = Literal["A", "B", "tie"]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class ListenEventIn(Strict):
    side: Position
    event: Literal["play", "pause", "ended", "seek"]
    media_time: float = Field(ge=0.0, le=86_400.0, allow_inf_nan=False)
    client_time: float | None = Field(None, allow_inf_nan=False, description="ms since the epoch, client clock")


class ListenEventsIn(Strict):
    events: list[ListenEventIn] = Field(min_length=1, max_length=100)


class VoteIn(Strict):
    """The answers of one trial: question id -> position. Questions may come in several submissions."""

    answers: dict[str, AnswerIn] = Field(min_length=1, max_length=40)
    submission_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    client_time: float | None = Field(None, allow_inf_nan=False)


class QuestionOut(BaseModel):
    id: str
    text: str


class TrialOut(BaseModel):
    """What the browser needs to present one trial; no system, run or path."""

    token: str
    index: int  # 1-based position within the rater's trials, not counting the practice trial (index 0)
    total: int  # trials, not counting the practice trial
    video: str  # muted picture (the A stimulus; both share the same video)
    media: dict[str, str]  # position -> /media/<key>.mp4
    questions: list[QuestionOut]
    options: list[str]
    min_listen_s: float  # this trial's minimum per side (studies.server.listening.trial_min_listen_s)
    answered: dict[str, str]
    listened: dict[str, float]
    practice: bool = False  # the practice trial (index 0): answered like the others, never analysed


class StateOut(BaseModel):
    rater: str
    consented: bool
    volume_checked: bool
    done: int
    total: int
    complete: bool
    completion_code: str | None
    trial: TrialOut | None
