"""What every request handler shares: the served study, the repository, the clock and the admin token; and the
rater session credential (issued at consent, required by every other rater API call)."""
from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request

from studies.server.storage import Repository
from studies.server.study import ServedStudy


@dataclass
class ServerContext:
    study: ServedStudy
    repo: Repository
    clock: Callable[[], float]  # seconds since the epoch (injectable for tests)
    admin_token: str


def get_ctx(request: Request) -> ServerContext:
    return request.app.state.ctx


def error(status: int, code: str, message: str) -> HTTPException:
    """An HTTP error with a machine-readable code and a message for people (never a system name or path)."""
    return HTTPException(status_code=status, detail={"error": code, "message": message})


SESSION_COOKIE = "vm_eval_session"
SESSION_MAX_AGE_S = 60 * 60 * 24 * 30


def given_session(request: Request) -> str | None:
    """The rater credential a request carries: ``Authorization: Bearer <credential>`` (for clients that keep no
    cookies per rater), else the :data:`SESSION_COOKIE` cookie the consent response set."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.cookies.get(SESSION_COOKIE) or None


def session_valid(ctx: ServerContext, rater_id: str, credential: str | None) -> bool:
    """Whether `credential` is the one :meth:`ServedStudy.session` issued to `rater_id` (constant-time compare)."""
    return credential is not None and hmac.compare_digest(credential.encode(), ctx.study.session(rater_id).encode())


def require_session(ctx: ServerContext, request: Request, rater_id: str) -> None:
    """Raise 401 when the request carries no rater credential, 403 when it is not `rater_id`'s."""
    given = given_session(request)
    if given is None:
        raise error(401, "no_session", "no rater session: open the study link and give consent first "
                                       "(this browser must accept the study's cookie)")
    if not session_valid(ctx, rater_id, given):
        raise error(403, "bad_session", "this session belongs to another rater (or is not valid)")
