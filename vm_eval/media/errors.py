"""The one error type of media I/O: it always names the file and what is wrong with it."""
from __future__ import annotations

from pathlib import Path

from vm_eval.errors import UserError


class MediaError(UserError):
    """A media file is missing, cannot be decoded, or holds nothing usable (no stream, zero length, silence)."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
