"""ImageBind score (IB-score): cosine between the ImageBind-huge embeddings of a clip's video and of its music.

Definition: hkchengrex/av-benchmark ``av_bench/evaluate.py`` (``IB-Score``): ``torch.cosine_similarity(video,
audio, dim=-1).mean()`` over the paired clips, where each side is ImageBind's clip embedding, i.e. what
``ImageBindModel.forward`` returns for a clip's list of views: the mean of the views' embeddings (video: 3 crops x
consecutive pairs of frames at 0.5 fps; audio: three 2 s clips; extraction in ``metrics.backbones.imagebind``).
Per clip this metric is that cosine of the two mean embeddings (the mean is not re-normalised before the cosine,
and the cosine ignores the norms); the run's mean over clips is av-benchmark's number. Video-to-music papers
(VidMuse, VMB, Diff-V2M) report it as "IB" or "ImageBind score".

Units: a cosine on the 0-1 scale, as av-benchmark prints it (in [-1, 1]; tables that print e.g. 25.3 report 100 x
this value). Higher is better: the music is closer to the video in ImageBind's joint embedding space.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from metrics.base import ClipContext, MetricInfo
from metrics.semantic import pooled

SCALE = "0-1"  # cosine as av-benchmark reports it; x100 tables divide by 100 to compare


def imagebind_cosine(video_views: np.ndarray, audio_views: np.ndarray) -> float:
    """Cosine of the mean video view embedding and the mean audio clip embedding ([views, d] each)."""
    return float(pooled(video_views) @ pooled(audio_views))


class ImageBindScore:
    """Per-clip FeatureMetric: ``imagebind-score`` from ImageBind audio and video view embeddings."""

    def __init__(self, audio: Any, video: Any):
        self.inputs = {"audio": audio, "video": video}
        self.info = MetricInfo(
            name="imagebind-score", version=1, units="cosine (0-1 scale, not x100)", higher_is_better=True,
            description="cosine of ImageBind-huge embeddings of the clip's video and of the music (av-benchmark "
                        "IB-Score)",
            params={"scale": SCALE, "pooling": "mean of view embeddings (ImageBindModel.forward), then cosine",
                    "definition": "hkchengrex/av-benchmark av_bench/evaluate.py IB-Score",
                    "pairing": "clip video (vision) x generated music (audio)"},
            backbone=getattr(audio.info, "backbone", None),
            reference_impl="hkchengrex/av-benchmark av_bench/evaluate.py IB-Score",
            null_value="read against random retrieval (another clip's music); ground truth gives the ceiling",
            caveats=("papers report it on 0-1 or x100 scales: this one is 0-1",))

    def score_features(self, feats: dict[str, np.ndarray], ctx: ClipContext) -> float:
        return imagebind_cosine(feats["video"], feats["audio"])
