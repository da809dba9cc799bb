"""Dataset manifests: one row per clip, stored as JSONL or parquet, paths relative to the manifest's folder.

A clip is the span [start, end) seconds of a source video. Its reference music (optional) is an audio file on
the same timeline as the video, so the clip's reference is that file's span [start, end) too.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vm_eval.errors import UserError

CATEGORIES = ("promo", "commercial", "compilation", "other")
SOURCES = ("real", "ai-generated")
MAX_CLIP_SECONDS = 30.0  # MusicGen's window; longer sources are cut into clips by `vm-eval data build`

Category = Literal["promo", "commercial", "compilation", "other"]
Source = Literal["real", "ai-generated"]


class ManifestError(UserError):
    """A manifest cannot be read or its rows are invalid; `problems` lists every one found."""

    def __init__(self, path: str | Path, problems: Sequence[str]):
        self.path = str(path)
        self.problems = list(problems)
        head = f"{self.path}: {len(self.problems)} problem(s)"
        super().__init__(head + "".join(f"\n  - {p}" for p in self.problems))


class Clip(BaseModel):
    """One clip of a dataset (times in seconds within the source video)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
    video: str
    reference: str | None = None
    start: float = Field(ge=0.0, allow_inf_nan=False)
    end: float = Field(allow_inf_nan=False)
    split: str = Field(min_length=1)
    category: Category = "other"
    source: Source = "real"
    caption: str | None = None

    @field_validator("reference", "caption", mode="before")
    @classmethod
    def _empty_is_none(cls, v):
        if v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip()):
            return None
        return v

    @model_validator(mode="after")
    def _span(self) -> "Clip":
        if self.end <= self.start:
            raise ValueError(f"zero-length clip: end ({self.end}) must be greater than start ({self.start})")
        return self

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Manifest:
    """Clips plus the folder their relative paths resolve against."""

    path: Path
    clips: list[Clip]
    name: str = ""
    _by_id: dict[str, Clip] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {c.id: c for c in self.clips}
        if not self.name:
            self.name = self.path.parent.name if self.path.stem in ("manifest", "clips") else self.path.stem

    @property
    def root(self) -> Path:
        return self.path.parent

    def resolve(self, rel: str | None) -> Path | None:
        if rel is None:
            return None
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    def splits(self) -> list[str]:
        return sorted({c.split for c in self.clips})

    def split(self, name: str) -> list[Clip]:
        """Clips of one split sorted by id (the order every stage and aggregate uses)."""
        chosen = sorted((c for c in self.clips if c.split == name), key=lambda c: c.id)
        if not chosen:
            raise ManifestError(self.path, [f"split {name!r} has no clips; splits here: {', '.join(self.splits())}"])
        return chosen

    def __getitem__(self, clip_id: str) -> Clip:
        return self._by_id[clip_id]

    def content_hash(self, clips: Iterable[Clip] | None = None, file_hash=None) -> str:
        """sha256 over the rows (sorted by id) and the content of every file they point to.

        `file_hash(path) -> hex` defaults to :func:`vm_eval.fsutil.file_sha256` (memoised by stat).
        """
        if file_hash is None:
            from vm_eval.fsutil import file_sha256 as file_hash
        h = hashlib.sha256()
        for c in sorted(clips if clips is not None else self.clips, key=lambda c: c.id):
            row = c.model_dump()
            for key in ("video", "reference"):
                p = self.resolve(row[key])
                row[key + "_sha256"] = file_hash(p) if p is not None and p.is_file() else None
            h.update(json.dumps(row, sort_keys=True).encode())
        return h.hexdigest()


def _read_rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pandas as pd

        try:
            return pd.read_parquet(path).to_dict(orient="records")
        except Exception as e:
            raise ManifestError(path, [f"cannot read parquet ({e})"]) from e
    rows, problems = [], []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(path, [f"not UTF-8 text ({e})"]) from e
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"line {i}: not valid JSON ({e.msg})")
            continue
        if not isinstance(row, dict):
            problems.append(f"line {i}: expected a JSON object")
            continue
        rows.append(row)
    if problems:
        raise ManifestError(path, problems)
    return rows


def parse_rows(path: Path, rows: list[dict]) -> tuple[list[Clip], list[str]]:
    """Validate rows; returns the valid clips and one message per problem (all of them, not the first)."""
    clips, problems, seen = [], [], {}
    for i, row in enumerate(rows, 1):
        label = f"row {i}" + (f" (id {row.get('id')!r})" if isinstance(row, dict) and row.get("id") else "")
        try:
            clip = Clip.model_validate(row)
        except ValidationError as e:
            for err in e.errors():
                loc = ".".join(str(x) for x in err["loc"]) or "row"
                problems.append(f"{label}: {loc}: {err['msg']}")
            continue
        if clip.id in seen:
            problems.append(f"{label}: duplicate id (also row {seen[clip.id]})")
            continue
        seen[clip.id] = i
        clips.append(clip)
    if not rows:
        problems.append("manifest has no rows")
    return clips, problems


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest (.jsonl or .parquet); raises :class:`ManifestError` listing every problem."""
    p = Path(path)
    if p.is_dir():
        candidates = [p / "manifest.jsonl", p / "manifest.parquet"]
        p = next((c for c in candidates if c.is_file()), candidates[0])
    if not p.is_file():
        raise ManifestError(p, ["manifest file not found"])
    if p.suffix not in (".jsonl", ".parquet"):
        raise ManifestError(p, [f"unknown manifest format {p.suffix!r}: use .jsonl or .parquet"])
    clips, problems = parse_rows(p, _read_rows(p))
    if problems:
        raise ManifestError(p, problems)
    return Manifest(p.resolve(), clips)


def save_manifest(path: str | Path, clips: Iterable[Clip]) -> Path:
    """Write clips sorted by id as JSONL or parquet (by suffix), atomically."""
    from vm_eval.fsutil import atomic_target

    p = Path(path)
    rows = [c.model_dump() for c in sorted(clips, key=lambda c: c.id)]
    with atomic_target(p) as tmp:
        if p.suffix == ".parquet":
            import pandas as pd

            pd.DataFrame(rows).to_parquet(tmp, index=False)
        else:
            Path(tmp).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return p
