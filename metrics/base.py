"""What every metric declares (its identity) and what it receives per clip.

A metric's identity (name, version, parameters, audio handling, backbone checkpoint) is hashed into its key;
stored scores carry that key, so a version bump or a different backbone never mixes with older scores.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np


class MetricError(ValueError):
    """The metric cannot score this clip (the reason is stored with the clip's score record)."""


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
    backbone: dict[str, Any] | None = None  # {name, sha256, ...} of the embedding/classifier checkpoint

    def identity(self, resampler: str) -> dict[str, Any]:
        d = asdict(self)
        d.pop("description")
        d["resampler"] = resampler if self.sample_rate is not None else None
        return d

    def key(self, resampler: str) -> str:
        blob = json.dumps(self.identity(resampler), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


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


class Metric(Protocol):
    info: MetricInfo

    def score(self, audio: np.ndarray, sample_rate: int, ctx: ClipContext) -> float:
        """One value per clip; raise MetricError when the clip cannot be scored."""
        ...
