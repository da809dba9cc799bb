"""`dir:PATH`: a folder of a system's existing outputs scored as a model.

Published systems ship outputs two ways, and a folder may mix them; each clip is decided alone:
- a file named after the clip id (`<clip id>.wav`, `<clip id>.mp4`, ...) is the clip's output, whole;
- else a file named after the clip's source video (`<video stem>.wav`, one per video on the video's timeline, as
  BGM909-style folders hold) is cropped to the clip's span [start, end) s.
Audio is read from audio files or from the soundtrack of videos (music muxed in). A clip with no file is skipped as
missing. A clip with several candidates (`x.wav` and `x.flac`, `x.wav` and `x.mp4`, a clip-named and a video-named
file, or a video-named file whose stem names several source videos) fails naming them: which one is the system's
output is not ours to guess (a clip id equal to its video's stem names one file: the clip's, whole). Stems with
several files are listed on stderr when the folder is opened; clips with a clip-named and a video-named file, and
stems naming several source videos, once the split is known (`prepare`). Each generation record names the file used
and how it was matched (`source_file`, `match`); run.json counts the clips matched each way (`matched_clip_id`,
`matched_video_stem`). Whether an output's length fits its span is flagged by the runner, as for every model; for
a video-named file that is whether the file covers the span.
"""
from __future__ import annotations

import hashlib
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from vm_eval.fsutil import file_sha256
from vm_eval.media import Audio, load_audio
from vm_eval.models.api import ModelInfo, NotApplicable
from vm_eval.errors import UserFileNotFound

AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus")
VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")
BY_CLIP = "clip id"  # a generation record's `match`: the file is named after the clip id, used whole
BY_VIDEO = "video stem"  # ... named after the clip's source video, cropped to the clip's span
MATCH = "per clip: <clip id>.* whole, else <video stem>.* cropped to the clip's span"
_LISTED = 10  # items named in a warning; the rest are counted


class AmbiguousOutput(ValueError):
    """Several files in the folder claim one clip."""


@dataclass
class SourcedAudio(Audio):
    """A clip's output and where it came from: the runner stores `record_fields` in the clip's generation record."""

    record_fields: dict = field(default_factory=dict)


def _candidates(spec: str) -> tuple[Path, dict[str, list[Path]]]:
    """(folder, stem -> every output file with that stem, sorted by name)."""
    root = Path(spec).expanduser()
    if not root.is_dir():
        raise UserFileNotFound(f"dir:{spec}: no such folder of outputs")
    candidates: dict[str, list[Path]] = defaultdict(list)
    for p in sorted(root.iterdir()):
        if p.is_file() and p.suffix.lower() in AUDIO_EXTS + VIDEO_EXTS:
            candidates[p.stem].append(p)
    if not candidates:
        raise UserFileNotFound(f"dir:{spec}: holds no audio ({', '.join(AUDIO_EXTS)}) or video files")
    return root, dict(candidates)


def _ambiguous(candidates: dict[str, list[Path]]) -> list[str]:
    return sorted(stem for stem, ps in candidates.items() if len(ps) > 1)


def _names(files: list[Path]) -> str:
    return ", ".join(p.name for p in files)


def _warn(root: Path, head: str, items: list[str]) -> None:
    """One stderr line: `head`, then the first _LISTED items, the rest counted."""
    more = f"; and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
    print(f"warning: dir:{root}: {head}: {'; '.join(items[:_LISTED])}{more}", file=sys.stderr)


def _info(root: Path, candidates: dict[str, list[Path]]) -> ModelInfo:
    return ModelInfo(name=f"dir:{root}", family="external",
                     extra={"folder": str(root.resolve()), "match": MATCH, "ambiguous": _ambiguous(candidates)})


def _outputs_identity(root: Path, candidates: dict[str, list[Path]]) -> list[dict]:
    """The outputs are the 'checkpoint': the names and content hashes of every candidate file identify the run
    (ambiguous ones too: removing one of them makes another run)."""
    h = hashlib.sha256()
    every = [p for _, ps in sorted(candidates.items()) for p in ps]
    for p in every:
        h.update(f"{p.name}\0{file_sha256(p)}\n".encode())
    return [{"name": "outputs", "path": str(root.resolve()), "sha256": h.hexdigest(), "files": len(every)}]


def _video_stem(clip) -> str:
    return Path(clip.clip.video).stem


class DirectoryOutputs:
    def __init__(self, spec: str) -> None:
        self.root, self.candidates = _candidates(spec)
        self.duplicates = _ambiguous(self.candidates)
        if self.duplicates:
            _warn(self.root, f"{len(self.duplicates)} file stem(s) have several output files; the clips they name "
                  "fail until one is left", [f"{s} ({_names(self.candidates[s])})" for s in self.duplicates])
        self.info = _info(self.root, self.candidates)
        self.videos: dict[str, set[str]] = {}  # video stem -> the source videos of the split it names (prepare)

    @classmethod
    def identify(cls, spec: str) -> tuple[ModelInfo, list[dict]]:
        """(info, checkpoints()) without opening the model, so the warning is said once, by the model that
        generates."""
        root, candidates = _candidates(spec)
        return _info(root, candidates), _outputs_identity(root, candidates)

    def checkpoints(self) -> list[dict]:
        return _outputs_identity(self.root, self.candidates)

    def prepare(self, pool) -> None:
        """Learn which source videos each stem names, and list the clips that fail for lack of a single output
        beyond the duplicate stems already listed."""
        videos: dict[str, set[str]] = defaultdict(set)
        for clip in pool:
            videos[_video_stem(clip)].add(str(clip.video_path))
        self.videos = dict(videos)
        clashes = []
        for clip in pool:
            files = self._files(clip)
            if len({p.stem for p in files}) > 1:
                clashes.append(f"{clip.id} ({_names(files)})")
        if clashes:
            _warn(self.root, f"{len(clashes)} clip(s) have a file named after the clip and one named after its "
                  "video, and fail until one is left", clashes)
        shared = sorted(s for s, v in self.videos.items() if len(v) > 1 and s in self.candidates)
        if shared:
            _warn(self.root, f"{len(shared)} file stem(s) name several source videos, so their clips fail (name "
                  "the outputs after clip ids)", [f"{s} ({', '.join(sorted(self.videos[s]))})" for s in shared])

    def _files(self, clip) -> list[Path]:
        """Every file claiming the clip: those named after its id, then those named after its video."""
        stem = _video_stem(clip)
        return self.candidates.get(clip.id, []) + (self.candidates.get(stem, []) if stem != clip.id else [])

    def _source(self, clip) -> tuple[Path, str]:
        """(file, how it matched) of one clip; raises AmbiguousOutput or NotApplicable (missing)."""
        files, stem = self._files(clip), _video_stem(clip)
        if len(files) > 1:
            raise AmbiguousOutput(f"several outputs for clip {clip.id}: {' and '.join(map(str, files))}; keep one")
        if not files:
            names = " or ".join(f"{s}.*" for s in dict.fromkeys((clip.id, stem)))
            raise NotApplicable(f"missing output: no file named {names} in {self.root}")
        if files[0].stem == clip.id:
            return files[0], BY_CLIP
        if len(self.videos.get(stem, ())) > 1:
            raise AmbiguousOutput(f"{files[0]} is named after {len(self.videos[stem])} source videos "
                                  f"({', '.join(sorted(self.videos[stem]))}): which one it is for is unknown; name "
                                  "the outputs after clip ids")
        return files[0], BY_VIDEO

    def generate(self, batch):
        out = []
        for clip in batch:
            try:
                path, match = self._source(clip)
                span = (clip.clip.start, clip.clip.end) if match == BY_VIDEO else (0.0, None)
                audio = load_audio(path, start_s=span[0], end_s=span[1])
            except Exception as e:  # this clip fails or is skipped alone, with the reason
                out.append(e)
                continue
            out.append(SourcedAudio(audio.samples, audio.sample_rate, {"source_file": str(path), "match": match}))
        return out
