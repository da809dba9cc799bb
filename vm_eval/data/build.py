"""`vm-eval data build`: turn a folder of videos (DVMSet- or BGM909-style) into a clip manifest.

Each source video is cut into equal clips of at most `max_clip_s` seconds, or into fixed windows of `window_s`
seconds every `hop_s`; its own soundtrack, written once as `<manifest dir>/music/<source id>.wav`, is the
reference music of its clips (same timeline as the video). Splits are drawn per source video from a sha256 of
its id, so clips of one video never straddle splits, unless one split is named for every clip.
"""
from __future__ import annotations

import csv
import hashlib
import itertools
import logging
import math
import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vm_eval.data.check import decoded_extent, describe_extent, truncated_before
from vm_eval.data.manifest import CATEGORIES, MAX_CLIP_SECONDS, SOURCES, Clip, save_manifest
from vm_eval.media import MediaError, audio_stats, load_audio, probe_video, write_wav
from vm_eval.errors import UserError

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
SPLITS = ("train", "val", "test")
DEFAULT_SPLIT_RATIOS = (0.8, 0.1, 0.1)
#: Container durations are rounded (BGM909's 30 s videos report 30.04 s): a source at most this many seconds
#: longer than a whole number of clips is trimmed to them instead of being cut into one clip more.
WINDOW_TOLERANCE_S = 0.5
MUSIC_DIR = "music"
_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]+")
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")  # it names a results folder


class BuildError(UserError, ValueError):
    """The dataset cannot be built (bad arguments, bad categories CSV, id collision, nothing usable)."""


@dataclass(frozen=True)
class Cutting:
    """How a source becomes clips (seconds): equal clips of at most `max_clip_s` (:func:`clip_spans`) or, when
    `window_s` is set, windows of `window_s` every `hop_s` (:func:`window_spans`); `tolerance_s` absorbs
    rounded container durations in both."""

    max_clip_s: float = MAX_CLIP_SECONDS
    window_s: float | None = None
    hop_s: float | None = None
    tolerance_s: float = WINDOW_TOLERANCE_S

    def __post_init__(self) -> None:
        name, length = ("max_clip_s", self.max_clip_s) if self.window_s is None else ("window_s", self.window_s)
        if not 0 < length <= MAX_CLIP_SECONDS:
            raise BuildError(f"{name} must be in (0, {MAX_CLIP_SECONDS}] seconds, got {length}")
        if self.hop_s is not None and self.window_s is None:
            raise BuildError("hop_s needs window_s (a hop between fixed windows)")
        if self.hop_s is not None and not (math.isfinite(self.hop_s) and self.hop_s > 0):
            raise BuildError(f"hop_s must be a positive number of seconds, got {self.hop_s}")
        _check_tolerance(self.tolerance_s, length)

    def spans(self, duration_s: float) -> list[tuple[float, float]]:
        if self.window_s is None:
            return clip_spans(duration_s, self.max_clip_s, self.tolerance_s)
        return window_spans(duration_s, self.window_s, self.hop_s, self.tolerance_s)

    def none_fit(self, duration_s: float) -> str:
        """Why a source of `duration_s` seconds gives no clip."""
        if self.window_s is None:
            return f"zero-length video (duration {duration_s:.4f} s)"
        return f"shorter than one {self.window_s:g} s window ({duration_s:.3f} s)"


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


def _floor_ms(seconds: float) -> float:
    """Floored to the millisecond, so no span reaches past the video."""
    return math.floor(seconds * 1000 + 1e-6) / 1000


def _check_tolerance(tolerance_s: float, length_s: float) -> None:
    if not (math.isfinite(tolerance_s) and 0 <= tolerance_s < length_s):
        raise BuildError(f"the window tolerance must be in [0, {length_s:g}) seconds (below the clip length), "
                         f"got {tolerance_s}")


def clip_spans(duration_s: float, max_clip_s: float,
               tolerance_s: float = WINDOW_TOLERANCE_S) -> list[tuple[float, float]]:
    """Cut [0, duration_s) into equal spans of at most `max_clip_s` seconds (rounded to ms).

    n = ceil(duration / max_clip_s) equal spans rather than max-length ones plus a remainder, so there is never
    a tiny tail clip; but a source at most `tolerance_s` longer than k >= 1 whole clips is trimmed to k clips of
    exactly `max_clip_s` (a 30.04 s video is one 30 s clip, not two of 15.02 s).
    """
    if max_clip_s <= 0:
        raise ValueError(f"max_clip_s must be positive, got {max_clip_s}")
    _check_tolerance(tolerance_s, max_clip_s)
    total = _floor_ms(duration_s)
    if total <= 0:
        return []
    whole = math.floor(total / max_clip_s + 1e-9)
    if whole >= 1 and total - whole * max_clip_s <= tolerance_s + 1e-9:
        total = whole * max_clip_s
    n = max(1, math.ceil(total / max_clip_s - 1e-9))
    while True:
        bounds = [round(total * k / n, 3) for k in range(n + 1)]
        spans = list(zip(bounds[:-1], bounds[1:]))
        # ms rounding can push one span a hair past the limit; one more cut fixes it.
        if all(b - a <= max_clip_s + 1e-9 for a, b in spans):
            return spans
        n += 1


def window_spans(duration_s: float, window_s: float, hop_s: float | None = None,
                 tolerance_s: float = WINDOW_TOLERANCE_S) -> list[tuple[float, float]]:
    """Windows [k * hop_s, k * hop_s + window_s) of exactly `window_s` seconds (ms-rounded; hop_s defaults to
    window_s) while they fit in [0, duration_s).

    A tail shorter than a window is dropped, except that a last window missing at most `tolerance_s` is kept,
    ending at the video's end (899 frames at 29.97 fps last 29.997 s and still give three 10 s windows).
    """
    hop = window_s if hop_s is None else hop_s
    if window_s <= 0 or hop <= 0:
        raise ValueError(f"window_s and hop_s must be positive, got {window_s}, {hop}")
    _check_tolerance(tolerance_s, window_s)
    total = _floor_ms(duration_s)
    spans: list[tuple[float, float]] = []
    for k in itertools.count():
        a = round(k * hop, 3)
        b = round(a + window_s, 3)
        if b > total + tolerance_s + 1e-9:
            break
        spans.append((a, min(b, total)))
        if b >= total:  # reaches the end: a later window would hold only what this one does
            break
    return spans


def parse_split_ratios(text: str) -> tuple[float, ...]:
    """'TRAIN,VAL,TEST' proportions as `--split-ratios` takes them: '0.8,0.1,0.1' or '8,1,1' (normalised)."""
    try:
        ratios = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise BuildError(f"split ratios must be three numbers TRAIN,VAL,TEST, got {text!r}") from None
    _check_ratios(ratios)
    return ratios


def assign_split(sid: str, ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS) -> str:
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


def _usable_video(path: Path, cache: Path | None) -> tuple[float, bool]:
    """(duration s, has audio) of a video that decodes to its end; raises MediaError naming the file.

    A truncated video (decoding stops before the duration its header declares) is refused, not shortened: it
    is a damaged copy to fetch again, and its audio track is usually cut short too.
    """
    info = probe_video(path)
    if info.duration_s <= 0:
        raise MediaError(path, "zero-length video (duration 0 s)")
    extent = decoded_extent(path, cache)
    if truncated_before(extent, info.duration_s):
        raise MediaError(path, f"truncated video: it {describe_extent(extent, info.duration_s)}")
    return info.duration_s, info.has_audio


def build_dataset(
    video_dir: str | Path,
    out: str | Path,
    source: str = "real",
    with_reference: bool = True,
    categories_csv: str | Path | None = None,
    split_ratios: Sequence[float] | None = None,
    max_clip_s: float = MAX_CLIP_SECONDS,
    progress: Callable[[int, int], None] | None = None,
    split: str | None = None,
    window_s: float | None = None,
    hop_s: float | None = None,
    window_tolerance_s: float = WINDOW_TOLERANCE_S,
    cache: Path | None = None,
) -> BuildReport:
    """Build (or rebuild, identically) a manifest of clips from `video_dir`, cut as :class:`Cutting` says.

    `split` puts every clip in that split; otherwise each source's split is drawn by :func:`assign_split` with
    `split_ratios` (default :data:`DEFAULT_SPLIT_RATIOS`). Undecodable, truncated or zero-length videos are
    skipped with their reason in the report; a video without audio, or with a silent track, gets no reference
    (and so does any clip whose reference span is silent). `cache`: folder of the decode probes that
    `data check` reuses (:func:`vm_eval.data.check.decoded_extent`; None: not cached).
    """
    import av  # lazily, like media/: the CLI should start fast

    root = Path(video_dir)
    if not root.is_dir():
        raise BuildError(f"{root}: video folder not found")
    if source not in SOURCES:
        raise BuildError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    cutting = Cutting(max_clip_s, window_s, hop_s, window_tolerance_s)
    if split is not None:
        if split_ratios is not None:
            raise BuildError("give split (one split for every clip) or split_ratios, not both")
        if not _SPLIT_NAME.match(split):
            raise BuildError(f"split name {split!r} must match {_SPLIT_NAME.pattern} (it names a folder)")
    ratios = DEFAULT_SPLIT_RATIOS if split_ratios is None else split_ratios
    _check_ratios(ratios)
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
                                   split or assign_split(sid, ratios), cutting, cache))
        except MediaError as e:
            skipped.append((str(path), e.problem))
        except av.FFmpegError as e:  # one media/ did not wrap: skip, don't crash
            skipped.append((str(path), f"{type(e).__name__}: {e}"))
        if progress is not None:
            progress(i + 1, len(videos))
    if not clips:
        detail = "".join(f"\n  - {f}: {why}" for f, why in skipped[:20])
        raise BuildError(f"{root}: none of the {len(videos)} video(s) is usable{detail}")
    save_manifest(manifest, clips)
    return BuildReport(manifest, sorted(clips, key=lambda c: c.id), skipped)


def _clips_of(path: Path, rel: str, sid: str, meta: _Meta | None, mroot: Path, source: str,
              with_reference: bool, split: str, cutting: Cutting, cache: Path | None) -> list[Clip]:
    duration, has_audio = _usable_video(path, cache)
    spans = cutting.spans(duration)
    if not spans:
        raise MediaError(path, cutting.none_fit(duration))

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
    return [
        Clip(id=f"{sid}-{k:03d}", video=video, reference=ref, start=a, end=b, split=split,
             category=category, source=source, caption=caption)
        for k, ((a, b), ref) in enumerate(zip(spans, refs))
    ]
