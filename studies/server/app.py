"""The FastAPI application of a study: :func:`create_app` wires the verified study, the vote database, the rater
flow (:mod:`.rater`), the admin endpoints (:mod:`.admin`) and the static files together.

The app has no interactive API docs (they would load scripts from a CDN; the machine may be offline) and sends
a strict Content-Security-Policy (scripts, styles and media from this origin only, no inline code).
"""
from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from studies.layout import verify_study
from studies.server import admin, rater
from studies.server.context import ServerContext
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
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        if request.url.path.startswith(("/api/", "/admin")):
            response.headers["Cache-Control"] = "no-store"
        return response

    app.include_router(rater.router)
    app.include_router(admin.router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app
