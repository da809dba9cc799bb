"""One folder per run: `<results>/<dataset>/<split>/<model>/<run-id>/`.

    run.json                   status, identity, config, provenance, timings, aggregates (atomic rewrite)
    audio/<clip id>.wav        generated audio at the model's native rate and channel count
    journal/generation.jsonl   one line per clip once generated, failed or skipped (resume source of truth)
    journal/scores.jsonl       one line per (clip, metric identity) once scored
    clips.parquet, scores.parquet   the journals as tables, rewritten atomically at the end of each command

The run id hashes the generation identity (model, model args, checkpoint identities, seed, the split's content
hash), so an identical command reopens the same folder and resumes; anything else gets a new run.
A run is `complete` only when every clip of its split is generated, failed or skipped with a reason and scored.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vm_eval.fsutil import atomic_target, atomic_write_json, json_sha256
from vm_eval.store.journal import Journal

STATUS_RUNNING, STATUS_INTERRUPTED, STATUS_PARTIAL, STATUS_COMPLETE = "running", "interrupted", "partial", "complete"


class RunLocked(RuntimeError):
    pass


class RunMismatch(RuntimeError):
    pass


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines the generated audio (and nothing that does not)."""

    dataset: str
    split: str
    model: str
    model_args: dict = field(default_factory=dict)
    seed: int = 0
    manifest_sha256: str = ""
    checkpoints: tuple = ()  # identities {name, path, sha256}; the path is not part of the identity

    def identity(self) -> dict:
        d = asdict(self)
        d["checkpoints"] = [{k: v for k, v in c.items() if k != "path"} for c in self.checkpoints]
        return d

    @property
    def run_id(self) -> str:
        return json_sha256(self.identity())[:12]


def slug(name: str) -> str:
    """A folder name for a model name (`dir:/a/b` -> `dir-b-<hash>`)."""
    if name.startswith("dir:"):
        base = Path(name[4:]).name or "outputs"
        return f"dir-{re.sub(r'[^A-Za-z0-9._-]+', '_', base)}-{json_sha256(name)[:6]}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


class Run:
    def __init__(self, path: str | Path):
        self.dir = Path(path)
        self.generation = Journal(self.dir / "journal" / "generation.jsonl")
        self.scores = Journal(self.dir / "journal" / "scores.jsonl")
        self._lock_fd: int | None = None

    # -- metadata -------------------------------------------------------------------------------------------
    @property
    def meta_path(self) -> Path:
        return self.dir / "run.json"

    def meta(self) -> dict:
        try:
            return json.loads(self.meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def update(self, **fields) -> dict:
        meta = self.meta()
        meta.update(fields)
        atomic_write_json(self.meta_path, meta)
        return meta

    @property
    def status(self) -> str:
        """Stored status, except that a 'running' run whose process is gone shows as 'interrupted'."""
        st = self.meta().get("status", STATUS_INTERRUPTED)
        if st == STATUS_RUNNING and not self.is_locked():
            return STATUS_INTERRUPTED
        return st

    def audio_path(self, clip_id: str) -> Path:
        return self.dir / "audio" / f"{clip_id}.wav"

    # -- locking --------------------------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator["Run"]:
        """Exclusive while a command works on this run; released by the OS if the process dies."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise RunLocked(f"run {self.dir} is being worked on by another process (pid {holder or '?'})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd
        try:
            yield self
        finally:
            self._lock_fd = None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def is_locked(self) -> bool:
        if self._lock_fd is not None:
            return True
        lock = self.dir / ".lock"
        if not lock.exists():
            return False
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    # -- tables ---------------------------------------------------------------------------------------------
    def write_table(self, name: str, records: list[dict]) -> Path:
        import pandas as pd

        path = self.dir / f"{name}.parquet"
        frame = pd.DataFrame.from_records(records)
        if "clip_id" in frame.columns:
            frame = frame.sort_values(list(c for c in ("clip_id", "metric") if c in frame.columns), kind="stable")
        with atomic_target(path) as tmp:
            frame.to_parquet(tmp, index=False)
        return path


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path_for(self, spec: RunSpec) -> Path:
        return self.root / slug(spec.dataset) / slug(spec.split) / slug(spec.model) / spec.run_id

    def open(self, spec: RunSpec, config: dict) -> Run:
        """Create the run's folder, or reopen it after checking the stored identity is the same."""
        run = Run(self.path_for(spec))
        meta = run.meta()
        if meta:
            if meta.get("identity") != spec.identity():
                raise RunMismatch(f"{run.dir} holds a run of another identity; move it away or use another --results")
        else:
            run.dir.mkdir(parents=True, exist_ok=True)
            run.update(run_id=spec.run_id, identity=spec.identity(), config=config, status=STATUS_RUNNING)
        return run

    def runs(self) -> list[Run]:
        if not self.root.is_dir():
            return []
        return [Run(p.parent) for p in sorted(self.root.glob("*/*/*/*/run.json"))]

    def find(self, ref: str) -> Run:
        """A run by id (or unique id prefix) or by folder path."""
        p = Path(ref)
        if (p / "run.json").is_file():
            return Run(p)
        hits = [r for r in self.runs() if r.dir.name.startswith(ref)]
        if len(hits) != 1:
            raise LookupError(f"{'no' if not hits else 'more than one'} run matches {ref!r} under {self.root}")
        return hits[0]
