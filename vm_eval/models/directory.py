"""`dir:PATH`: a folder of a system's existing outputs scored as a model.

Files are matched to clips by stem (`<clip id>.wav`, `<clip id>.mp4`, ...); audio is read from audio files or
from the soundtrack of videos (music muxed in). Clips with no file are skipped as missing, and reported.
"""
from __future__ import annotations

from pathlib import Path

from vm_eval.fsutil import file_sha256
from vm_eval.media import load_audio
from vm_eval.models.api import ModelInfo, NotApplicable

AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus")
VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")


class DirectoryOutputs:
    def __init__(self, spec: str) -> None:
        self.root = Path(spec).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"dir:{spec}: no such folder of outputs")
        self.files: dict[str, Path] = {}
        duplicates = []
        for p in sorted(self.root.iterdir()):
            if p.is_file() and p.suffix.lower() in AUDIO_EXTS + VIDEO_EXTS:
                if p.stem in self.files:
                    duplicates.append(p.stem)
                # audio files win over videos of the same stem: they are the system's direct output
                if p.stem not in self.files or p.suffix.lower() in AUDIO_EXTS:
                    self.files[p.stem] = p
        if not self.files:
            raise FileNotFoundError(f"dir:{spec}: holds no audio ({', '.join(AUDIO_EXTS)}) or video files")
        self.duplicates = sorted(set(duplicates))
        self.info = ModelInfo(name=f"dir:{self.root}", family="external", extra={"folder": str(self.root.resolve())})

    def checkpoints(self) -> list[dict]:
        """The outputs are the 'checkpoint': their names and content hashes identify this run."""
        import hashlib

        h = hashlib.sha256()
        for stem, p in sorted(self.files.items()):
            h.update(f"{p.name}\0{file_sha256(p)}\n".encode())
        return [{"name": "outputs", "path": str(self.root.resolve()), "sha256": h.hexdigest(), "files": len(self.files)}]

    def generate(self, batch):
        out = []
        for clip in batch:
            p = self.files.get(clip.id)
            if p is None:
                out.append(NotApplicable(f"missing output: no file named {clip.id}.* in {self.root}"))
                continue
            try:
                out.append(load_audio(p))
            except Exception as e:
                out.append(e)
        return out
