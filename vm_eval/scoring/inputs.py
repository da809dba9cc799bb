"""What metric extractors read, with content keys: generated audio, reference span, video frames, a donor's audio.

Features are cached by (content key, extractor identity) in the shared FeatureCache, and media are loaded only on
a cache miss, so rescoring a run reads almost nothing. Content keys never use file names: generated audio is keyed
by its sha256, a reference or video span by its file's sha256 plus the span.
"""
from __future__ import annotations

import hashlib
from collections.abc import Container, Iterable
from dataclasses import asdict

import numpy as np

from metrics.base import DoesNotApply, input_kind
from vm_eval.data.manifest import Clip, Manifest
from vm_eval import fsutil
from vm_eval.fsutil import file_sha256, json_sha256
from vm_eval.media import RESAMPLER, Audio, decode_frames, load_audio, resample
from vm_eval.store.feature_cache import ExtractorId, FeatureCache
from vm_eval.store.run import Run
from vm_eval.store.status import Status


def extractor_id(extractor) -> ExtractorId:
    info = asdict(extractor.info)
    info["harness_resampler"] = RESAMPLER if extractor.info.sample_rate is not None else None
    return ExtractorId(extractor.info.name, extractor.info.version, info)


def prepare(audio: Audio, extractor) -> Audio:
    """Audio as the extractor declares: native (it resamples itself) or downmixed/resampled by the harness."""
    info = extractor.info
    if info.sample_rate is None:
        return audio
    a = audio.mono() if info.mono else audio
    return resample(a, info.sample_rate)


def span_key(path, clip: Clip) -> str:
    return fsutil.span_key(path, clip.start, clip.end)


def donor_ids(clips: list[Clip], gen: dict[str, dict], seed: int) -> dict[str, str]:
    """Another clip with output for every clip with output: a cyclic shift of the split's id order (offset from
    the run seed), walking forward past clips without output. Never the clip itself."""
    ids = [c.id for c in sorted(clips, key=lambda c: c.id)]
    ok = {cid for cid in ids if gen.get(cid, {}).get("status") == Status.DONE}
    n = len(ids)
    if n < 2 or len(ok) < 2:
        return {}
    off = 1 + int(hashlib.sha256(f"donor/{seed}".encode()).hexdigest(), 16) % (n - 1)
    out = {}
    for i, cid in enumerate(ids):
        if cid not in ok:
            continue
        j = (i + off) % n
        while ids[j] not in ok or ids[j] == cid:
            j = (j + 1) % n
        out[cid] = ids[j]
    return out


class FeatureProvider:
    def __init__(self, run: Run, manifest: Manifest, gen: dict[str, dict], cache: FeatureCache,
                 donors: dict[str, str] | None = None):
        self.run, self.manifest, self.gen, self.cache = run, manifest, gen, cache
        self.donors = donors or {}
        self._audio: dict[str, Audio] = {}

    # -- content keys ----------------------------------------------------------------------------------------
    def source_key(self, clip: Clip, key: str, manifest: Manifest | None = None) -> str:
        """Content key of what input `key` reads for `clip`; DoesNotApply when the clip has no such input."""
        kind = input_kind(key)
        m = manifest or self.manifest
        if kind == "audio":
            return "gen:" + self.gen[clip.id]["audio_sha256"]
        if kind == "other-audio":
            donor = self.donors.get(clip.id)
            if donor is None:
                raise DoesNotApply("no other clip with output in this run to use as the null")
            return f"gen:{self.gen[donor]['audio_sha256']}"
        if kind == "reference":
            if clip.reference is None:
                raise DoesNotApply("clip has no reference music")
            return "ref:" + span_key(m.resolve(clip.reference), clip)
        return "video:" + span_key(m.resolve(clip.video), clip)

    def content_keys(self, clip: Clip, keys: Iterable[str], optional: Container[str] = ()
                     ) -> tuple[dict[str, str], dict[str, str]]:
        """({input key: content key} of the inputs `clip` has, {optional input key it lacks: why}); DoesNotApply
        when it lacks an input not in `optional`."""
        present, absent = {}, {}
        for k in sorted(keys):
            try:
                present[k] = self.source_key(clip, k)
            except DoesNotApply as e:
                if k not in optional:
                    raise
                absent[k] = str(e)
        return present, absent

    def fingerprint(self, clip: Clip, keys: Iterable[str], optional: Container[str] = ()) -> str:
        """Hash of the content keys of the inputs the clip has: a clip that gains an optional input (a donor, once
        another clip has output) gets another fingerprint, so its records are recomputed with it."""
        return json_sha256(self.content_keys(clip, keys, optional)[0])

    # -- media --------------------------------------------------------------------------------------------
    def generated_audio(self, clip_id: str) -> Audio:
        if clip_id not in self._audio:
            if len(self._audio) > 4:  # clips are visited in order; keep only the last few
                self._audio.pop(next(iter(self._audio)))
            self._audio[clip_id] = load_audio(self.run.dir / self.gen[clip_id]["audio"])
        return self._audio[clip_id]

    def reference_audio(self, clip: Clip, manifest: Manifest | None = None) -> Audio:
        m = manifest or self.manifest
        return load_audio(m.resolve(clip.reference), start_s=clip.start, end_s=clip.end)

    # -- features -----------------------------------------------------------------------------------------
    def features(self, clip: Clip, key: str, extractor, manifest: Manifest | None = None) -> np.ndarray:
        kind = input_kind(key)
        content = self.source_key(clip, key, manifest)

        def compute() -> np.ndarray:
            if kind == "video":
                info = extractor.info
                frames = decode_frames((manifest or self.manifest).resolve(clip.video), info.fps, info.size,
                                       clip.start, clip.end)
                return np.asarray(extractor(frames, info.fps))
            if kind == "reference":
                audio = self.reference_audio(clip, manifest)
            else:
                audio = self.generated_audio(clip.id if kind == "audio" else self.donors[clip.id])
            a = prepare(audio, extractor)
            return np.asarray(extractor(a.samples, a.sample_rate))

        return self.cache.get_or_compute(extractor_id(extractor), content, compute)
