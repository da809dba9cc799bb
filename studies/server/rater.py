"""The rater flow: entry and pages (consent -> instructions -> volume check -> headphone screening, when the study
has one -> trials, the first a practice trial when configured -> completion code or the platform's completion
redirect, :mod:`.crowd`), the JSON API the trial page drives, the test tone and the stimuli.

Rater-facing output never names a system, run or path: trials travel as opaque tokens (:mod:`.study`), media as
``/media/<stimulus key>.mp4`` looked up in ``stimuli.json``, answers as positions A / B / tie. The design's left
system is side A. Votes need enough listening to both sides, checked on the recorded listen events
(:mod:`.listening`), are idempotent per (rater, trial, question), and must follow the presentation order.
"""
from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Path as PathParam, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from studies.design import Trial
from studies.server.context import (
    SESSION_COOKIE, SESSION_MAX_AGE_S, ServerContext, error, get_ctx, given_session, session_valid,
)
from studies.server.listening import (
    JITTER_S, MAX_EVENTS_PER_TRIAL, SERVED, SERVED_SIDE, client_event_count, listened_seconds, trial_min_listen_s,
)
from studies.server.schemas import (
    RATER_ID_PATTERN, RATER_ID_RE, ListenEventsIn, QuestionOut, StateOut, TrialOut, VoteIn,
)
from studies.server.storage import Rater, VoteConflict, utc
from studies.server.tone import tone_wav

COOKIE = "vm_eval_rater"
URL_PARAMS = ("rater", "PROLIFIC_PID")
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
MEDIA_NAME = r"^[0-9a-f]{16,128}\.mp4$"

router = APIRouter()
FLOW_PAGES = ("consent", "instructions", "volume", "screening", "trials", "done")  # the rater flow, in order
Ctx = Annotated[ServerContext, Depends(get_ctx)]
RaterId = Annotated[str, PathParam(pattern=RATER_ID_PATTERN, max_length=64)]


# -- helpers ------------------------------------------------------------------------------------------------------
def _rater(ctx: ServerContext, rid: str, consented: bool = True) -> Rater:
    r = ctx.repo.rater(rid)
    if r is None:
        raise error(404, "unknown_rater", "unknown rater id: open the study link and give consent first")
    if consented and r.consent_at is None:
        raise error(403, "no_consent", "consent has not been given")
    return r


def _trial(ctx: ServerContext, rater: Rater, token: str) -> Trial:
    t = ctx.study.trial_of.get(token)
    if t is None:
        raise error(404, "unknown_trial", "no such trial")
    if t.rater != rater.slot:
        raise error(403, "foreign_trial", "this trial is not assigned to you")
    return t


def _progress(ctx: ServerContext, rater: Rater) -> tuple[int, int, Trial | None, dict[str, dict[str, str]]]:
    """(trials fully answered, trials, first trial not fully answered or None, stored answers per trial id)."""
    answers = ctx.repo.answers(rater.id)
    qids = [q.id for q in ctx.study.config.questions]
    trials = ctx.study.trials(rater.slot)
    open_ = [t for t in trials if any(q not in answers.get(t.trial_id, {}) for q in qids)]
    return len(trials) - len(open_), len(trials), (open_[0] if open_ else None), answers


def _listened(ctx: ServerContext, rater: Rater, trial: Trial, mark_served: bool = False) -> dict[str, float]:
    """Listening credited so far (:mod:`.listening`); `mark_served` records the first serving of the trial."""
    events = ctx.repo.events(rater.id, trial.trial_id)
    now = ctx.clock()
    if mark_served and not events:  # the server's own mark: nothing is credited from before it
        ctx.repo.add_events(rater.id, trial.trial_id, [dict(side=SERVED_SIDE, event=SERVED, media_time=0.0,
                                                            client_time=None)], now)
        return {"A": 0.0, "B": 0.0}
    return listened_seconds(events, ctx.study.duration_s(trial), now)


def _min_listen(ctx: ServerContext, trial: Trial) -> float:
    return trial_min_listen_s(ctx.study.config.min_listen_s, ctx.study.duration_s(trial))


def _trial_out(ctx: ServerContext, rater: Rater, trial: Trial, answers: dict[str, str]) -> TrialOut:
    s = ctx.study
    keys = {pos: s.key_of[(trial.clip_id, system)] for pos, system in s.sides(trial).items()}
    trials = s.trials(rater.slot)
    n_practice = sum(t.is_practice for t in trials)  # shown first, not counted in "Trial i of n"
    return TrialOut(
        token=s.token_of[trial.trial_id], index=0 if trial.is_practice else trial.position + 1 - n_practice,
        total=len(trials) - n_practice, practice=trial.is_practice,
        video=f"/media/{keys['A']}.mp4", media={pos: f"/media/{k}.mp4" for pos, k in keys.items()},
        questions=[QuestionOut(id=q.id, text=q.text) for q in s.config.questions], options=s.answer_options,
        min_listen_s=_min_listen(ctx, trial), answered=answers, listened=_listened(ctx, rater, trial, True))


def _state(ctx: ServerContext, rater: Rater) -> StateOut:
    done, total, current, answers = _progress(ctx, rater)
    if current is None and rater.completion_code is None:
        rater = ctx.repo.complete(rater.id, ctx.clock())
    return StateOut(
        rater=rater.id, consented=rater.consent_at is not None, volume_checked=rater.volume_checked_at is not None,
        done=done, total=total, complete=current is None, completion_code=rater.completion_code,
        trial=_trial_out(ctx, rater, current, answers.get(current.trial_id, {})) if current else None)


def _step(rater: Rater | None, ctx: ServerContext) -> str:
    if rater is None or rater.consent_at is None:
        return "consent"
    if rater.volume_checked_at is None:
        return "instructions"
    from studies.server import crowd  # crowd builds on this module

    if crowd.screening_pending(ctx, rater):
        return "screening"
    return "done" if _progress(ctx, rater)[2] is None else "trials"


def _to(step: str, rid: str) -> RedirectResponse:
    return RedirectResponse(f"/{step}?rater={quote(rid)}", status_code=303)


def _page(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status)


def _page_rater(request: Request) -> str | None:
    rid = request.query_params.get("rater")
    return rid if rid is not None and RATER_ID_RE.match(rid) else None


# -- pages --------------------------------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def entry(request: Request, ctx: Ctx) -> Response:
    """The study link: rater id from ?rater= / ?PROLIFIC_PID=, else the cookie, else a new one; then the
    rater's next step, with the id in the URL and in a cookie."""
    from studies.server import crowd  # crowd builds on this module

    try:
        prolific = crowd.prolific_ids(request.query_params)
    except crowd.InvalidLink as e:
        return _page(request, "error.html", 400, title="Invalid Prolific link", message=str(e))
    given = prolific.pid if prolific else \
        next((request.query_params[p] for p in URL_PARAMS if p in request.query_params), None)
    if given is not None and not RATER_ID_RE.match(given):
        return _page(request, "error.html", 400, title="Invalid link",
                     message="The rater id in this link is invalid: use 1 to 64 letters, digits, '-' or '_'.")
    if prolific:
        crowd.record_entry(ctx, prolific)
    rid = given or request.cookies.get(COOKIE)
    if rid is None or not RATER_ID_RE.match(rid):
        rid = "r" + secrets.token_hex(8)
    resp = _to(_step(ctx.repo.rater(rid), ctx), rid)
    resp.set_cookie(COOKIE, rid, max_age=60 * 60 * 24 * 30, httponly=True, samesite="lax")
    return resp


def _flow_page(request: Request, ctx: ServerContext, step: str) -> Response:
    rid = _page_rater(request)
    if rid is None:
        return RedirectResponse("/", status_code=303)
    rater = ctx.repo.rater(rid)
    now = _step(rater, ctx)
    # instructions and the volume check may be revisited after consent; the other pages only at their step
    allowed = now != "consent" if step in ("instructions", "volume") else now == step
    if not allowed:
        return _to(now, rid)
    from studies.server import crowd  # crowd builds on this module

    cfg = ctx.study.config
    ctx_vars = {"rater": rid, "step": step, **crowd.outline(ctx, rater)}
    text = {"consent": cfg.consent_text, "instructions": cfg.instructions_text}.get(step)
    if text is not None:
        ctx_vars["paragraphs"] = [p.strip() for p in text.split("\n\n") if p.strip()]
    elif step == "done":
        done = crowd.done_page(ctx, request, rater, _state(ctx, rater).completion_code)
        if isinstance(done, Response):  # Prolific: back to the platform with the study's completion code
            return done
        ctx_vars.update(done)
    return _page(request, f"{step}.html", **ctx_vars)


def _flow_route(step: str):
    def page(request: Request, ctx: Ctx) -> Response:
        return _flow_page(request, ctx, step)

    page.__name__ = f"{step}_page"
    return page


for _flow_step in FLOW_PAGES:
    router.add_api_route(f"/{_flow_step}", _flow_route(_flow_step), methods=["GET"], response_class=HTMLResponse,
                         include_in_schema=False)


@router.get("/tone.wav", include_in_schema=False)
def tone(ctx: Ctx) -> Response:
    return Response(tone_wav(float(ctx.study.config.loudness_lufs)), media_type="audio/wav",
                    headers={"Cache-Control": "public, max-age=3600"})


@router.get("/media/{name}", include_in_schema=False)
def media(name: str, ctx: Ctx) -> Response:
    """A stimulus by key. The key is looked up in the study's stimuli table; request input never becomes a path."""
    key = name[:-4] if re.match(MEDIA_NAME, name) else None
    path = ctx.study.media.get(key) if key else None
    if path is None:
        raise error(404, "unknown_media", "no such media")
    return BlindFileResponse(path, etag=ctx.study.sha256_of[key], media_type="video/mp4",
                             headers={"Cache-Control": "private, max-age=3600"})


class BlindFileResponse(FileResponse):
    """A file response whose headers say nothing about when the file was written: no ``Last-Modified``, and the
    ETag is the sha256 of the content (Starlette's default hashes the file time). Range requests still work."""

    def __init__(self, path: Path, etag: str, **kwargs) -> None:
        self._etag = f'"{etag}"'
        super().__init__(path, **kwargs)

    def set_stat_headers(self, stat_result) -> None:  # noqa: ANN001
        self.headers.setdefault("content-length", str(stat_result.st_size))
        self.headers.setdefault("etag", self._etag)

    def _should_use_range(self, http_if_range: str) -> bool:
        return http_if_range == self._etag


# -- API ----------------------------------------------------------------------------------------------------------
@router.post("/api/raters/{rid}/consent")
def give_consent(rid: RaterId, request: Request, response: Response, ctx: Ctx) -> StateOut:
    """Create the rater (assigning a design slot), record consent and issue the rater's session credential (an
    HttpOnly, SameSite=Strict cookie; every other rater API call needs it). Repeating it changes nothing; for a
    rater id that exists already it needs that rater's credential (else 403), so knowing an id is not enough."""
    now = ctx.clock()
    if ctx.repo.rater(rid) is not None and not session_valid(ctx, rid, given_session(request)):
        raise error(403, "rater_taken", "this rater id is in use by another session: open the study link in the "
                                        "browser you started in")
    ctx.repo.enrol(rid, ctx.study.n_slots, ctx.study.manifest_sha256, now)
    response.set_cookie(SESSION_COOKIE, ctx.study.session(rid), max_age=SESSION_MAX_AGE_S, path="/",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return _state(ctx, ctx.repo.set_time(rid, "consent_at", now))


@router.post("/api/raters/{rid}/volume-check")
def volume_checked(rid: RaterId, ctx: Ctx) -> StateOut:
    _rater(ctx, rid)
    return _state(ctx, ctx.repo.set_time(rid, "volume_checked_at", ctx.clock()))


@router.get("/api/raters/{rid}/state")
def state(rid: RaterId, ctx: Ctx) -> StateOut:
    """Progress and the first trial not fully answered (where a reloading or returning rater resumes)."""
    return _state(ctx, _rater(ctx, rid))


@router.get("/api/raters/{rid}/trials/{token}")
def get_trial(rid: RaterId, token: str, ctx: Ctx) -> TrialOut:
    rater = _rater(ctx, rid)
    t = _trial(ctx, rater, token)
    return _trial_out(ctx, rater, t, ctx.repo.answers(rid).get(t.trial_id, {}))


@router.post("/api/raters/{rid}/trials/{token}/events")
def listen_events(rid: RaterId, token: str, body: ListenEventsIn, ctx: Ctx) -> dict:
    """Record play / pause / ended / seek events of one trial (stamped with the server clock on arrival; the
    browser sends one per request). At most :data:`MAX_EVENTS_PER_TRIAL` per trial, else 429."""
    rater = _rater(ctx, rid)
    t = _trial(ctx, rater, token)
    have = client_event_count(ctx.repo.events(rid, t.trial_id))
    if have + len(body.events) > MAX_EVENTS_PER_TRIAL:
        raise error(429, "too_many_events", f"this trial has recorded {have} listen events; at most "
                                            f"{MAX_EVENTS_PER_TRIAL} per trial are accepted")
    n = ctx.repo.add_events(rid, t.trial_id, (e.model_dump() for e in body.events), ctx.clock())
    return {"recorded": n, "listened": _listened(ctx, rater, t)}


@router.post("/api/raters/{rid}/trials/{token}/votes")
def vote(rid: RaterId, token: str, body: VoteIn, ctx: Ctx) -> dict:
    """Answers to questions of one trial. Replays of stored answers are 200 with ``duplicate: true``; a different
    answer to an answered question is 409; new answers need the trial's ``min_listen_s`` of each side credited by
    the server's clock from the recorded listen events (else 409 ``not_enough_listening``) and the trial must be the rater's current one (else 409)."""
    s, now = ctx.study, ctx.clock()
    rater = _rater(ctx, rid)
    t = _trial(ctx, rater, token)
    from studies.server import crowd  # crowd builds on this module

    crowd.require_screening(ctx, rater)
    known = {q.id for q in s.config.questions}
    unknown = sorted(set(body.answers) - known)
    if unknown:
        raise error(422, "unknown_question", f"unknown question(s) {unknown}; this study asks {sorted(known)}")
    if not s.config.allow_ties and "tie" in body.answers.values():
        raise error(422, "ties_not_allowed", "this study does not allow ties: answer A or B")
    done, total, current, answers = _progress(ctx, rater)
    stored = answers.get(t.trial_id, {})
    conflicts = {q: stored[q] for q, a in body.answers.items() if q in stored and stored[q] != a}
    if conflicts:
        raise error(409, "already_answered", f"already answered differently: {sorted(conflicts)}")
    new = {q: a for q, a in body.answers.items() if q not in stored}
    listened = _listened(ctx, rater, t)
    if new:
        if current is None or t.position > current.position:
            raise error(409, "out_of_order", "answer the trials in the order they are shown")
        need = _min_listen(ctx, t)
        short = {p: v for p, v in listened.items() if v < need - JITTER_S}
        if short:
            raise _not_enough_listening(need, listened)
    sides = s.sides(t)
    rows = [dict(rater_id=rid, trial_id=t.trial_id, clip_id=t.clip_id, question=q, answer=a, system_a=sides["A"],
                 system_b=sides["B"], is_catch=t.is_catch, catch_expected=s.catch_expected(t, q),
                 submission_id=body.submission_id, listen_a_s=listened["A"], listen_b_s=listened["B"],
                 manifest_sha256=s.manifest_sha256, client_time=body.client_time, created_at=utc(now))
            for q, a in new.items()]
    try:
        added, dups = ctx.repo.add_votes(rows)
    except VoteConflict as c:  # a concurrent submission answered it first
        raise error(409, "already_answered", f"already answered differently: [{c.question!r}]") from None
    dups = sorted(set(dups) | (set(body.answers) - set(new)))
    st = _state(ctx, ctx.repo.rater(rid))
    return {"stored": sorted(added), "duplicates": dups, "duplicate": not added, "done": st.done,
            "total": st.total, "complete": st.complete, "completion_code": st.completion_code,
            "next": st.trial.token if st.trial else None}


def _not_enough_listening(min_s: float, listened: dict[str, float]) -> HTTPException:
    e = error(409, "not_enough_listening",
              f"listen to both soundtracks for at least {min_s:g} s each before answering "
              f"(recorded: A {listened['A']:.1f} s, B {listened['B']:.1f} s)")
    e.detail["listened"] = listened
    e.detail["min_listen_s"] = min_s
    return e
