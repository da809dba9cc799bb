"""Serving one study with several uvicorn worker processes (`vm-eval study serve --workers N`).

uvicorn starts each worker process from an import string, not from an app object, so the settings travel in
environment variables and :func:`app_from_env` (the factory uvicorn calls in each worker) builds that worker's app.
The parent resolves the admin token once and passes it on, so every worker accepts the same token; the token
secret that signs trial tokens is stored in the database, so every worker signs alike.

Several processes need a database that locks across processes: PostgreSQL (slot assignment under an advisory lock,
see :mod:`.storage`). SQLite stays the embedded default with one worker; more are refused with
:class:`WorkersNeedPostgres` rather than left to balance slots per process.
"""
from __future__ import annotations

import os

from fastapi import FastAPI

from studies.server.storage import is_multiprocess_safe
from studies.server.study import StudyServerError

ENV_STUDY_DIR = "VM_EVAL_STUDY_DIR"
ENV_DB_URL = "VM_EVAL_STUDY_DB"
ENV_ADMIN_TOKEN = "VM_EVAL_STUDY_ADMIN_TOKEN"  # also what `study serve` reads for a token kept across starts
FACTORY = "studies.server.workers:app_from_env"


class WorkersNeedPostgres(StudyServerError):
    """More than one worker process asked for on a database that only locks within one process."""


def check_workers(db_url: str, workers: int) -> None:
    """Refuse a worker count the database at `db_url` cannot serve safely (one line, a :class:`StudyServerError`)."""
    if workers < 1:
        raise StudyServerError(f"--workers must be at least 1 (got {workers})")
    if workers > 1 and not is_multiprocess_safe(db_url):
        raise WorkersNeedPostgres(
            f"--workers {workers} needs PostgreSQL (--db postgresql+psycopg://USER@HOST/DB): slot assignment on "
            "SQLite is locked within one process, so it serves with one worker")


def worker_env(study_dir: str, db_url: str, admin_token: str) -> dict[str, str]:
    """The environment variables :func:`app_from_env` reads in each worker."""
    return {ENV_STUDY_DIR: str(study_dir), ENV_DB_URL: db_url, ENV_ADMIN_TOKEN: admin_token}


def app_from_env() -> FastAPI:
    """The study app of one worker process, from the variables :func:`worker_env` sets (uvicorn ``factory=True``)."""
    from studies.server.app import create_app

    missing = [k for k in (ENV_STUDY_DIR, ENV_DB_URL, ENV_ADMIN_TOKEN) if not os.environ.get(k)]
    if missing:
        raise StudyServerError(f"worker started without {', '.join(missing)}: start it with `vm-eval study serve`")
    return create_app(os.environ[ENV_STUDY_DIR], db_url=os.environ[ENV_DB_URL],
                      admin_token=os.environ[ENV_ADMIN_TOKEN])
