"""The one schema of run.json, and the only code that reads or writes it.

run.json holds a run's identity, status, provenance, timings and aggregates (see vm_eval.store.run). It is
validated on every read: a file that is not JSON (cut short, say) or JSON of another shape is *damaged*, and
:class:`RunMetaDamaged` names it and says why, so a listing can report that one run and go on with the others,
and `vm-eval run` can keep the file aside and rebuild the run from its journals (which are the source of truth).

Known fields are typed; fields this version does not know are kept as they are (a newer vm-eval may add some).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vm_eval.errors import UserError
from vm_eval.fsutil import atomic_write_json
from vm_eval.store.status import RunStatus


class RunMetaDamaged(UserError):
    """run.json exists but cannot be used: unreadable, not JSON, or JSON of another shape."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"{path} is damaged ({why})")
        self.path, self.why = Path(path), why

    def report(self) -> str:
        """What a listing says about the run it leaves out."""
        return (f"damaged run left out: {self}; the run's next `vm-eval run` keeps the file aside and rebuilds it "
                "from the journals")


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (statuses as their strings, NaN as null), unknown fields included."""
        return self.model_dump(mode="json")


class Identity(_Model):
    """What determines the generated audio (vm_eval.store.run.RunSpec.identity); its hash is the run id."""

    dataset: str
    split: str
    model: str
    model_args: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    manifest_sha256: str = ""
    checkpoints: list[dict[str, Any]] = Field(default_factory=list)


class FeatureCacheCounts(_Model):
    hits: int = 0
    misses: int = 0


class Timings(_Model):
    """Wall seconds, summed over every command that worked on the run (resumes included)."""

    generation_s: float = 0.0
    scoring_s: float = 0.0
    last_scoring_s: float | None = None  # the last command's scoring alone (a --rescore measures it)
    feature_cache: FeatureCacheCounts = Field(default_factory=FeatureCacheCounts)  # the last command's


class Recovery(_Model):
    """A damaged run.json kept aside by `vm-eval run` before it rebuilt this one from the journals."""

    kept_as: str
    why: str
    at: str


class RunMeta(_Model):
    run_id: str
    identity: Identity
    status: RunStatus = RunStatus.INTERRUPTED
    config: dict[str, Any] = Field(default_factory=dict)
    last_command: dict[str, Any] | None = None
    dataset: str | None = None
    split: str | None = None
    model: str | None = None
    model_info: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    n_clips: int | None = None
    checkpoints: list[dict[str, Any]] = Field(default_factory=list)
    code: dict[str, Any] | None = None
    packages: dict[str, Any] | None = None
    environment: dict[str, Any] | None = None
    executor: dict[str, Any] | None = None
    resampler: str | None = None
    created: str | None = None
    updated: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    aggregates: dict[str, dict[str, Any]] = Field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)
    skipped_metrics: dict[str, str] = Field(default_factory=dict)
    timings: Timings = Field(default_factory=Timings)
    recovered: list[Recovery] = Field(default_factory=list)


def read_meta(path: str | Path) -> RunMeta | None:
    """The validated run.json at `path`; None when there is none; RunMetaDamaged when it is unusable."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise RunMetaDamaged(p, f"unreadable: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise RunMetaDamaged(p, f"not valid JSON ({len(text)} bytes, {e.msg} at line {e.lineno}): cut short?") \
            from None
    if not isinstance(data, dict):
        raise RunMetaDamaged(p, f"JSON {type(data).__name__}, not an object")
    try:
        return RunMeta.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "top level"
        raise RunMetaDamaged(p, f"{e.error_count()} schema error(s), first at {where}: {first['msg']}") from None


def write_meta(path: str | Path, meta: RunMeta) -> Path:
    """Validate and write run.json atomically (a reader sees the old file or the new one, never half)."""
    return atomic_write_json(path, RunMeta.model_validate(meta.as_dict()).as_dict())


_CREATED = re.compile(r'^  "created": "([^"\\]+)"', re.MULTILINE)


def salvage_created(text: str) -> str | None:
    """The top-level `created` time of a damaged run.json's text when it survived (run.json is written with sorted
    keys at indent 2, so a file cut short keeps its early keys), else None."""
    m = _CREATED.search(text)
    return m.group(1) if m else None
