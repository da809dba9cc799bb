"""Study configuration: which systems are compared, what raters are asked, and how stimuli are prepared.

A study is a pairwise listening test: a rater watches one video with two soundtracks, A and B, and answers every
question of the study about that pair. The configuration lives in ``STUDY_DIR/study.yaml`` (JSON works too) and
is validated by :func:`parse_config`, which reports every problem at once (:class:`StudyConfigError`).

Catch trials pit the clip's own music (``ground-truth``) against a reference anchor that is wrong in one known
respect (``baselines/anchors.py``): ``anchor-beat-shift`` (same music, beats displaced by half a beat period) for
the rhythm question, ``anchor-other-category`` (music of another category) for the content and mood question.
A question without a catch kind (sound quality, overall preference) has no correct answer on catch trials.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vm_eval.errors import UserError
from vm_eval.fsutil import atomic_write_text

STUDY_FILE = "study.yaml"
GROUND_TRUTH = "ground-truth"
CatchKind = Literal["rhythm", "content"]
#: Catch kind -> the reference system whose music is the clearly wrong answer for questions of that kind.
CATCH_ANCHORS: dict[str, str] = {"rhythm": "anchor-beat-shift", "content": "anchor-other-category"}

DEFAULT_CONSENT = (
    "This is a listening study on music for videos. You will watch short videos, each with two different "
    "soundtracks, and say which one you prefer; the number of trials and the expected time are stated below. "
    "Please use headphones in a quiet room. We record your answers, how long you listened to each soundtrack, the "
    "result of a short headphone check if the study has one, and a pseudonymous rater code (on Prolific, your "
    "Prolific ID); nothing else that identifies you. Taking part is voluntary and you may stop at any time without "
    "giving a reason; answers given until then may be kept unless you ask us to delete them. By continuing you "
    "confirm that you are 18 or older and agree to take part."
)
DEFAULT_INSTRUCTIONS = (
    "Each page shows one video with two soundtracks, A and B. Play the video with each soundtrack (you can switch "
    "and replay as often as you like); the answer buttons unlock once you have listened to both for a few seconds. "
    "Then answer each question by choosing A or B. Judge the music only as it goes with this video, not the video "
    "itself. Set a comfortable volume at the start and keep it for the whole study. A few pages check attention; "
    "answer them like any other."
)


class Question(BaseModel):
    """One question asked on every trial. `catch` names the catch kind whose anchor is the wrong answer to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=40)
    text: str = Field(min_length=1)
    catch: CatchKind | None = None

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("question text is blank")
        return v.strip()

    @property
    def anchor(self) -> str | None:
        """Name of the anchor system of this question's catch trials (None: no catch)."""
        return CATCH_ANCHORS[self.catch] if self.catch else None


DEFAULT_QUESTIONS: tuple[Question, ...] = (
    Question(id="overall", text="Overall, which soundtrack do you prefer for this video?"),
    Question(id="content", text="Which music fits the video's content and mood better?", catch="content"),
    Question(id="rhythm", text="Which music follows the video's rhythm and cuts better?", catch="rhythm"),
    Question(id="quality", text="Which sounds better as music, regardless of the video?"),
)


class ProlificConfig(BaseModel):
    """A study run on Prolific: raters enter with ``?PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=...`` and are sent
    to ``completion_url?cc=<completion_code>`` when they finish (the code is the one set on Prolific)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    completion_code: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    completion_url: str = Field("https://app.prolific.com/submissions/complete", pattern=r"^(https?://\S+|/\S*)$",
                                description="where a finished rater is sent (an absolute http(s) URL or a path)")


class PanelConfig(BaseModel):
    """An MTurk-style panel: the last page shows a completion code that the rater pastes on the panel's site."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    completion_code: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
                                        description="one code for everyone; None: each rater's own random code")
    name: str = Field("the site where you found this study", min_length=1, max_length=80,
                      description="how the page names the panel ('Please submit it on <name>.')")


class ScreeningConfig(BaseModel):
    """The headphone screening before the trials: a Huggins-pitch test (Milne et al. 2021, :mod:`studies.screening`).
    Each of `trials` rounds plays three noises, one of which carries a faint pitch audible only over headphones;
    a rater passes with at least `pass_min` right. Failing does not stop the rater; the analysis drops their votes
    when `exclude_failed` is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["huggins"] = "huggins"
    trials: int = Field(6, ge=1, le=20)
    pass_min: int = Field(5, ge=1)
    exclude_failed: bool = True
    frequency_hz: float = Field(600.0, ge=200.0, le=2000.0, description="centre of the phase-inverted band")
    bandwidth: float = Field(0.06, gt=0.0, le=0.3, description="half-width of the band, relative to frequency_hz")
    interval_s: float = Field(1.0, ge=0.2, le=3.0, description="length of each noise")
    gap_s: float = Field(0.5, ge=0.0, le=2.0, description="silence between the noises of a round")

    @model_validator(mode="after")
    def _pass_min(self) -> "ScreeningConfig":
        if self.pass_min > self.trials:
            raise ValueError(f"pass_min {self.pass_min} is more than the {self.trials} screening trials")
        return self


class Thresholds(BaseModel):
    """Small-n warning thresholds of the analysis (`vm-eval study analyze` warns below them; nothing is dropped).
    Defaults: 10 raters per question and 20 votes per compared system pair."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    raters: int = Field(10, ge=1, description="warn when a question has fewer raters (after exclusion)")
    votes_per_pair: int = Field(20, ge=1, description="warn when a compared system pair has fewer votes")


class StudyConfig(BaseModel):
    """A pairwise listening study. Unknown fields are errors (a misspelt option must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")

    systems: list[str] = Field(description="run ids or labels of the compared systems (at least 2, unique)")
    split: str = "test"
    questions: list[Question] = Field(default_factory=lambda: list(DEFAULT_QUESTIONS), min_length=1)
    allow_ties: bool = False
    min_listen_s: float = Field(5.0, ge=0.0, description="seconds each soundtrack must play before answering")
    catch_rate: float = Field(0.1, ge=0.0, le=0.5, description="share of a rater's trials that are catch trials")
    raters: int = Field(20, ge=1)
    trials_per_rater: int = Field(40, ge=1)
    seed: int = 0
    loudness_lufs: float = Field(-23.0, ge=-60.0, le=-5.0, description="integrated loudness target, BS.1770-4")
    true_peak_dbtp: float = Field(-1.0, ge=-20.0, le=0.0, description="true-peak ceiling (4x oversampled)")
    consent_text: str = Field(DEFAULT_CONSENT, min_length=1)
    instructions_text: str = Field(DEFAULT_INSTRUCTIONS, min_length=1)
    practice_trial: bool = Field(False, description="one extra trial first, shown as practice and never analysed")
    screening: ScreeningConfig | None = Field(None, description="headphone screening after the volume check")
    prolific: ProlificConfig | None = None
    panel: PanelConfig | None = None
    expected_minutes: float | None = Field(None, gt=0, description="study length stated to raters; None: estimated")
    thresholds: Thresholds = Field(default_factory=Thresholds, description="small-n warnings of the analysis")

    @field_validator("systems")
    @classmethod
    def _systems(cls, v: list[str]) -> list[str]:
        problems = []
        if len(v) < 2:
            problems.append(f"needs at least 2 systems to compare, got {len(v)}")
        blank = [i for i, s in enumerate(v) if not s.strip()]
        if blank:
            problems.append(f"blank system name at position(s) {blank}")
        dups = sorted({s for s in v if v.count(s) > 1})
        if dups:
            problems.append(f"systems listed more than once: {dups}")
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @field_validator("questions")
    @classmethod
    def _questions(cls, v: list[Question]) -> list[Question]:
        ids = [q.id for q in v]
        dups = sorted({i for i in ids if ids.count(i) > 1})
        if dups:
            raise ValueError(f"question ids used more than once: {dups}")
        return v

    @model_validator(mode="after")
    def _cross_field(self) -> "StudyConfig":
        problems = _cross_field_problems(self.model_dump())
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def catch_kinds(self) -> list[str]:
        """Catch kinds the questions use, in question order, each once."""
        return list(dict.fromkeys(q.catch for q in self.questions if q.catch))

    def question(self, qid: str) -> Question:
        for q in self.questions:
            if q.id == qid:
                return q
        raise KeyError(f"no question {qid!r}; the study asks {[q.id for q in self.questions]}")


def _cross_field_problems(data: Any) -> list[str]:
    """Checks that involve several fields, on raw or validated data (fields of the wrong type are skipped, their
    own errors are reported by field validation)."""
    if not isinstance(data, dict):
        return []
    problems = []
    rate, k = data.get("catch_rate", 0.1), data.get("trials_per_rater", 40)
    questions = data.get("questions", [q.model_dump() for q in DEFAULT_QUESTIONS])
    catches = [q.get("catch") if isinstance(q, dict) else getattr(q, "catch", None) for q in questions] \
        if isinstance(questions, list) else None
    if _is_number(rate) and rate > 0 and catches is not None and not any(catches):
        problems.append(f"catch_rate is {rate} but no question names a catch kind (rhythm or content); "
                        "set catch_rate: 0 or give a question `catch:`")
    if _is_number(rate) and isinstance(k, int) and not isinstance(k, bool) and k >= 1 and 0 < rate <= 0.5 \
            and math.ceil(rate * k) >= k:
        problems.append(f"catch_rate {rate} with trials_per_rater {k} leaves some raters no comparison trial")
    target, ceiling = data.get("loudness_lufs", -23.0), data.get("true_peak_dbtp", -1.0)
    if _is_number(target) and _is_number(ceiling) and target >= ceiling:
        problems.append(f"loudness_lufs {target} must be below the true-peak ceiling true_peak_dbtp {ceiling}")
    return problems


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class StudyConfigError(UserError, ValueError):
    """A study configuration is invalid; `problems` lists every problem found, each naming its field."""

    def __init__(self, problems: list[str], source: str | Path | None = None):
        self.problems = problems
        self.source = str(source) if source is not None else None
        where = f"study config {self.source}" if self.source else "study config"
        n = len(problems)
        super().__init__(f"{where} has {n} problem{'s' if n != 1 else ''}:\n" + "\n".join(f"  - {p}" for p in problems))


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(data: Any, source: str | Path | None = None) -> StudyConfig:
    """Validate a mapping as a :class:`StudyConfig`; raise :class:`StudyConfigError` listing every problem.

    Cross-field checks (catch rate vs questions, loudness vs ceiling) are reported together with field errors.
    """
    if not isinstance(data, dict):
        raise StudyConfigError([f"expected a mapping of options, got {type(data).__name__}"], source)
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown option (misspelt?)"
            if err["loc"]:
                problems.append(f"{_loc(err['loc'])}: {msg}")
            else:  # the model validator: several cross-field problems, one per line
                problems.extend(msg.split("\n"))
        if not any(not err["loc"] for err in e.errors()):
            problems.extend(p for p in _cross_field_problems(data) if p not in problems)
        raise StudyConfigError(problems, source) from None


def load_config(path: str | Path) -> StudyConfig:
    """Read a study config from YAML (.yaml/.yml) or JSON (.json); a directory means its ``study.yaml``."""
    p = Path(path)
    if p.is_dir():
        p = p / STUDY_FILE
    if not p.is_file():
        raise StudyConfigError(["file not found"], p)
    text = p.read_text()
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise StudyConfigError([f"cannot parse as {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {e}"], p)
    return parse_config(data if data is not None else {}, source=p)


def save_config(config: StudyConfig, path: str | Path) -> Path:
    """Write atomically as YAML or JSON (by suffix; a directory gets ``study.yaml``). Round-trips exactly."""
    p = Path(path)
    if p.is_dir():
        p = p / STUDY_FILE
    data = config.model_dump(mode="json")
    if p.suffix.lower() == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)
    return atomic_write_text(p, text)
