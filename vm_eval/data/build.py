"""`vm-eval data build`: turn a folder of videos (DVMSet- or BGM909-style) into a clip manifest.

Each source video is cut into equal clips of at most `max_clip_s` seconds; its own soundtrack, written once as
`<manifest dir>/music/<source id>.wav`, is the reference music of its clips (same timeline as the video).
Splits are drawn per source video from a sha256 of its id, so clips of one video never straddle splits.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vm_eval.data.manifest import CATEGORIES, MAX_CLIP_SECONDS, SOURCES, Clip, save_manifest
from vm_eval.media import MediaError, audio_stats, decode_frames, load_audio, probe_video, write_wav
from vm_eval.errors import UserError

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
SPLITS = ("train", "val", "test")
MUSIC_DIR = "music"
_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]+")


class BuildError(UserError, ValueError):
    """The dataset cannot be built (bad arguments, bad categories CSV, id collision, nothing usable)."""


@dataclass
class BuildReport:
    """What `build_dataset` wrote: the manifest path, its clips, and the videos skipped as (file, reason)."""

    manifest: Path
    clips: list[Clip]
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Meta:
    category: str
    caption: str | None = None


# ---------------------------------------------------------------------------------------------- pure helpers


def find_videos(video_dir: str | Path) -> list[Path]:
    """Video files under `video_dir` (recursive, by suffix, case-insensitive), sorted by relative path.

    Hidden files and folders (name starting with '.') are ignored: they are OS litter such as macOS '._x.mp4'.
    """
    root = Path(video_dir)
    found = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.suffix.lower() in VIDEO_EXTS and p.is_file() and not any(s.startswith(".") for s in rel.parts):
            found.append(p)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def source_id(rel: str | Path) -> str:
    """A Clip-id-safe name for a video path relative to VIDEO_DIR: suffix dropped, folders joined by '-'.

    Accents are folded to ASCII; any other run of unsafe characters becomes '_'.
    """
    rel = Path(rel)
    parts = []
    for part in rel.with_suffix("").parts:
        ascii_part = unicodedata.normalize("NFKD", part).encode("ascii", "ignore").decode()
        clean = _UNSAFE.sub("_", ascii_part).strip("._-")
        if clean:
            parts.append(clean)
    sid = "-".join(parts)
    if not sid:  # nothing ASCII survived (e.g. a CJK-only name): a stable name derived from the path
        sid = "v" + hashlib.sha256(rel.as_posix().encode()).hexdigest()[:10]
    return sid


def clip_spans(duration_s: float, max_clip_s: float) -> list[tuple[float, float]]:
    """Cut [0, duration_s) into n = ceil(duration / max_clip_s) equal spans (seconds, rounded to ms).

    Equal spans rather than max-length ones plus a remainder, so there is never a tiny tail clip. The end is
    floored to the millisecond so no span reaches past the video.
    """
    if max_clip_s <= 0:
        raise ValueError(f"max_clip_s must be positive, got {max_clip_s}")
    total = math.floor(duration_s * 1000 + 1e-6) / 1000
    if total <= 0:
        return []
    n = max(1, math.ceil(total / max_clip_s - 1e-9))
    while True:
        bounds = [round(total * k / n, 3) for k in range(n + 1)]
        spans = list(zip(bounds[:-1], bounds[1:]))
        # ms rounding can push one span a hair past the limit; one more cut fixes it.
        if all(b - a <= max_clip_s + 1e-9 for a, b in spans):
            return spans
        n += 1


def assign_split(sid: str, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> str:
    """train/val/test for a source id: a sha256 point in [0, 1) against the cumulative ratios.

    sha256, not hash(): the same id lands in the same split on every machine and Python version.
    """
    weights = _check_ratios(ratios)
    u = int(hashlib.sha256(sid.encode()).hexdigest()[:16], 16) / 2**64
    acc = 0.0
    for name, w in zip(SPLITS, weights):
        acc += w
        if u < acc:
            return name
    return next(name for name, w in reversed(list(zip(SPLITS, weights))) if w > 0)  # float rounding at u ~ 1


def _check_ratios(ratios: Sequence[float]) -> list[float]:
    r = [float(x) for x in ratios]
    if len(r) != 3 or any(not math.isfinite(x) or x < 0 for x in r) or sum(r) <= 0:
        raise BuildError("split_ratios must be three non-negative numbers (train, val, test) with a positive "
                         f"sum, got {tuple(ratios)}")
    return [x / sum(r) for x in r]


def parse_category(name: str) -> str | None:
    """A category from a folder or CSV value, case-insensitive, plurals accepted ('Promos' -> 'promo').

    None when the name is not a category.
    """
    v = name.strip().lower()
    if v in CATEGORIES:
        return v
    if v.endswith("s") and v[:-1] in CATEGORIES:
        return v[:-1]
    return None


# ---------------------------------------------------------------------------------------- categories CSV


def read_categories_csv(csv_path: str | Path, rel_paths: Sequence[str]) -> dict[str, _Meta]:
    """Map each video (relative posix path) to its category/caption from the CSV.

    A row's `video` is a path relative to VIDEO_DIR (with or without suffix) or a file stem/name; a stem that
    matches several videos is an error, as is an unknown category or two rows that disagree about one video.
    """
    p = Path(csv_path)
    if not p.is_file():
        raise BuildError(f"{p}: categories CSV not found")
    exact: dict[str, list[str]] = {}  # relative path, with or without suffix: wins over a bare name
    loose: dict[str, list[str]] = {}  # file name or stem
    for rel in rel_paths:
        r = Path(rel)
        for table, keys in ((exact, {rel, r.with_suffix("").as_posix()}), (loose, {r.name, r.stem})):
            for key in keys:
                table.setdefault(key.casefold(), []).append(rel)
    out: dict[str, _Meta] = {}
    origin: dict[str, int] = {}
    unmatched = 0
    with open(p, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: spreadsheets prepend a BOM
        reader = csv.DictReader(f)
        cols = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
        missing = [c for c in ("video", "category") if c not in cols]
        if missing:
            found = ", ".join(cols) or "none"
            raise BuildError(f"{p}: missing column(s) {', '.join(missing)}; found {found}")
        for row in reader:
            line = reader.line_num
            video = (row.get(cols["video"]) or "").strip().replace("\\", "/").removeprefix("./")
            raw_cat = (row.get(cols["category"]) or "").strip()
            caption = ((row.get(cols["caption"]) or "").strip() or None) if "caption" in cols else None
            if not video:
                raise BuildError(f"{p}: line {line}: empty 'video' value")
            cat = parse_category(raw_cat) if raw_cat else None
            if raw_cat and cat is None:
                raise BuildError(f"{p}: line {line} (video {video!r}): invalid category {raw_cat!r}; "
                                 f"expected one of {', '.join(CATEGORIES)}")
            targets = exact.get(video.casefold()) or loose.get(video.casefold(), [])
            if len(targets) > 1:
                raise BuildError(f"{p}: line {line}: {video!r} matches several videos "
                                 f"({', '.join(targets)}); give the path relative to the video folder")
            if not targets:
                unmatched += 1
                continue
            meta = _Meta(cat or "", caption)  # "" = no category given: fall back to the folder
            prev = out.get(targets[0])
            if prev is not None and prev != meta:
                raise BuildError(f"{p}: lines {origin[targets[0]]} and {line} disagree about {targets[0]}")
            out[targets[0]], origin[targets[0]] = meta, line
    if unmatched:
        log.warning("%s: %d row(s) match no video in the folder", p, unmatched)
    return out


# ---------------------------------------------------------------------------------------------- build


def _manifest_path(out: str | Path) -> Path:
    p = Path(out)
    if p.suffix in (".jsonl", ".parquet"):
        return p
    if p.is_dir() or not p.suffix:
        return p / "manifest.jsonl"
    raise BuildError(f"{p}: unknown manifest format {p.suffix!r}: use .jsonl or .parquet")


def _rel_for_manifest(path: Path, root: Path) -> str:
    """`path` relative to the manifest folder if both lie under one folder (not the root), else absolute."""
    a, r = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    try:
        common = Path(os.path.commonpath([a, r]))
        if common != Path(common.anchor):
            return Path(os.path.relpath(a, r)).as_posix()
    except ValueError:  # different drives on Windows
        pass
    return a.as_posix()


def _usable_video(path: Path) -> tuple[float, bool]:
    """(duration s, has audio) after checking the first frame decodes; raises MediaError naming the file."""
    info = probe_video(path)
    if info.duration_s <= 0:
        raise MediaError(path, "zero-length video (duration 0 s)")
    head = min(info.duration_s, 1.0)
    decode_frames(path, fps=1.0 / head, size=(32, 32), start_s=0.0, end_s=head)
    return info.duration_s, info.has_audio


def build_dataset(
    video_dir: str | Path,
    out: str | Path,
    source: str = "real",
    with_reference: bool = True,
    categories_csv: str | Path | None = None,
    split_ratios: Sequence[float] = (0.8, 0.1, 0.1),
    max_clip_s: float = MAX_CLIP_SECONDS,
    progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Build (or rebuild, identically) a manifest of clips of at most `max_clip_s` seconds from `video_dir`.

    Undecodable or zero-length videos are skipped with their reason in the report; a video without audio, or
    with a silent track, gets no reference (and so does any clip whose reference span is silent).
    """
    import av  # lazily, like media/: the CLI should start fast

    root = Path(video_dir)
    if not root.is_dir():
        raise BuildError(f"{root}: video folder not found")
    if source not in SOURCES:
        raise BuildError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if not 0 < max_clip_s <= MAX_CLIP_SECONDS:
        raise BuildError(f"max_clip_s must be in (0, {MAX_CLIP_SECONDS}] seconds, got {max_clip_s}")
    _check_ratios(split_ratios)
    manifest = _manifest_path(out)
    mroot = manifest.parent

    videos = find_videos(root)
    if not videos:
        raise BuildError(f"{root}: no video files ({' '.join(VIDEO_EXTS)}) found")
    rels = [v.relative_to(root).as_posix() for v in videos]
    sids = [source_id(r) for r in rels]
    # Case-folded: ids name files (music/<id>.wav, generated outputs), also on case-insensitive file systems.
    seen: dict[str, str] = {}
    for rel, sid in zip(rels, sids):
        other = seen.setdefault(sid.casefold(), rel)
        if other != rel:
            raise BuildError(f"videos {other!r} and {rel!r} map to the same id {sid!r}; rename one of them")
    metas = read_categories_csv(categories_csv, rels) if categories_csv is not None else {}

    clips: list[Clip] = []
    skipped: list[tuple[str, str]] = []
    for i, (path, rel, sid) in enumerate(zip(videos, rels, sids)):
        try:
            clips.extend(_clips_of(path, rel, sid, metas.get(rel), mroot, source, with_reference,
                                   split_ratios, max_clip_s))
        except MediaError as e:
            skipped.append((str(path), e.problem))
        except av.FFmpegError as e:  # one media/ did not wrap (decode_frames' seek): skip, don't crash
            skipped.append((str(path), f"{type(e).__name__}: {e}"))
        if progress is not None:
            progress(i + 1, len(videos))
    if not clips:
        detail = "".join(f"\n  - {f}: {why}" for f, why in skipped[:20])
        raise BuildError(f"{root}: none of the {len(videos)} video(s) is usable{detail}")
    save_manifest(manifest, clips)
    return BuildReport(manifest, sorted(clips, key=lambda c: c.id), skipped)


def _clips_of(path: Path, rel: str, sid: str, meta: _Meta | None, mroot: Path, source: str,
              with_reference: bool, ratios: Sequence[float], max_clip_s: float) -> list[Clip]:
    duration, has_audio = _usable_video(path)
    spans = clip_spans(duration, max_clip_s)
    if not spans:
        raise MediaError(path, f"zero-length video (duration {duration:.4f} s)")

    folder = Path(rel).parts[0] if len(Path(rel).parts) > 1 else ""
    category = (meta.category if meta else "") or parse_category(folder) or "other"
    caption = meta.caption if meta else None

    refs: list[str | None] = [None] * len(spans)
    if with_reference and has_audio:
        try:
            audio = load_audio(path)
        except MediaError as e:
            raise MediaError(path, f"audio track cannot be decoded ({e.problem}); "
                                   "rebuild with --no-reference to use it without reference music") from e
        if audio.duration_s < duration:  # keep the video's timeline: a short track ends in silence
            audio = audio.fit_length(duration)
        wav = f"{MUSIC_DIR}/{sid}.wav"
        refs = [None if audio_stats(audio.crop(a, b)).silent else wav for a, b in spans]
        if any(refs):
            write_wav(mroot / wav, audio)

    video = _rel_for_manifest(path, mroot)
    split = assign_split(sid, ratios)
    return [
        Clip(id=f"{sid}-{k:03d}", video=video, reference=ref, start=a, end=b, split=split,
             category=category, source=source, caption=caption)
        for k, ((a, b), ref) in enumerate(zip(spans, refs))
    ]
