"""`dir:PATH`: a folder of a system's existing outputs scored as a model.

Files are matched to clips by stem (`<clip id>.wav`, `<clip id>.mp4`, ...); audio is read from audio files or
from the soundtrack of videos (music muxed in). Clips with no file are skipped as missing, and reported. A clip
with several files (`x.wav` and `x.flac`, or `x.wav` and `x.mp4`) fails with both names: which one is the
system's output is not ours to guess. Such stems are listed once on stderr when the folder is opened.
"""
from __future__ import annotations

import hashlib
import sys
from collections import defaultdict
from pathlib import Path

from vm_eval.fsutil import file_sha256
from vm_eval.media import load_audio
from vm_eval.models.api import ModelInfo, NotApplicable
from vm_eval.errors import UserFileNotFound

AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus")
VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")
MATCH = "file stem = clip id"
_LISTED = 10  # ambiguous stems named in the warning; the rest are counted


class AmbiguousOutput(ValueError):
    """Several files in the folder claim one clip."""


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


class DirectoryOutputs:
    def __init__(self, spec: str) -> None:
        self.root, self.candidates = _candidates(spec)
        self.files = {stem: ps[0] for stem, ps in self.candidates.items() if len(ps) == 1}
        self.duplicates = _ambiguous(self.candidates)
        if self.duplicates:
            listed = "; ".join(f"{s} ({', '.join(p.name for p in self.candidates[s])})"
                               for s in self.duplicates[:_LISTED])
            more = f"; and {len(self.duplicates) - _LISTED} more" if len(self.duplicates) > _LISTED else ""
            print(f"warning: dir:{self.root}: {len(self.duplicates)} clip id(s) have several output files and will "
                  f"fail until one is left: {listed}{more}", file=sys.stderr)
        self.info = _info(self.root, self.candidates)

    @classmethod
    def identify(cls, spec: str) -> tuple[ModelInfo, list[dict]]:
        """(info, checkpoints()) without opening the model, so the warning is said once, by the model that
        generates."""
        root, candidates = _candidates(spec)
        return _info(root, candidates), _outputs_identity(root, candidates)

    def checkpoints(self) -> list[dict]:
        return _outputs_identity(self.root, self.candidates)

    def generate(self, batch):
        out = []
        for clip in batch:
            if clip.id in self.duplicates:
                names = " and ".join(str(p) for p in self.candidates[clip.id])
                out.append(AmbiguousOutput(f"several outputs for clip {clip.id}: {names}; keep one"))
                continue
            p = self.files.get(clip.id)
            if p is None:
                out.append(NotApplicable(f"missing output: no file named {clip.id}.* in {self.root}"))
                continue
            try:
                out.append(load_audio(p))
            except Exception as e:
                out.append(e)
        return out
