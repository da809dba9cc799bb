"""What every request handler shares: the served study, the repository, the clock and the admin token."""
from __future__ import annotations

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
