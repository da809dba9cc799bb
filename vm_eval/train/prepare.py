"""Per-clip inputs of VidMusician, computed once and cached by content: CLIP conditions of a video span and the
EnCodec tokens of a reference-music span.

Keys: the media file's sha256 + the span (seconds), plus the identity (sha256) of the network that made them, so
a renamed file hits the cache and new weights never reuse old features. Shared by training (``vm-eval train``,
``vm-eval ablate``: every variant reads the same entries) and generation (the ``vidmusician`` model).
"""
from __future__ import annotations

import math
import typing as tp
from pathlib import Path

import numpy as np

from vm_eval.data.manifest import Clip, Manifest
from vm_eval.fsutil import file_sha256, span_key
from vm_eval.media import MediaError, decode_frames, load_audio
from vm_eval.store.feature_cache import ExtractorId, FeatureCache

CHUNK_S = 2.0  # rhythm frames are decoded and encoded 2 s (50 frames) at a time: bounded memory at any resolution


def _frame_chunks(video: Path, fps: float, start: float, end: float) -> tp.Iterator[np.ndarray]:
    n = int(math.floor((end - start) * fps + 1e-6))
    per = int(round(CHUNK_S * fps))
    for k in range(0, n, per):  # chunk boundaries on the fps grid: the same frames as one decode of the span
        yield decode_frames(video, fps, None, start + k / fps, start + min(k + per, n) / fps)


def visual_features(visual, video: Path, start: float, end: float, cache: FeatureCache, cls_fps: float = 1.0,
                    rhythm_fps: float = 25.0):
    """:class:`vidmusician.visual.VisualFeatures` of ``video`` between ``start`` and ``end`` (seconds), cached."""
    from vidmusician.visual import VisualFeatures

    content = "video:" + span_key(video, start, end)
    base = {"clip": visual.model, "clip_sha256": file_sha256(visual.path)}
    ids = {"cls": ExtractorId("vidmusician-clip-global", 1, {**base, "fps": cls_fps}),
           "d_patch": ExtractorId("vidmusician-d-patch", 1, {**base, "fps": rhythm_fps}),
           "d_cls": ExtractorId("vidmusician-d-cls", 1, {**base, "fps": rhythm_fps})}
    found = {k: cache.get(e, content) for k, e in ids.items()}
    if any(v is None for v in found.values()):
        cache.misses += 1
        # 1-fps frames are few: decode them whole; 25-fps frames stream in chunks
        feats = visual.encode(decode_frames(video, cls_fps, None, start, end),
                              _frame_chunks(video, rhythm_fps, start, end), cls_fps, rhythm_fps)
        for k, e in ids.items():
            found[k] = getattr(feats, k)
            cache.put(e, content, found[k])
    else:
        cache.hits += 1
    return VisualFeatures(cls=found["cls"], d_patch=found["d_patch"], d_cls=found["d_cls"], cls_fps=cls_fps,
                          rhythm_fps=rhythm_fps)


def music_tokens(compression_model, encodec_sha256: str, reference: Path, start: float, end: float,
                 cache: FeatureCache) -> np.ndarray:
    """EnCodec codes [K, T] (int16, T = ceil(samples / hop) at 50 Hz) of the mono 32 kHz music span, cached."""
    import torch

    sr = int(compression_model.sample_rate)
    ext = ExtractorId("encodec-tokens", 1, {"encodec_sha256": encodec_sha256, "sample_rate": sr, "mono": True})

    def compute() -> np.ndarray:
        audio = load_audio(reference, sr, True, start, end)
        x = torch.from_numpy(np.ascontiguousarray(audio.samples[:1], dtype=np.float32))[None]
        p = next(compression_model.parameters())
        with torch.inference_mode():
            codes, _ = compression_model.encode(x.to(p.device))
        return codes[0].cpu().numpy().astype(np.int16)

    return cache.get_or_compute(ext, "ref:" + span_key(reference, start, end), compute)


def training_examples(manifest: Manifest, clips: list[Clip], components, config, cache: FeatureCache,
                      progress: bool = True) -> tuple[list, dict[str, str]]:
    """One :class:`vidmusician.data.TrainExample` per clip with reference music; ``(examples, skipped)`` where
    ``skipped`` maps clip id -> reason (no reference music, unreadable media)."""
    import torch
    from vidmusician.data import TrainExample
    from vm_eval.progress import progress_bar

    sem, rh = config.semantic, config.rhythm
    enc_sha = components.identities["encodec"]["sha256"]
    examples, skipped = [], {}
    for clip in progress_bar(clips, desc="prepare (EnCodec tokens, CLIP features)", unit="clip", enabled=progress):
        if clip.reference is None:
            skipped[clip.id] = "no reference music"
            continue
        try:
            codes = music_tokens(components.backbone.compression_model, enc_sha, manifest.resolve(clip.reference),
                                 clip.start, clip.end, cache)
            vf = visual_features(components.visual, manifest.resolve(clip.video), clip.start, clip.end, cache,
                                 sem.fps, rh.fps)
        except (MediaError, OSError, ValueError) as e:  # one bad clip must not stop the others
            skipped[clip.id] = f"{type(e).__name__}: {e}"
            continue
        examples.append(TrainExample(clip_id=clip.id, codes=torch.from_numpy(codes.astype(np.int64)),
                                     cls=torch.from_numpy(vf.cls), d_frames=torch.from_numpy(vf.rhythm(rh.source)),
                                     cls_fps=vf.cls_fps, rhythm_fps=vf.rhythm_fps))
    return examples, skipped
