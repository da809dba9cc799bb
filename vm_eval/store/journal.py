"""Append-only JSONL journals: one line per finished unit of work, flushed and fsynced before it counts.

A process killed mid-write leaves at most one torn last line; readers drop it (that unit is simply redone),
so a journal never claims work that did not finish. A command that works on the journal first calls
:meth:`Journal.repair`, which moves such lines into ``<name>.torn`` so they are reported once, not at every read.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from vm_eval.fsutil import atomic_write_text


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

    def repair(self) -> int:
        """Move unreadable lines (a killed writer's torn last line) out of the journal into ``<name>.torn``, keeping
        every readable record in order; returns how many were moved. Call it only while holding the run's lock."""
        if not self.path.is_file():
            return 0
        good, bad = [], []
        with open(self.path) as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    ok = isinstance(json.loads(line), dict)
                except json.JSONDecodeError:
                    ok = False
                (good if ok else bad).append(line if line.endswith("\n") else line + "\n")
        if bad:
            with open(self.path.with_name(self.path.name + ".torn"), "a") as f:
                f.writelines(bad)
                f.flush()
                os.fsync(f.fileno())
            atomic_write_text(self.path, "".join(good))
        return len(bad)

    def latest(self, *key: str) -> dict[tuple, dict]:
        """Last record per key tuple (later lines supersede earlier ones)."""
        return {tuple(r.get(k) for k in key): r for r in self}

    def reset(self) -> None:
        if self.path.exists():
            self.path.unlink()
