"""Crowd platforms and the headphone screening: the Prolific entry and completion redirect, the completion-code
page of MTurk-style panels, the Huggins-pitch screening step (:mod:`studies.screening`) and the practice trial's
mark in the vote export.

Prolific sends a participant to the study URL with ``PROLIFIC_PID``, ``STUDY_ID`` and ``SESSION_ID`` (24 hex
digits each); the PID is the rater id (a returning participant resumes), the three are stored with the rater
(table ``rater_crowd``), and a rater who finishes is redirected to ``prolific.completion_url?cc=<code>``. Without
``prolific:`` in the study config, or for raters who did not come from Prolific, the last page shows a completion
code: the ``panel.completion_code`` when one is set, else the rater's own random code.

The screening's answer key never leaves the server: round targets and noise come from a seed that is an HMAC of
the rater id under the server's secret, and the files of a round are alike in size and headers.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path as PathParam, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from studies import screening
from studies.config import ScreeningConfig
from studies.design import Design
from studies.server import rater as flow
from studies.server.context import ServerContext, error, get_ctx, given_session, session_valid
from studies.server.schemas import RATER_ID_PATTERN, Strict
from studies.server.storage import Rater, Repository

PROLIFIC_PARAMS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
PROLIFIC_ID_LEN = 24  # Prolific ids are 24 hexadecimal digits

router = APIRouter()
Ctx = Annotated[ServerContext, Depends(get_ctx)]
RaterId = Annotated[str, PathParam(pattern=RATER_ID_PATTERN, max_length=64)]


# -- Prolific -----------------------------------------------------------------------------------------------------
class InvalidLink(ValueError):
    """The entry URL carries Prolific parameters that are missing or malformed (shown on a 400 page)."""


@dataclass(frozen=True)
class ProlificIds:
    pid: str
    study_id: str
    session_id: str


def prolific_ids(params: Mapping[str, str]) -> ProlificIds | None:
    """The Prolific ids of an entry URL (lower-cased), None when it has none; :class:`InvalidLink` when any of
    the three is given but one is missing or not 24 hex digits."""
    if not any(p in params for p in PROLIFIC_PARAMS):
        return None
    missing = [p for p in PROLIFIC_PARAMS if not params.get(p)]
    bad = [p for p in PROLIFIC_PARAMS if params.get(p) and not _is_prolific_id(params[p])]
    if missing or bad:
        what = "; ".join(filter(None, [f"missing {', '.join(missing)}" if missing else "",
                                       f"not a Prolific id: {', '.join(bad)}" if bad else ""]))
        raise InvalidLink(f"This Prolific link is incomplete or damaged ({what}). Prolific ids are 24 letters a-f "
                          "and digits. Please open the study again from Prolific.")
    return ProlificIds(*(params[p].lower() for p in PROLIFIC_PARAMS))


def _is_prolific_id(v: str) -> bool:
    return len(v) == PROLIFIC_ID_LEN and all(c in "0123456789abcdefABCDEF" for c in v)


def record_entry(ctx: ServerContext, ids: ProlificIds) -> None:
    ctx.repo.set_prolific(ids.pid, ids.pid, ids.study_id, ids.session_id, ctx.clock())


def completion_url(ctx: ServerContext, rater: Rater) -> str | None:
    """Where a finished rater goes: the Prolific completion URL with the study's code, for raters who entered
    from Prolific in a study with ``prolific:`` configured; else None (the page shows a code)."""
    p = ctx.study.config.prolific
    crowd = ctx.repo.crowd(rater.id) if p is not None else None
    if p is None or crowd is None or crowd.prolific_pid is None:
        return None
    return f"{p.completion_url}{'&' if '?' in p.completion_url else '?'}cc={quote(p.completion_code, safe='')}"


def done_page(ctx: ServerContext, request: Request, rater: Rater, code: str | None) -> RedirectResponse | dict:
    """The last step: a redirect to Prolific, or the template variables of the completion-code page.

    The Prolific code and a panel's fixed code are the same for everyone. A rater's own code is shown only to
    the browser holding that rater's session (else anyone knowing a finished rater's id could claim it); a
    browser without it, e.g. one arriving from the panel's site, where SameSite=Strict keeps the cookie back,
    gets a link to this page, and following it is a same-site navigation that carries the cookie."""
    url = completion_url(ctx, rater)
    if url is not None:
        return RedirectResponse(url, status_code=303)
    panel = ctx.study.config.panel
    if panel and panel.completion_code:
        code = panel.completion_code
    elif not session_valid(ctx, rater.id, given_session(request)):
        code = None
    return {"code": code, "platform": panel.name if panel else None}


# -- what the instructions say ------------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _mean_clip_s(study_dir: Path) -> float:
    stimuli = json.loads((study_dir / "stimuli.json").read_text())["stimuli"]
    durations = [float(s["duration_s"]) for s in stimuli if s.get("duration_s")]
    return sum(durations) / len(durations) if durations else 30.0


SETUP_S = 120.0  # consent, instructions and volume check
ANSWER_S = 6.0  # per question and trial


def outline(ctx: ServerContext, rater: Rater | None) -> dict:
    """Trial count, practice, screening rounds and the expected length stated on the instructions page.

    The length is ``expected_minutes`` from the config, else an estimate: setup (2 min) + per trial both
    soundtracks once in full plus 6 s per question + per screening round its noises, gaps and 4 s to answer;
    rounded up to whole minutes."""
    s, cfg = ctx.study, ctx.study.config
    trials = s.trials(rater.slot) if rater is not None else s.trials(0)
    n_practice = sum(t.is_practice for t in trials)
    n = len(trials) - n_practice
    sc = cfg.screening
    if cfg.expected_minutes is not None:
        minutes = cfg.expected_minutes
    else:
        per_trial = 2 * max(_mean_clip_s(s.dir), cfg.min_listen_s) + ANSWER_S * len(cfg.questions)
        per_round = (screening.INTERVALS * sc.interval_s + (screening.INTERVALS - 1) * sc.gap_s + 4.0) if sc else 0
        total = SETUP_S + (n + n_practice) * per_trial + (sc.trials * per_round if sc else 0.0)
        minutes = math.ceil(total / 60.0)
    return {"n_trials": n, "practice": bool(n_practice), "screening_rounds": sc.trials if sc else 0,
            "minutes": f"{minutes:g}", "min_listen_s": f"{cfg.min_listen_s:g}",
            "short_clip_s": f"{2 * cfg.min_listen_s:g}"}


# -- headphone screening ------------------------------------------------------------------------------------------
def screening_pending(ctx: ServerContext, rater: Rater) -> bool:
    """Whether the study screens and this rater has not been screened yet."""
    if ctx.study.config.screening is None:
        return False
    crowd = ctx.repo.crowd(rater.id)
    return crowd is None or crowd.screening_at is None


def require_screening(ctx: ServerContext, rater: Rater) -> None:
    """Votes come after the screening (else 409 ``screening_required``)."""
    if screening_pending(ctx, rater):
        raise error(409, "screening_required", "take the headphone check before the trials")


def screening_seed(ctx: ServerContext, rater_id: str) -> int:
    """The rater's screening seed: an HMAC under the server secret (the answer key cannot be derived without it)."""
    mac = hmac.new(ctx.study.secret, f"screening|{ctx.study.manifest_sha256}|{rater_id}".encode(), hashlib.sha256)
    return int.from_bytes(mac.digest()[:8], "big")


def screening_spec(ctx: ServerContext, sc: ScreeningConfig) -> screening.HugginsSpec:
    # the noise plays at the stimuli's loudness target (as RMS per channel), the level the rater just set
    return screening.HugginsSpec(interval_s=sc.interval_s, frequency_hz=sc.frequency_hz, bandwidth=sc.bandwidth,
                                 level_dbfs=float(ctx.study.config.loudness_lufs))


def _screening_config(ctx: ServerContext) -> ScreeningConfig:
    sc = ctx.study.config.screening
    if sc is None:
        raise error(404, "no_screening", "this study has no headphone check")
    return sc


def _screened_rater(ctx: ServerContext, request: Request, rid: str) -> Rater:
    """The consented rater of `rid` (its session credential is checked for every /api/raters/ID/... path by the
    app's middleware, :mod:`studies.server.app`)."""
    return flow._rater(ctx, rid)


class ScreeningOut(BaseModel):
    rounds: int
    intervals: int
    interval_s: float
    gap_s: float
    media: list[list[str]]  # per round, the URLs of its noises in playing order
    done: bool


class ScreeningIn(Strict):
    """One answer per round: the noise (1, 2 or 3) that carried the tone."""

    answers: list[Annotated[int, Field(ge=1, le=screening.INTERVALS)]] = Field(min_length=1, max_length=20)


@router.get("/api/raters/{rid}/screening")
def screening_state(rid: RaterId, request: Request, ctx: Ctx) -> ScreeningOut:
    sc = _screening_config(ctx)
    _screened_rater(ctx, request, rid)
    base = f"/api/raters/{quote(rid)}/screening"
    media = [[f"{base}/{t + 1}/{i + 1}.wav" for i in range(screening.INTERVALS)] for t in range(sc.trials)]
    crowd = ctx.repo.crowd(rid)
    return ScreeningOut(rounds=sc.trials, intervals=screening.INTERVALS, interval_s=sc.interval_s, gap_s=sc.gap_s,
                        media=media, done=crowd is not None and crowd.screening_at is not None)


@router.get("/api/raters/{rid}/screening/{round_}/{name}", include_in_schema=False)
def screening_audio(rid: RaterId, round_: int, name: str, request: Request, ctx: Ctx) -> Response:
    """One noise (1-based round and interval). Every noise of a study has the same length and format, so the
    same Content-Length and headers."""
    sc = _screening_config(ctx)
    _screened_rater(ctx, request, rid)
    interval = int(name[0]) if len(name) == 5 and name[0] in "123" and name.endswith(".wav") else 0
    if not (1 <= round_ <= sc.trials and 1 <= interval <= screening.INTERVALS):
        raise error(404, "unknown_media", "no such media")
    data = screening.interval_wav(screening_seed(ctx, rid), round_ - 1, interval - 1, sc.trials,
                                  screening_spec(ctx, sc))
    return Response(data, media_type="audio/wav")


@router.post("/api/raters/{rid}/screening")
def screening_answers(rid: RaterId, body: ScreeningIn, request: Request, ctx: Ctx) -> dict:
    """Score the answers and store the result; the first result stays (a retry changes nothing). The score is
    not returned: the page moves on to the trials whether the rater passed or not."""
    sc = _screening_config(ctx)
    rater = _screened_rater(ctx, request, rid)
    if rater.volume_checked_at is None:
        raise error(409, "volume_check_first", "do the volume check first")
    if len(body.answers) != sc.trials:
        raise error(422, "wrong_answer_count", f"expected {sc.trials} answers, one per round, got {len(body.answers)}")
    score = screening.score([a - 1 for a in body.answers], screening_seed(ctx, rid))
    ctx.repo.set_screening(rid, score, sc.trials, score >= sc.pass_min, ctx.clock())
    return {"done": True}


# -- export marks -------------------------------------------------------------------------------------------------
EXPORT_MARKS = ("is_practice", "screening_passed")


def export_columns() -> list[str]:
    """Columns of the vote export: the analysis' vote columns, then the marks it does not list (yet)."""
    from studies.analysis.votes import VOTE_COLUMNS

    return list(VOTE_COLUMNS) + [c for c in EXPORT_MARKS if c not in VOTE_COLUMNS]


def vote_records(repo: Repository, design: Design, manifest: str) -> list[dict]:
    """Every vote of study version `manifest` as export rows: the analysis' vote columns plus ``is_practice`` (the
    vote is on a practice trial: never analysed) and ``screening_passed`` (the rater's headphone-check result;
    None when not screened)."""
    from studies.server.admin import vote_record

    practice = {t.trial_id for t in design.all_trials() if t.is_practice}
    crowd = repo.crowd_all()
    rows = []
    for v in repo.votes(manifest):
        rec = vote_record(v)
        c = crowd.get(v.rater_id)
        rec["is_practice"] = v.trial_id in practice
        rec["screening_passed"] = None if c is None or c.screening_passed is None else bool(c.screening_passed)
        rows.append(rec)
    return rows
