"""The FastAPI application of a study: :func:`create_app` wires the verified study, the vote database, the rater
flow (:mod:`.rater`), the admin endpoints (:mod:`.admin`) and the static files together.

The app has no interactive API docs (they would load scripts from a CDN; the machine may be offline) and sends
a strict Content-Security-Policy (scripts, styles and media from this origin only, no inline code).

Hardening against hostile clients: request bodies over :data:`MAX_BODY_BYTES` are refused with 413 by an ASGI
middleware that counts the bytes as they arrive (a chunked body has no Content-Length to trust); every rater API
call but consent needs the rater's session credential (:func:`studies.server.context.require_session`); a
malformed body is 422 even when it holds NaN or Infinity (the default handler would echo them into JSON, which
cannot hold them, and fail with 500); and the uvicorn access log never shows a ``token`` query parameter.
"""
from __future__ import annotations

import logging
import math
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from studies.layout import verify_study
from studies.server import admin, crowd, rater
from studies.server.context import ServerContext, require_session
from studies.server.storage import Repository
from studies.server.study import ServedStudy, StudyServerError

DB_FILE = "votes.sqlite"
STATIC = Path(__file__).with_name("static")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; media-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


MAX_BODY_BYTES = 64 * 1024
RATER_API = re.compile(r"^/api/raters/([A-Za-z0-9_-]{1,64})/(.+)$")  # {rid}/{rest}: all but "consent" need a session


def _too_large() -> JSONResponse:
    return JSONResponse({"detail": {"error": "body_too_large",
                                    "message": f"request body over {MAX_BODY_BYTES // 1024} KB"}},
                        status_code=413, headers={"Connection": "close"})


class BodyLimit:
    """ASGI middleware: 413 for a request whose body exceeds `max_bytes`, by its Content-Length at once, else
    counted chunk by chunk as the app reads it. Then the 413 is sent from here, the app is told the client went
    away (it stops reading) and whatever it answers is dropped."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES) -> None:  # noqa: ANN001
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _too_large()(scope, receive, send)
            return
        seen, started, refused = 0, False, False

        async def counted():  # noqa: ANN202
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    if not started:
                        await _too_large()(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def watched(message) -> None:  # noqa: ANN001
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, watched)


def _finite(value):  # noqa: ANN001, ANN202
    """`value` with every NaN / infinite float replaced by its name, so the 422 error list stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _finite(jsonable_encoder(exc.errors()))}, status_code=422)


class RedactTokens(logging.Filter):
    """Blanks the value of ``token`` query parameters in uvicorn's access log lines (the admin token is only
    accepted in a header, but a mistaken ``?token=`` must not be written to the log either)."""

    PATTERN = re.compile(r"(?i)([?&](?:admin_)?token=)[^&\s]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"\1REDACTED", a) if isinstance(a, str) else a
                                for a in record.args)
        if isinstance(record.msg, str):
            record.msg = self.PATTERN.sub(r"\1REDACTED", record.msg)
        return True


def _redact_access_log() -> None:
    log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in log.filters):
        log.addFilter(RedactTokens())


def default_db_url(study_dir: str | Path) -> str:
    return f"sqlite:///{(Path(study_dir).resolve() / DB_FILE).as_posix()}"


def create_app(study_dir: str | Path, db_url: str | None = None, admin_token: str | None = None, *,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """The server of the study in `study_dir`.

    Refuses (:class:`StudyServerError`) a study that :func:`studies.layout.verify_study` rejects, and a database
    holding votes of another version of the study (votes are tied to one manifest hash). `db_url` defaults to
    SQLite at ``STUDY_DIR/votes.sqlite``; `admin_token` to a fresh ``secrets.token_urlsafe(32)`` (read it back
    from ``app.state.admin_token``); `clock` gives seconds since the epoch (tests pass a fake one).
    """
    try:
        verify_study(study_dir)  # before the database is created inside an incomplete folder
    except ValueError as e:
        raise StudyServerError(f"refusing to serve: {e}") from None
    repo = Repository(db_url or default_db_url(study_dir))
    secret = bytes.fromhex(repo.meta("token_secret", lambda: secrets.token_hex(32)))
    study = ServedStudy.load(study_dir, secret)
    other = [m for m in repo.manifests_with_votes() if m != study.manifest_sha256]
    if other:
        raise StudyServerError(
            f"refusing to serve: the database {repo.engine.url.render_as_string(hide_password=True)} holds votes of "
            f"another version of this study (manifest {other[0][:12]}...; now {study.manifest_sha256[:12]}...); "
            "pass --db with a fresh database, or serve the version those votes belong to")
    token = admin_token or secrets.token_urlsafe(32)

    app = FastAPI(title="vm-eval listening study", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = ServerContext(study=study, repo=repo, clock=clock, admin_token=token)
    app.state.admin_token = token

    @app.middleware("http")
    async def _headers(request: Request, call_next):  # noqa: ANN001, ANN202
        m = RATER_API.match(request.url.path)
        try:
            if m and m.group(2) != "consent":
                require_session(app.state.ctx, request, m.group(1))
        except HTTPException as e:
            response = JSONResponse({"detail": e.detail}, status_code=e.status_code)
        else:
            response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        if request.url.path.startswith(("/api/", "/admin")):
            response.headers["Cache-Control"] = "no-store"
        return response

    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    _redact_access_log()
    app.include_router(rater.router)
    app.include_router(crowd.router)
    app.include_router(admin.router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app
