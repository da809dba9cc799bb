"""`vm-eval data check`: validate a manifest and every file it points to, reporting all problems at once.

Each distinct video and reference file is probed (and decoded) once, however many clips share it. A video is
decoded to its end to find truncated files; that answer is cached by the file's content hash, so a large set
is decoded once, not at every check.
"""
from __future__ import annotations

import json
import logging
import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from vm_eval.data.manifest import Clip, Manifest, ManifestError, _read_rows, parse_rows
from vm_eval.fsutil import atomic_write_json, file_sha256
from vm_eval.media import MediaError, audio_stats, decode_frames, load_audio, probe_video
from vm_eval.media.video import DecodedExtent, probe_decodable
from vm_eval.store.feature_cache import ExtractorId

log = logging.getLogger(__name__)

TOLERANCE_S = 0.05  # container durations are approximate (AAC padding, frame rounding)
#: Decoding may stop this much (s) plus one frame short of a span before the video counts as truncated.
TRUNCATION_SLACK_S = 0.1
PROBE_DIR = "video-probes"  # under the cache folder (vm_eval.paths.cache_dir)
_PROBE_VERSION = 1  # a new version when probe_decodable's answer changes

#: Every kind `check_manifest` reports, in the order `format_problems` prints them.
KINDS = (
    "unreadable", "schema", "duplicate-id", "zero-length", "missing-file", "undecodable-video",
    "span-beyond-video", "truncated-video", "reference-missing", "reference-undecodable", "reference-short",
    "reference-silent",
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest; `clip_id` is None for the file itself or a row without an id."""

    clip_id: str | None
    kind: str
    message: str


def decoded_extent(path: Path, cache: Path | None = None) -> DecodedExtent:
    """:func:`probe_decodable`, cached as JSON under `cache` by the file's content hash (None: not cached).

    The answer depends on the bytes and the decoder only, and decoding a whole set takes long: each file is
    decoded once per PyAV (FFmpeg) version.
    """
    import av

    if cache is None:
        return probe_decodable(path)
    probe_id = ExtractorId("video-decoded-extent", _PROBE_VERSION, {"pyav": av.__version__})
    key = probe_id.key(file_sha256(path))
    entry = cache / PROBE_DIR / key[:2] / f"{key}.json"
    try:
        return DecodedExtent(**json.loads(entry.read_text()))
    except (OSError, ValueError, TypeError):
        pass  # absent, torn or foreign: decode again
    extent = probe_decodable(path)
    try:
        atomic_write_json(entry, asdict(extent))
    except OSError as e:  # a read-only cache costs time, not correctness
        log.warning("cannot cache the decode probe of %s at %s: %s", path, entry, e)
    return extent


def truncated_before(extent: DecodedExtent, end_s: float) -> bool:
    """Whether decoding stops short of `end_s` seconds by more than one frame plus TRUNCATION_SLACK_S."""
    return extent.end_s < end_s - (1.0 / extent.fps + TRUNCATION_SLACK_S)


def describe_extent(extent: DecodedExtent, declared_s: float) -> str:
    """'decodes N frames, to X s, of the Y s its header declares' (and the decoder error that stopped it)."""
    why = f" (decoder: {extent.error})" if extent.error else ""
    return (f"decodes {extent.frames} frames, to {extent.end_s:.3f} s, of the {declared_s:.3f} s its header "
            f"declares{why}")


def _manifest_file(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        candidates = [p / "manifest.jsonl", p / "manifest.parquet"]
        p = next((c for c in candidates if c.is_file()), candidates[0])
    return p


def _read_jsonl(path: Path) -> tuple[list[dict], list[int], list[Problem]]:
    """Rows, their line numbers, and one problem per unparsable line.

    Unlike manifest._read_rows this keeps going past a bad line, so the rows after it are checked too.
    """
    rows, lines, problems = [], [], []
    for i, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(Problem(None, "schema", f"{path}: line {i}: not UTF-8 text ({e.reason})"))
            continue
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            problems.append(Problem(None, "schema", f"{path}: line {i}: not valid JSON ({e.msg})"))
            continue
        if not isinstance(row, dict):
            problems.append(Problem(None, "schema", f"{path}: line {i}: expected a JSON object"))
            continue
        rows.append(row)
        lines.append(i)
    return rows, lines, problems


_ROW = re.compile(r"^row (\d+)")
_ALSO = re.compile(r"\(also row (\d+)\)")


def _schema_problems(
    path: Path, rows: list[dict], lines: list[int] | None
) -> tuple[list[Clip], list[Problem]]:
    """Classify parse_rows' messages into kinds, with the clip id and (for JSONL) the file's line numbers."""
    clips, messages = parse_rows(path, rows)
    problems = []
    for msg in messages:
        m = _ROW.match(msg)
        clip_id = None
        if m:
            i = int(m.group(1))
            cid = rows[i - 1].get("id")
            clip_id = str(cid) if cid else None
            if lines is not None:  # row numbers skip blank and bad lines; an editor shows line numbers
                rest = _ALSO.sub(lambda a: f"(also line {lines[int(a.group(1)) - 1]})", msg[m.end():])
                msg = f"line {lines[i - 1]}{rest}"
        if "duplicate id" in msg:
            kind = "duplicate-id"
        elif "zero-length clip" in msg:
            kind = "zero-length"
        else:
            kind = "schema"
        problems.append(Problem(clip_id, kind, f"{path}: {msg}"))
    # Clip lets NaN/inf through (pydantic floats allow them and NaN defeats the end > start test).
    finite = []
    for c in clips:
        if math.isfinite(c.start) and math.isfinite(c.end):
            finite.append(c)
        else:
            problems.append(Problem(c.id, "schema", f"{path}: clip {c.id}: start/end must be finite numbers "
                                                    f"(got {c.start}, {c.end})"))
    return finite, problems


def check_manifest(
    path: str | Path,
    decode: bool = True,
    progress: Callable[[int, int], None] | None = None,
    cache: Path | None = None,
) -> tuple[Manifest | None, list[Problem]]:
    """Validate a manifest (.jsonl/.parquet or a folder holding manifest.*) and the files it points to.

    Returns the manifest of the valid rows (None when the file cannot be read at all) and every problem found.
    `decode=False` only probes files (no frame or sample decoding, so no truncation or silence check).
    `progress(done, total)` counts distinct files. `cache`: folder of the decode probes (see decoded_extent).
    """
    p = _manifest_file(path)
    if not p.is_file():
        return None, [Problem(None, "unreadable", f"{p}: manifest file not found")]
    if p.suffix not in (".jsonl", ".parquet"):
        msg = f"{p}: unknown manifest format {p.suffix!r}: use .jsonl or .parquet"
        return None, [Problem(None, "unreadable", msg)]
    try:
        if p.suffix == ".jsonl":
            rows, lines, problems = _read_jsonl(p)
        else:
            rows, lines, problems = _read_rows(p), None, []
    except (ManifestError, OSError) as e:
        return None, [Problem(None, "unreadable", str(e))]
    clips, schema = _schema_problems(p, rows, lines)
    problems += schema
    manifest = Manifest(p.resolve(), clips)

    by_video: dict[Path, list[Clip]] = defaultdict(list)
    by_ref: dict[Path, list[Clip]] = defaultdict(list)
    for c in clips:
        by_video[manifest.resolve(c.video)].append(c)
        if c.reference is not None:
            by_ref[manifest.resolve(c.reference)].append(c)
    total, done = len(by_video) + len(by_ref), 0
    for file, group in by_video.items():
        problems += _check_video(file, group, decode, cache)
        done += 1
        if progress is not None:
            progress(done, total)
    for file, group in by_ref.items():
        problems += _check_reference(file, group, decode)
        done += 1
        if progress is not None:
            progress(done, total)
    return manifest, problems


def _check_video(path: Path, clips: list[Clip], decode: bool, cache: Path | None) -> list[Problem]:
    if not path.is_file():
        return [Problem(c.id, "missing-file", f"clip {c.id}: video {path}: file not found") for c in clips]
    try:
        info = probe_video(path)
        extent = decoded_extent(path, cache) if decode else None
    except Exception as e:  # MediaError, or an FFmpeg error media/ left unwrapped: one bad file can't stop us
        return [Problem(c.id, "undecodable-video", f"clip {c.id}: {_describe(path, e)}") for c in clips]
    out = []
    for c in clips:
        if c.end > info.duration_s + TOLERANCE_S:
            msg = (f"clip {c.id}: span {c.start:.3f}-{c.end:.3f} s ends beyond the video {path} "
                   f"({info.duration_s:.3f} s)")
            out.append(Problem(c.id, "span-beyond-video", msg))
        if extent is None:
            continue
        # Up to the header's end only: a span past it is span-beyond-video already.
        if truncated_before(extent, min(c.end, info.duration_s)):
            msg = (f"clip {c.id}: video {path} is truncated: it {describe_extent(extent, info.duration_s)}; "
                   f"the clip ends at {c.end:.3f} s")
            out.append(Problem(c.id, "truncated-video", msg))
            continue  # its frames past the end would be the last one held: nothing more to learn
        end = min(c.end, info.duration_s, c.start + 1.0)
        if end <= c.start:
            continue
        try:  # one frame at the span's start: proves the seek and the decoder work there
            decode_frames(path, fps=1.0 / (end - c.start), size=(32, 32), start_s=c.start, end_s=end)
        except Exception as e:  # as above: decode_frames' seek is outside its error wrapping
            out.append(Problem(c.id, "undecodable-video", f"clip {c.id}: {_describe(path, e)}"))
    return out


def _describe(path: Path, e: Exception) -> str:
    """'file: problem' for any error (MediaError already names its file)."""
    return str(e) if isinstance(e, MediaError) else f"{path}: {type(e).__name__}: {e}"


def _reference_duration(path: Path) -> float:
    """Duration (s) from the header only; raises MediaError naming the file."""
    import av
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except Exception:
        pass  # not a libsndfile format: ask FFmpeg
    try:
        with av.open(str(path)) as c:
            if not c.streams.audio:
                raise MediaError(path, "has no audio stream")
            s = c.streams.audio[0]
            if s.duration is not None and s.time_base is not None:
                return float(s.duration * s.time_base)
            if c.duration is not None:
                return c.duration / 1_000_000
            raise MediaError(path, "audio duration unknown")
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(path, f"cannot open as audio ({type(e).__name__}: {e})") from e


def _check_reference(path: Path, clips: list[Clip], decode: bool) -> list[Problem]:
    if not path.is_file():
        return [Problem(c.id, "reference-missing", f"clip {c.id}: reference {path}: file not found")
                for c in clips]
    audio = None
    try:
        if path.stat().st_size == 0:
            raise MediaError(path, "file is empty (0 bytes)")
        if decode:
            audio = load_audio(path)
            duration = audio.duration_s
        else:
            duration = _reference_duration(path)
    except Exception as e:  # MediaError, or an unwrapped decoder error
        return [Problem(c.id, "reference-undecodable", f"clip {c.id}: reference {_describe(path, e)}")
                for c in clips]
    out = []
    for c in clips:
        if duration < c.end - TOLERANCE_S:
            msg = f"clip {c.id}: reference {path} lasts {duration:.3f} s; the clip ends at {c.end:.3f} s"
            out.append(Problem(c.id, "reference-short", msg))
        if audio is not None:
            span = audio.crop(c.start, c.end)
            if span.num_samples and audio_stats(span).silent:
                out.append(Problem(c.id, "reference-silent", f"clip {c.id}: reference {path} is silent over "
                                                             f"{c.start:.3f}-{c.end:.3f} s"))
    return out


def format_problems(problems: list[Problem]) -> str:
    """Problems grouped by kind (in :data:`KINDS` order, unknown kinds last), one line each, with counts."""
    if not problems:
        return "no problems found"
    groups: dict[str, list[Problem]] = defaultdict(list)
    for pr in problems:
        groups[pr.kind].append(pr)
    order = [k for k in KINDS if k in groups] + sorted(k for k in groups if k not in KINDS)
    lines = [f"{len(problems)} problem(s)"]
    for kind in order:
        lines.append(f"{kind} ({len(groups[kind])}):")
        lines.extend(f"  - {pr.message}" for pr in groups[kind])
    return "\n".join(lines)
