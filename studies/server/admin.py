"""Admin endpoints: progress per rater / slot / system pair, and the votes export in the columns of
:data:`studies.analysis.votes.VOTE_COLUMNS` (system names resolved server-side). Every endpoint needs the admin
token in a header, ``Authorization: Bearer <token>`` or ``X-Admin-Token: <token>`` (compared in constant time;
never accepted in the query string); else 401."""
from __future__ import annotations

import csv
import io
import secrets
from collections import Counter, defaultdict
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from studies.analysis.votes import canonical_pair
from studies.server.context import ServerContext, error, get_ctx
from studies.server.storage import VoteRow


def require_admin(request: Request) -> ServerContext:
    """The context, when the request carries the admin token in a header (never the URL: URLs end up in access
    logs, browser history and Referer headers); else 401."""
    ctx = get_ctx(request)
    given = request.headers.get("x-admin-token", "").strip() or None
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    if not given or not secrets.compare_digest(given.encode(), ctx.admin_token.encode()):
        raise error(401, "unauthorized", "admin token missing or wrong")
    return ctx


router = APIRouter(prefix="/admin")
Admin = Annotated[ServerContext, Depends(require_admin)]


def vote_record(v: VoteRow) -> dict:
    """One row of the analysis' votes table (exactly VOTE_COLUMNS)."""
    rec = {"rater_id": v.rater_id, "trial_id": v.trial_id, "clip_id": v.clip_id, "question": v.question,
           "system_a": v.system_a, "system_b": v.system_b, "answer": v.answer, "is_catch": bool(v.is_catch),
           "catch_expected": v.catch_expected, "timestamp": v.created_at.isoformat()}
    return rec


@router.get("/progress")
def progress(ctx: Admin) -> dict:
    """Per rater (slot, times, trials and votes done), per design slot, and per system pair (designed trials,
    answered trials, votes per question) of this study version."""
    s = ctx.study
    order = list(s.config.systems)
    votes = ctx.repo.votes(s.manifest_sha256)
    qids = [q.id for q in s.config.questions]
    per_rater_trials: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for v in votes:
        per_rater_trials[v.rater_id][v.trial_id].add(v.question)
    raters = []
    crowd = ctx.repo.crowd_all()  # Prolific ids and headphone-check results (studies.server.crowd)
    slot_raters, slot_done = Counter(), Counter()
    for r in ctx.repo.raters():
        done = sum(1 for qs in per_rater_trials[r.id].values() if set(qids) <= qs)
        slot_raters[r.slot] += 1
        slot_done[r.slot] += r.completed_at is not None
        raters.append({"rater_id": r.id, "slot": r.slot, "created_at": _iso(r.created_at),
                       "consent_at": _iso(r.consent_at), "volume_checked_at": _iso(r.volume_checked_at),
                       "completed_at": _iso(r.completed_at), "completion_code": r.completion_code,
                       "trials_done": done, "trials_total": len(s.trials(r.slot)),
                       "votes": sum(len(qs) for qs in per_rater_trials[r.id].values()),
                       **_crowd_fields(crowd.get(r.id))})
    pairs: dict[tuple[str, str], dict] = {}

    def pair(a: str, b: str) -> dict:
        key = canonical_pair(a, b, order)
        return pairs.setdefault(key, {"system_1": key[0], "system_2": key[1], "designed_trials": 0,
                                      "answered_trials": 0, "votes": 0, "votes_by_question": dict.fromkeys(qids, 0),
                                      "catch": False})

    for t in s.design.all_trials():
        p = pair(t.system_left, t.system_right)
        p["designed_trials"] += 1
        p["catch"] = p["catch"] or t.is_catch
    seen = set()
    for v in votes:
        p = pair(v.system_a, v.system_b)
        p["votes"] += 1
        p["votes_by_question"][v.question] = p["votes_by_question"].get(v.question, 0) + 1
        if (v.rater_id, v.trial_id) not in seen:
            seen.add((v.rater_id, v.trial_id))
            p["answered_trials"] += 1
    return {
        "study": {"dir": str(s.dir), "manifest_sha256": s.manifest_sha256, "systems": order,
                  "questions": qids, "slots": s.n_slots, "trials_per_rater": s.design.trials_per_rater},
        "totals": {"raters": len(raters), "consented": sum(r["consent_at"] is not None for r in raters),
                   "completed": sum(r["completed_at"] is not None for r in raters), "votes": len(votes)},
        "raters": raters,
        "slots": [{"slot": i, "raters": slot_raters[i], "completed": slot_done[i]} for i in range(s.n_slots)],
        "pairs": sorted(pairs.values(), key=lambda p: (p["catch"], p["system_1"], p["system_2"])),
    }


@router.get("/export")
def export(ctx: Admin, format: Annotated[Literal["csv", "json"], Query()] = "csv") -> Response:  # noqa: A002
    """Every vote of this study version as the analysis' votes table (CSV with a header, or a JSON list)."""
    from studies.server.crowd import export_columns, vote_records  # crowd imports this module

    rows = vote_records(ctx.repo, ctx.study.design, ctx.study.manifest_sha256)  # + is_practice, screening_passed
    if format == "json":
        return JSONResponse(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=export_columns(), lineterminator="\n")
    w.writeheader()
    w.writerows({**r, "catch_expected": r["catch_expected"] or "",
                 "screening_passed": "" if r["screening_passed"] is None else r["screening_passed"]} for r in rows)
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="votes.csv"'})


def _crowd_fields(c) -> dict:  # noqa: ANN001 (a storage.RaterCrowd or None)
    return {"prolific_pid": c.prolific_pid if c else None, "prolific_session_id": c.prolific_session_id if c else None,
            "screening_score": c.screening_score if c else None,
            "screening_passed": c.screening_passed if c else None}


def _iso(dt) -> str | None:
    return dt.isoformat() if dt is not None else None
