"""What every metric declares (its identity) and what it receives.

A metric's identity (name, version, parameters, audio handling, extractor identities, backbone checkpoint) is
hashed into its key; stored scores carry that key, so a version bump or another backbone never mixes with older
scores. Three shapes of metric, all pure (arrays in, numbers out; the harness does I/O and caching):

- per-clip, direct: ``score(audio, sample_rate, ctx) -> float`` (audio float32 [channels, n] prepared as
  ``info.sample_rate`` / ``info.mono`` declare);
- per-clip, from features: ``inputs`` maps input kinds to extractors, ``score_features(feats, ctx)`` gets the
  extracted arrays (cached by content hash + extractor identity) and returns a float, or a dict of sub-scores
  whose keys are name suffixes ("" = the metric itself, e.g. {"": f, "vs-shift": f - f_shifted});
- set-level (``info.kind == "set"``, e.g. FAD): per-clip features as above, then
  ``reference_statistics(ref_feats) -> array`` (cached per reference set) and
  ``score_set(gen_feats, ref_stats, seed) -> SetScore``.

Input keys are a kind, optionally with a label after a colon ("audio", "audio:onsets", "video:cuts"), so one metric
can use several extractors on the same source. Kinds: "audio" (the generated music), "reference" (the clip's
reference music, same span), "video" (the clip's frames, decoded at the extractor's fps and size), "other-audio"
(another clip's generated music from the same run, chosen deterministically: the null for alignment scores).
An audio extractor with ``sample_rate=None`` receives the audio at its native rate and channel count and does its
own resampling (backbones whose reference implementation resamples in a specific way do this, and name their
resampler in ``params``); otherwise the harness resamples with its named resampler and downmixes if ``mono``.

Optional inputs (:func:`optional_inputs`): an input the clip may lack without the metric's main value losing its
meaning. The harness then calls ``score_features`` without that key and stores the main value; the sub-scores
that input feeds are recorded as skipped with the reason. By default every "other-audio" input is optional and
feeds "vs-other" (a one-clip split has no donor for that null, yet its own score stands).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

INPUT_KINDS = ("audio", "reference", "video", "other-audio")
DEFAULT_OPTIONAL = {"other-audio": ("vs-other",)}  # input kind -> the sub-scores it feeds, when not declared


class MetricError(ValueError):
    """The metric cannot score this clip (the reason is stored with the clip's score record)."""


class DoesNotApply(Exception):
    """This metric does not apply to this clip, by design (no caption, no reference music, no donor for a null);
    the clip's record is 'skipped' with the reason. Anything else a metric raises is a failure."""


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


@dataclass(frozen=True)
class MetricInfo:
    name: str
    version: int
    units: str
    higher_is_better: bool | None  # None: descriptive, no better direction
    description: str
    needs_reference: bool = False  # needs the clip's reference music
    sample_rate: int | None = None  # Hz the metric wants its input at; None = the audio's native rate
    mono: bool = False  # downmix (mean of channels) before scoring
    params: dict[str, Any] = field(default_factory=dict)
    backbone: dict[str, Any] | None = None  # {name, file, sha256} of the embedding/classifier checkpoint
    kind: str = "clip"  # "clip" (one value per clip) or "set" (one value per run, e.g. FAD)
    standard: bool = True  # False for stand-in backbones that exist only so the demo runs offline
    # Documentation only (the leaderboard's definitions page); never part of the identity: see DOC_FIELDS.
    reference_impl: str = ""  # the published implementation or definition this one follows
    null_value: str = ""  # what no skill looks like: the value or paired null a score is read against
    caveats: tuple[str, ...] = ()  # known pitfalls when reading or comparing the score

    def identity(self, resampler: str, extractors: dict[str, Any] | None = None) -> dict[str, Any]:
        d = asdict(self)
        for name in DOC_FIELDS:  # prose: editing it must not change the key of every stored score
            d.pop(name)
        d["resampler"] = resampler if (self.sample_rate is not None or extractors) else None
        if extractors:
            d["inputs"] = {k: extractor_identity(e) for k, e in sorted(extractors.items())}
        return d

    def key(self, resampler: str, extractors: dict[str, Any] | None = None) -> str:
        return _hash(self.identity(resampler, extractors))[:16]

    def stored_identity(self, resampler: str, extractors: dict[str, Any] | None = None) -> dict[str, Any]:
        """What run.json stores for the metric: identity(), its key, and the documentation fields (never hashed)."""
        return {**self.identity(resampler, extractors), "key": self.key(resampler, extractors), **self.docs()}

    def docs(self) -> dict[str, Any]:
        """The documentation fields (DOC_FIELDS), as stored beside the identity in run.json."""
        return {name: list(v) if isinstance(v := getattr(self, name), tuple) else v for name in DOC_FIELDS}


# MetricInfo fields that document a metric without defining it: left out of identity() and so of the key.
DOC_FIELDS = ("description", "reference_impl", "null_value", "caveats")


@dataclass(frozen=True)
class ExtractorInfo:
    """Identity of a feature extractor; audio extractors state their input rate and channel handling."""

    name: str
    version: int
    params: dict[str, Any] = field(default_factory=dict)
    sample_rate: int | None = None  # audio extractors: Hz they expect (the harness resamples)
    mono: bool = True  # audio extractors: downmix by the mean of channels first
    fps: float | None = None  # video extractors: frames per second they expect
    size: tuple[int, int] | None = None  # video extractors: (width, height) frames are resized to
    backbone: dict[str, Any] | None = None


def extractor_identity(extractor: Any) -> dict[str, Any]:
    return asdict(extractor.info)


def input_kind(key: str) -> str:
    """"audio:onsets" -> "audio"; validates the kind."""
    kind = key.split(":", 1)[0]
    if kind not in INPUT_KINDS:
        raise ValueError(f"unknown input kind {kind!r} in {key!r}; expected one of {', '.join(INPUT_KINDS)}")
    return kind


def optional_inputs(metric: Any) -> dict[str, tuple[str, ...]]:
    """Input keys the harness may leave out of ``feats`` -> the sub-score suffixes computed from each.

    A metric declares them as a class attribute, ``optional_inputs = {"other-audio": ("vs-other",)}``; ``{}``
    makes every input required (a clip lacking one is skipped whole). Undeclared: :data:`DEFAULT_OPTIONAL` by
    input kind. Harness policy, not part of the metric's identity (the values computed do not change).
    """
    declared = getattr(metric, "optional_inputs", None)
    if declared is None:
        declared = {k: DEFAULT_OPTIONAL[input_kind(k)] for k in getattr(metric, "inputs", None) or {}
                    if input_kind(k) in DEFAULT_OPTIONAL}
    return {k: tuple(v) for k, v in declared.items()}


class AudioExtractor(Protocol):
    info: ExtractorInfo

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Features of float32 audio [channels, n] already at info.sample_rate (mono if info.mono)."""
        ...


class VideoExtractor(Protocol):
    info: ExtractorInfo

    def __call__(self, frames: np.ndarray, fps: float) -> np.ndarray:
        """Features of uint8 RGB frames [T, H, W, 3] sampled at `fps` (= info.fps)."""
        ...


@dataclass(frozen=True)
class ClipContext:
    """Facts about the clip being scored; times in seconds, audio float32 [channels, n]."""

    clip_id: str
    duration_s: float  # the video clip's duration
    category: str = "other"
    source: str = "real"
    caption: str | None = None
    reference: np.ndarray | None = None  # reference music, same rate and channel handling as the generated audio
    reference_sr: int | None = None
    seed: int = 0  # the clip's own seed (for nulls such as a random circular shift)


@dataclass(frozen=True)
class SetScore:
    """A set-level value (e.g. FAD) with its bootstrap CI over generated clips and the sample sizes."""

    value: float
    lo: float
    hi: float
    n: int  # generated clips used
    n_reference: int  # reference clips used
    per_clip: dict[str, float] = field(default_factory=dict)  # e.g. per-clip FAD, for finding outliers
    extra: dict[str, float] = field(default_factory=dict)  # e.g. {"fad-inf": ..., "frames": ...}


class Metric(Protocol):
    info: MetricInfo

    def score(self, audio: np.ndarray, sample_rate: int, ctx: ClipContext) -> float:
        """One value per clip; raise MetricError when the clip cannot be scored."""
        ...


class FeatureMetric(Protocol):
    info: MetricInfo
    inputs: dict[str, AudioExtractor | VideoExtractor]
    # may also declare `optional_inputs` (see optional_inputs()): such keys can be absent from `feats`

    def score_features(self, feats: dict[str, np.ndarray], ctx: ClipContext) -> float | dict[str, float]:
        ...


class SetMetric(Protocol):
    info: MetricInfo  # kind == "set"
    inputs: dict[str, AudioExtractor | VideoExtractor]  # per-clip features; "reference" builds the reference set

    def reference_statistics(self, ref_feats: list[np.ndarray]) -> np.ndarray:
        ...

    def score_set(self, gen_feats: dict[str, dict[str, np.ndarray]], ref_stats: np.ndarray, seed: int) -> SetScore:
        ...
