"""The status words of stored work, defined once: a run's status and a clip or score record's status.

Both are `StrEnum`s, so they are written to JSON and parquet as their plain values ("done", "complete") and
compare equal to those strings when read back.
"""
from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A run's status in run.json. ``running`` is shown as ``interrupted`` once no process holds the run's lock."""

    RUNNING = "running"
    INTERRUPTED = "interrupted"
    PARTIAL = "partial"  # the command finished, but some clip is pending or unscored (e.g. --limit)
    COMPLETE = "complete"  # every clip generated, failed or skipped with a reason, and scored


class Status(StrEnum):
    """A generation or score record's status in a journal."""

    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # by design, with a reason (no reference music, not applicable to this clip)
