"""Append-only JSONL journals: one line per finished unit of work, flushed and fsynced before it counts.

A process killed mid-write leaves at most one torn last line; readers drop it (that unit is simply redone),
so a journal never claims work that did not finish.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path


class Journal:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.dropped = 0  # unreadable lines skipped by the last read

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True, default=str)
        with open(self.path, "a") as f:
            if f.tell() > 0 and not self._ends_with_newline():
                f.write("\n")  # a torn line from a killed writer must not swallow this record
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def __iter__(self) -> Iterator[dict]:
        self.dropped = 0
        if not self.path.is_file():
            return
        with open(self.path) as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    self.dropped += 1
                    continue
                if isinstance(rec, dict):
                    yield rec
                else:
                    self.dropped += 1

    def latest(self, *key: str) -> dict[tuple, dict]:
        """Last record per key tuple (later lines supersede earlier ones)."""
        return {tuple(r.get(k) for k in key): r for r in self}

    def reset(self) -> None:
        if self.path.exists():
            self.path.unlink()
