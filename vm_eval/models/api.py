"""The contract between the runner and a music model (VidMusician, baselines, reference systems).

A model is any object with
    info: ModelInfo
    checkpoints() -> list[dict]            # identity {name, path, sha256} of every checkpoint it uses
    generate(batch: list[ClipInput]) -> list[Audio | (samples, sample_rate) | BaseException]
and optionally `prepare(pool: list[ClipInput])`, called once with every clip of the split before generation.
Models duck-type this contract: `vidmusician` never imports the harness, it only calls ClipInput's methods.
A returned exception fails that clip alone; :class:`NotApplicable` marks it skipped (with the reason) instead.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vm_eval.data.manifest import Clip, Manifest
from vm_eval.media import Audio, decode_frames, load_audio


class NotApplicable(Exception):
    """This model cannot produce output for this clip by design (e.g. ground truth of a clip with no music)."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str  # "reference", "vidmusician", "baseline", "external"
    output: str = "audio"  # "audio" or "midi"
    sample_rate: int | None = None  # native output rate in Hz, None when it follows the input
    max_duration_s: float | None = None
    trained: bool = True  # False for random-initialised backbones: flagged on every table
    extra: dict = field(default_factory=dict)


def clip_seed(run_seed: int, clip_id: str) -> int:
    """A clip's own seed, from (run seed, clip id): outputs never depend on batch size, order or workers."""
    digest = hashlib.sha256(f"vm-eval/{run_seed}/{clip_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class ClipInput:
    """One clip as a model sees it: its facts, its own seed, and lazy access to its silent video and music.

    Models always get the video without its audio track (`silent_video()`), cut to the clip's span.
    """

    def __init__(self, clip: Clip, manifest: Manifest, run_seed: int, media_cache: Path):
        self.clip = clip
        self.manifest = manifest
        self.seed = clip_seed(run_seed, clip.id)
        self._media_cache = Path(media_cache)

    id = property(lambda self: self.clip.id)
    duration_s = property(lambda self: self.clip.duration)
    category = property(lambda self: self.clip.category)
    source = property(lambda self: self.clip.source)
    caption = property(lambda self: self.clip.caption)
    has_reference = property(lambda self: self.clip.reference is not None)

    @property
    def cache_root(self) -> Path:
        """The run's cache folder (``features/`` there is the shared content-keyed FeatureCache)."""
        return self._media_cache.parent

    @property
    def video_path(self) -> Path:
        """The source video (with its audio); use `silent_video()` to give a model its input."""
        return self.manifest.resolve(self.clip.video)

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def silent_video(self) -> Path:
        """The clip's span of the video, re-encoded without audio; cached by source content hash and span."""
        from vm_eval.fsutil import file_sha256
        from vm_eval.media import cut_video

        src = self.video_path
        key = hashlib.sha256(f"{file_sha256(src)}/{self.clip.start:.6f}/{self.clip.end:.6f}".encode()).hexdigest()
        out = self._media_cache / "silent-clips" / key[:2] / f"{key[:24]}.mp4"
        if not out.is_file():
            cut_video(src, out, self.clip.start, self.clip.end)
        return out

    def frames(self, fps: float, size: tuple[int, int] | None = None) -> np.ndarray:
        """uint8 RGB frames [T, H, W, 3] of the clip at `fps`, resized to `size` = (width, height)."""
        return decode_frames(self.video_path, fps, size, self.clip.start, self.clip.end)

    def reference_audio(self, sample_rate: int | None = None, mono: bool = False) -> Audio:
        """The clip's span of its reference music; raises NotApplicable if the clip has none."""
        if self.clip.reference is None:
            raise NotApplicable(f"clip {self.id} has no reference music")
        return load_audio(self.manifest.resolve(self.clip.reference), sample_rate, mono, self.clip.start, self.clip.end)


def as_audio(out) -> Audio:
    """Normalise what a model returned for one clip to :class:`Audio`."""
    if isinstance(out, Audio):
        return out
    if isinstance(out, tuple) and len(out) == 2:
        samples, sr = out
        if hasattr(samples, "detach"):  # a torch tensor; models may hand those back directly
            samples = samples.detach().cpu().float().numpy()
        return Audio(np.asarray(samples, dtype=np.float32), int(sr))
    raise TypeError(f"model returned {type(out).__name__}; expected Audio or (samples, sample_rate)")
