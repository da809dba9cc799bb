"""Reference systems that need no weights: the clip's own music, and another clip's music.

They bracket every table: `ground-truth` is what a perfect system would score on paired metrics (and the
upper anchor of listening tests), `random-retrieval` is real music with no relation to the video (the chance
level for alignment and semantic metrics). Both use only the ClipInput methods, never files directly.
"""
from __future__ import annotations

import numpy as np


class GroundTruth:
    """The clip's own reference music, cut to the clip's span (native rate and channels)."""

    def __init__(self) -> None:
        from vm_eval.models.api import ModelInfo

        self.info = ModelInfo(name="ground-truth", family="reference")

    def checkpoints(self) -> list[dict]:
        return []

    def generate(self, batch):
        out = []
        for clip in batch:
            try:
                out.append(clip.reference_audio())
            except Exception as e:  # NotApplicable (no music) or a media error: that clip alone
                out.append(e)
        return out


class RandomRetrieval:
    """Another clip's reference music from the same split, fitted to this clip's duration.

    The donor is drawn uniformly, with the clip's own seed, from the split's clips that have music and come from
    a different source video (clips cut from one video share its music). A donor shorter than the clip is looped.
    The pool is the whole split, so `--limit` never changes which donor a clip gets.
    """

    def __init__(self, loop: bool = True) -> None:
        from vm_eval.models.api import ModelInfo

        self.loop = loop
        self.info = ModelInfo(name="random-retrieval", family="reference")
        self._pool: list = []

    def checkpoints(self) -> list[dict]:
        return []

    def prepare(self, pool) -> None:
        self._pool = sorted((c for c in pool if c.has_reference), key=lambda c: c.id)

    def donor(self, clip):
        candidates = [c for c in self._pool if c.id != clip.id and c.video_path != clip.video_path]
        if not candidates:
            raise LookupError(f"no other clip with reference music in the split to retrieve for {clip.id}")
        return candidates[int(np.random.default_rng(clip.seed).integers(len(candidates)))]

    def generate(self, batch):
        out = []
        for clip in batch:
            try:
                out.append(self.donor(clip).reference_audio().fit_length(clip.duration_s, loop=self.loop))
            except Exception as e:
                out.append(e)
        return out
