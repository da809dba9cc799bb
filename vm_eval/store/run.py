"""One folder per run: `<results>/<dataset>/<split>/<model>/<run-id>/`.

    run.json                   status, identity, config, provenance, timings, aggregates (atomic rewrite)
    audio/<clip id>.wav        generated audio at the model's native rate and channel count
    journal/generation.jsonl   one line per clip once generated, failed or skipped (resume source of truth)
    journal/scores.jsonl       one line per (clip, metric identity) once scored
    clips.parquet, scores.parquet   the journals as tables, rewritten atomically at the end of each command

The run id hashes the generation identity (model, model args, checkpoint identities, seed, the split's content
hash), so an identical command reopens the same folder and resumes; anything else gets a new run.
A run is `complete` only when every clip of its split is generated, failed or skipped with a reason and scored.
run.json is read and written only through vm_eval.store.schema; a damaged one (cut short, another shape) is
reported by readers and, when a command reopens the run, kept aside as `run.json.damaged-<time>` while the run is
rebuilt from its journals (which alone say what work is finished).
"""
from __future__ import annotations

import fcntl
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vm_eval.errors import UserError
from vm_eval.fsutil import atomic_target, json_sha256
from vm_eval.store import provenance
from vm_eval.store.journal import Journal
from vm_eval.store.schema import Recovery, RunMeta, RunMetaDamaged, read_meta, salvage_created, write_meta
from vm_eval.store.status import RunStatus, Status


class RunLocked(UserError, RuntimeError):
    pass


class RunMismatch(UserError, RuntimeError):
    pass


class RunNotFound(UserError, LookupError):
    """No stored run, or more than one, matches what the user named."""


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
        self.sets = Journal(self.dir / "journal" / "sets.jsonl")
        self._lock_fd: int | None = None

    # -- metadata -------------------------------------------------------------------------------------------
    @property
    def meta_path(self) -> Path:
        return self.dir / "run.json"

    def record(self) -> RunMeta | None:
        """The validated run.json (None before the first write); raises RunMetaDamaged for a damaged one."""
        return read_meta(self.meta_path)

    def meta(self) -> dict:
        """run.json as plain values ({} before the first write); raises RunMetaDamaged for a damaged one."""
        rec = self.record()
        return rec.as_dict() if rec is not None else {}

    def update(self, **fields) -> dict:
        meta = {**self.meta(), **fields}
        write_meta(self.meta_path, RunMeta.model_validate(meta))
        return meta

    @property
    def status(self) -> RunStatus:
        """Stored status, except that a 'running' run whose process is gone shows as 'interrupted'."""
        return self.live_status(self.meta())

    def live_status(self, meta: dict) -> RunStatus:
        """:attr:`status` from run.json values already read (`meta()`), without reading the file again."""
        st = RunStatus(meta.get("status", RunStatus.INTERRUPTED))
        if st == RunStatus.RUNNING and not self.is_locked():
            return RunStatus.INTERRUPTED
        return st

    def counts(self, meta: dict, status: RunStatus) -> dict[str, int]:
        """The run's clip counts: as its last finished command stored them, or, while it is running or after it
        was interrupted, with the generation counts its journal holds so far."""
        counts = dict(meta.get("counts", {}))
        if status in (RunStatus.RUNNING, RunStatus.INTERRUPTED):
            recs = self.generation.latest("clip_id").values()
            counts.update({s.value: sum(r.get("status") == s for r in recs) for s in Status})
            n_clips = meta.get("n_clips")
            if n_clips is not None:
                counts.update(clips=n_clips, pending=max(0, n_clips - sum(counts[s.value] for s in Status)))
        return counts

    def repair_journals(self, log: Callable[[str], None] | None = None) -> int:
        """Move torn lines out of every journal (see Journal.repair), saying so once (`log`, default stderr);
        call it while holding the lock."""
        log = log or _stderr
        moved = 0
        for j in (self.generation, self.scores, self.sets):
            n = j.repair()
            if n:
                log(f"{j.path}: {n} torn line(s) (a write cut short by a killed process) moved to "
                    f"{j.path.name}.torn; that work is redone")
            moved += n
        return moved

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

    def open(self, spec: RunSpec, config: dict, log: Callable[[str], None] | None = None) -> Run:
        """Create the run's folder, or reopen it after checking the stored identity is the same. A damaged
        run.json is kept aside (``run.json.damaged-<time>``) and the run rebuilt from its journals, saying so."""
        log = log or _stderr
        run = Run(self.path_for(spec))
        try:
            meta = run.record()
        except RunMetaDamaged as e:
            with run.lock():  # never move a file another command is working on
                kept = run.meta_path.with_name(f"run.json.damaged-{provenance.now().replace(':', '')}")
                created = salvage_created(run.meta_path.read_text(errors="replace"))
                os.replace(run.meta_path, kept)
                write_meta(run.meta_path, RunMeta(
                    run_id=spec.run_id, identity=spec.identity(), config=config, status=RunStatus.RUNNING,
                    created=created, recovered=[Recovery(kept_as=kept.name, why=e.why, at=provenance.now())]))
            log(f"{e}; kept it as {kept.name} and rebuilt the run from its journals (finished clips are not "
                f"redone; timings before this command are lost{'' if created else ', and its creation time'})")
            return run
        if meta is not None:
            if meta.identity.model_dump() != spec.identity():
                raise RunMismatch(f"{run.dir} holds a run of another identity; move it away or use another --results")
        else:
            run.dir.mkdir(parents=True, exist_ok=True)
            run.update(run_id=spec.run_id, identity=spec.identity(), config=config, status=RunStatus.RUNNING)
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
            raise RunNotFound(f"{'no' if not hits else 'more than one'} run matches {ref!r} under {self.root}")
        return hits[0]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
