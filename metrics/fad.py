"""Frechet Audio Distance as a set metric (Kilgour et al. 2019), with a clip bootstrap CI, per-clip FAD and FAD-inf.

FAD is the squared Frechet distance between the Gaussian (mean, ddof=1 covariance) of all generated frame
embeddings and the Gaussian of all reference frame embeddings (see metrics.frechet for the formula and its stable
evaluation). Which embedding, and so which FAD, is the extractor's business: the metric is named after it
(``fad-vggish``, ``fad-clap-...``; the weightless stand-in is ``fad-logmel-nonstandard``). FAD depends on how many
frames were embedded, so the metric also reports FAD-inf (microsoft/fadtk) and the frame count.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from metrics.base import MetricError, MetricInfo, SetScore
from metrics.frechet import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MIN_N,
    DEFAULT_STEPS,
    BOOTSTRAP_METHODS,
    ReferenceGaussian,
    bootstrap_fad_detail,
    fad_inf,
)

STATS_FORMAT = 1.0
_HEADER = 4  # [format, d, n_clips, n_frames]


@dataclass(frozen=True)
class ReferenceStats:
    """The reference Gaussian: mean [d], covariance [d, d] (ddof=1, float64) and how many clips/frames built it."""

    mu: np.ndarray
    sigma: np.ndarray
    n_clips: int
    n_frames: int


def pack_stats(mu: np.ndarray, sigma: np.ndarray, n_clips: int, n_frames: int) -> np.ndarray:
    """One flat float64 array ``[format=1, d, n_clips, n_frames, mu (d values), sigma (d*d values, row-major)]``."""
    mu = np.asarray(mu, np.float64).ravel()
    d = mu.shape[0]
    sigma = np.asarray(sigma, np.float64)
    if sigma.shape != (d, d):
        raise ValueError(f"sigma must be [{d}, {d}], got {sigma.shape}")
    return np.concatenate([[STATS_FORMAT, d, n_clips, n_frames], mu, sigma.ravel()])


def unpack_stats(packed: np.ndarray) -> ReferenceStats:
    """Inverse of pack_stats; raises ValueError on an array of another layout."""
    a = np.asarray(packed, np.float64).ravel()
    if a.size < _HEADER or a[0] != STATS_FORMAT:
        raise ValueError("not a packed FAD reference statistics array (format 1)")
    d = int(a[1])
    if a.size != _HEADER + d + d * d:
        raise ValueError(f"packed FAD statistics of dimension {d} must hold {_HEADER + d + d * d} values, got {a.size}")
    mu = a[_HEADER:_HEADER + d].copy()
    sigma = a[_HEADER + d:].reshape(d, d).copy()
    return ReferenceStats(mu, sigma, int(a[2]), int(a[3]))


def _frames(arr: Any, what: str) -> np.ndarray:
    x = np.asarray(arr, dtype=np.float64)
    if x.ndim != 2:
        raise MetricError(f"{what}: expected frame embeddings [frames, dims], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise MetricError(f"{what}: embeddings contain NaN or infinite values")
    return x


class FrechetAudioDistance:
    """FAD of a run's generated clips against the reference set, on the frame embeddings of `extractor`.

    - value: FAD (squared Frechet distance, no units) between all generated frames pooled and the reference
      Gaussian; lower is better; it grows as fewer frames are used (see ``extra["fad-inf"]``).
    - lo, hi: 95% bootstrap interval over generated clips (``resamples`` resamples, seeded by score_set's `seed`),
      ``ci_method`` "bias-shifted" (default) or "percentile"; see metrics.frechet.bootstrap_fad for why the
      percentile interval can lie wholly above the FAD (``extra["bootstrap-bias"]`` says by how much).
    - n: generated clips with at least one frame; n_reference: reference clips with at least one frame.
    - per_clip: each clip's own FAD against the reference Gaussian (fadtk's per-song FAD, ``score_individual``),
      for spotting outliers; clips with fewer than 2 frames have no covariance and are left out
      (``extra["per-clip-omitted"]`` counts them). Per-clip FADs are large in absolute terms (few frames).
    - extra: ``frames`` (generated frames pooled), ``per-clip-omitted``, ``bootstrap-bias`` (mean resampled FAD
      minus FAD), ``fad-inf``, ``fad-inf-slope``, ``fad-inf-r2`` (microsoft/fadtk score_inf: min_n 500 frames,
      25 steps, seeded by `seed`); the three FAD-inf values are NaN when there are not more than min_n frames.

    `definition` names the distance in the description when the embedding has its own reference (e.g. FD-OpenL3 as
    stable-audio-metrics computes it); by default it is "Frechet Audio Distance on <extractor> frame embeddings".
    """

    def __init__(self, extractor: Any, name: str | None = None, resamples: int = 200,
                 fad_inf_min_n: int = DEFAULT_MIN_N, fad_inf_steps: int = DEFAULT_STEPS,
                 ci_method: str = "bias-shifted", definition: str | None = None) -> None:
        if ci_method not in BOOTSTRAP_METHODS:
            raise ValueError(f"ci_method must be one of {BOOTSTRAP_METHODS}, got {ci_method!r}")
        self.ci_method = ci_method
        self.extractor = extractor
        self.resamples = int(resamples)
        self.fad_inf_min_n = int(fad_inf_min_n)
        self.fad_inf_steps = int(fad_inf_steps)
        self.inputs = {"audio": extractor, "reference": extractor}
        ext = extractor.info
        standard = bool(getattr(extractor, "standard", True))
        self.info = MetricInfo(
            name=name or f"fad-{ext.name}",
            version=1,
            units="",
            higher_is_better=False,
            description=(
                (definition or f"Frechet Audio Distance on {ext.name} frame embeddings (Kilgour et al. 2019)")
                + ": squared Frechet distance between the Gaussians (ddof=1) of all generated and all reference "
                "frames; CI: bootstrap over generated clips; extra: FAD-inf (fadtk)"
                + ("" if standard else "; NON-STANDARD stand-in embedding")
            ),
            needs_reference=True,
            params={
                "covariance": "sample, ddof=1",
                "resamples": self.resamples,
                "confidence": DEFAULT_CONFIDENCE,
                "bootstrap": f"{ci_method}, over generated clips, frames pooled",
                "fad_inf": {"min_n": self.fad_inf_min_n, "steps": self.fad_inf_steps, "sampling": "with replacement",
                            "fit": "least squares FAD = a + b/n"},
            },
            backbone=ext.backbone,
            kind="set",
            standard=standard,
            reference_impl="Kilgour et al. 2019; FAD-inf as microsoft/fadtk; covariance square root by eigenvalues "
                           "(scipy.linalg.sqrtm can turn FAD negative)",
            null_value="0 = the generated and reference embedding Gaussians coincide; no chance level",
            caveats=("FAD falls as the number of clips grows: compare runs on the same clips, or read FAD-inf",
                     "the embedding backbone changes the scale completely: compare only within one backbone",
                     "a set metric: no per-clip value, so it cannot be recomputed on a clip filter")
            + (() if standard else ("NON-STANDARD stand-in embedding (offline demo): never comparable with papers",)),
        )

    def reference_statistics(self, ref_feats: list[np.ndarray]) -> np.ndarray:
        """Packed reference Gaussian (see pack_stats) of all frames of all reference clips, float64.

        Two passes over the clips (mean, then the centred scatter), so frames are never concatenated.
        Raises MetricError with fewer than 2 reference frames in total.
        """
        clips = [_frames(f, "reference") for f in ref_feats]
        clips = [c for c in clips if c.shape[0] > 0]
        n_frames = sum(c.shape[0] for c in clips)
        if n_frames < 2:
            raise MetricError(f"FAD needs at least 2 reference frames, got {n_frames}")
        dims = {c.shape[1] for c in clips}
        if len(dims) != 1:
            raise MetricError(f"reference embeddings have differing dimensions {sorted(dims)}")
        d = dims.pop()
        mu = sum(c.sum(axis=0) for c in clips) / n_frames
        scatter = np.zeros((d, d))
        for c in clips:
            cc = c - mu
            scatter += cc.T @ cc
        return pack_stats(mu, scatter / (n_frames - 1), len(clips), n_frames)

    def score_set(self, gen_feats: dict[str, dict[str, np.ndarray]], ref_stats: np.ndarray, seed: int) -> SetScore:
        """FAD of the generated clips (``gen_feats[clip_id]["audio"]``: [frames, d]) against `ref_stats`.

        Clips are taken in sorted clip-id order, so the result does not depend on the dict's order.
        """
        ref = unpack_stats(ref_stats)
        rg = ReferenceGaussian.from_stats(ref.mu, ref.sigma)
        clips: dict[str, np.ndarray] = {}
        for cid in sorted(gen_feats):
            x = _frames(gen_feats[cid]["audio"], f"clip {cid}")
            if x.shape[0] == 0:
                continue
            if x.shape[1] != rg.dim:
                raise MetricError(f"clip {cid}: embeddings have {x.shape[1]} dims, the reference has {rg.dim}")
            clips[cid] = x
        frames = sum(x.shape[0] for x in clips.values())
        if frames < 2:
            raise MetricError(f"FAD needs at least 2 generated frames, got {frames}")
        pooled = np.concatenate(list(clips.values()), axis=0)
        value = rg.distance(pooled)
        boot = bootstrap_fad_detail(list(clips.values()), ref.mu, ref.sigma, seed=seed, resamples=self.resamples,
                                    confidence=DEFAULT_CONFIDENCE, method=self.ci_method)
        per_clip = {cid: rg.distance(x) for cid, x in clips.items() if x.shape[0] >= 2}
        extra = {"frames": float(frames), "per-clip-omitted": float(len(gen_feats) - len(per_clip)),
                 "bootstrap-bias": boot.bias}
        if frames > self.fad_inf_min_n:
            inf = fad_inf(pooled, ref.mu, ref.sigma, min_n=self.fad_inf_min_n, steps=self.fad_inf_steps, seed=seed)
            extra.update({"fad-inf": inf.value, "fad-inf-slope": inf.slope, "fad-inf-r2": inf.r2})
        else:  # too few frames to extrapolate over a range of subset sizes
            extra.update({"fad-inf": math.nan, "fad-inf-slope": math.nan, "fad-inf-r2": math.nan})
        return SetScore(value=value, lo=boot.lo, hi=boot.hi, n=len(clips), n_reference=ref.n_clips, per_clip=per_clip,
                        extra=extra)
