"""Catch-trial anchors for listening tests: real music, deliberately wrong in one known respect.

A listening test mixes these with the systems under test; a rater who prefers them over the clip's own music
(or rates them alike) is not attending to that respect. Both are ``family="reference"`` and carry
``info.extra["anchor"]`` ("rhythm" or "content") so study designers can find them.

- :class:`ShiftedBeatAnchor` (``anchor-beat-shift``): the clip's own music, displaced in time by (n + 0.5)
  beat periods, so its beats fall half-way between the original beats (and the cuts they sit on); same
  content, wrong timing.
- :class:`OtherCategoryAnchor` (``anchor-other-category``): music of a clip of another category and another
  source video; right kind of audio, wrong content.

Clips without reference music are :class:`~vm_eval.models.api.NotApplicable` for both.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from baselines.reference import RandomRetrieval
from vm_eval.errors import BadArgument

log = logging.getLogger(__name__)

BEAT_FPS = 100  # madmom beat activations, frames per second


def autocorrelation_period(activation: np.ndarray, fps: float = BEAT_FPS, min_bpm: float = 55.0,
                           max_bpm: float = 215.0, min_strength: float = 0.1) -> float | None:
    """Beat period (s) at the highest autocorrelation peak of an onset/beat activation (frames at `fps`) among
    lags of min_bpm-max_bpm; None when the activation is flat, too short, or the peak's normalised
    autocorrelation is below `min_strength` (no clear periodicity)."""
    a = np.asarray(activation, dtype=np.float64).ravel()
    a = a - a.mean()
    lo, hi = int(np.ceil(60.0 * fps / max_bpm)), int(np.floor(60.0 * fps / min_bpm))
    if a.size <= hi or float(np.dot(a, a)) <= 1e-12:
        return None
    ac = np.array([np.dot(a[:-lag], a[lag:]) for lag in range(lo, hi + 1)]) / float(np.dot(a, a))
    best = int(np.argmax(ac))
    return (lo + best) / fps if ac[best] >= min_strength else None


def shift_span(
    samples: np.ndarray, start: int, n: int, offset: int, crossfade: int
) -> tuple[np.ndarray, str]:
    """[channels, n] of `samples` [channels, total] displaced by `offset` samples around the span
    [start, start + n), and which source was used:

    - "before": samples[start - offset : ... + n] (the music heard `offset` earlier), when start >= offset;
    - "after": samples[start + offset : ... + n], when that lies within `samples`;
    - "roll": the span circularly delayed by `offset`, with an equal-power crossfade of `crossfade` samples
      centred on the seam, between the span's end running on (into the samples after it, silence past the
      end) and the span's start faded in (from the samples before it, silence before the start).
    """
    total = samples.shape[1]
    if start - offset >= 0 and start - offset + n <= total:
        return samples[:, start - offset: start - offset + n], "before"
    if start + offset + n <= total:
        return samples[:, start + offset: start + offset + n], "after"
    span = _take(samples, start, n)
    s = offset % n if n else 0
    out = np.roll(span, s, axis=1)
    h = min(crossfade // 2, n // 2)
    if s and h:
        tail = np.concatenate([span[:, n - h:], _take(samples, start + n, h)], axis=1)  # the end running on
        head = np.concatenate([_take(samples, start - h, h), span[:, :h]], axis=1)  # the start, led into
        x = (np.arange(2 * h) + 0.5) / (2 * h) * (np.pi / 2)
        idx = np.arange(s - h, s + h) % n
        out[:, idx] = tail * np.cos(x) + head * np.sin(x)
    return out, "roll"


def _take(samples: np.ndarray, start: int, n: int) -> np.ndarray:
    """samples[:, start : start + n], zeros where that runs outside [0, total)."""
    out = np.zeros((samples.shape[0], n), dtype=samples.dtype)
    a, b = max(start, 0), min(start + n, samples.shape[1])
    if b > a:
        out[:, a - start: b - start] = samples[:, a:b]
    return out


@dataclass(frozen=True)
class Shift:
    """How one clip's anchor was made: beat period (s) and where it came from ("madmom-beats",
    "activation-autocorrelation", "default: <reason>"), the offset (s) and the source branch of
    :func:`shift_span`."""

    period_s: float
    period_source: str
    offset_s: float
    branch: str


class ShiftedBeatAnchor:
    """The clip's reference music displaced by (beats + 0.5) beat periods (rhythm catch trial).

    Beat period: median inter-beat interval of madmom beats (:class:`metrics.beats.BeatTimes`) tracked on the
    clip's span of the reference; with fewer than 3 beats, the autocorrelation peak of madmom's beat
    activation (55-215 BPM); failing that (silence, no periodicity) `default_period_s` (0.5 s), logged with
    the reason.
    Source: see :func:`shift_span` (the reference file around the span is preferred over rolling the span).
    Output: native rate and channels of the reference, exactly round(duration_s * rate) samples.
    """

    def __init__(self, beats: int = 1, crossfade_s: float = 0.02, default_period_s: float = 0.5) -> None:
        from metrics.beats import BeatTimes
        from vm_eval.models.api import ModelInfo

        if beats < 0:
            raise BadArgument(f"beats must be >= 0 whole beats, got {beats}")
        self.beats, self.crossfade_s = int(beats), float(crossfade_s)
        self.default_period_s = float(default_period_s)
        self._tracker = BeatTimes()
        self.info = ModelInfo(name="anchor-beat-shift", family="reference",
                              extra={"anchor": "rhythm", "shift_beats": self.beats + 0.5,
                                     "about": "the clip's own music displaced by (n + 0.5) beats"})

    def checkpoints(self) -> list[dict]:
        return []

    def beat_period(self, mono_44k: np.ndarray) -> tuple[float, str]:
        """(beat period in s, its source) of mono float32 audio at 44100 Hz."""
        beats = self._tracker(mono_44k, 44100)
        if beats.size >= 3:
            return float(np.median(np.diff(beats))), "madmom-beats"
        if mono_44k.size < 4410 or float(np.sqrt(np.mean(np.square(mono_44k, dtype=np.float64)))) < 1e-3:
            return self.default_period_s, "default: silent or too short"
        period = autocorrelation_period(self._tracker.activations(mono_44k, 44100))
        if period is None:
            return self.default_period_s, "default: no beats and no periodicity in the beat activation"
        return period, "activation-autocorrelation"

    def shift(self, clip):
        """(Audio, Shift) for one clip; raises NotApplicable when it has no reference music."""
        from vm_eval.media import Audio, load_audio, resample

        span = clip.reference_audio()  # NotApplicable without music
        period, source = self.beat_period(resample(span.mono(), 44100).samples[0])
        if source.startswith("default"):
            log.warning("%s: beat period %.3f s (%s)", clip.id, period, source)
        offset_s = (self.beats + 0.5) * period
        margin = offset_s + self.crossfade_s
        first = max(0.0, clip.clip.start - margin)  # read the reference only around the span
        path = clip.manifest.resolve(clip.clip.reference)
        window = load_audio(path, None, False, first, clip.clip.end + margin)
        sr = window.sample_rate
        start, n = round(clip.clip.start * sr) - round(first * sr), round(clip.duration_s * sr)
        fade = round(self.crossfade_s * sr)
        samples, branch = shift_span(window.samples, start, n, round(offset_s * sr), fade)
        audio = Audio(samples, sr).fit_length(clip.duration_s)
        return audio, Shift(period, source, offset_s, branch)

    def generate(self, batch):
        out = []
        for clip in batch:
            try:
                out.append(self.shift(clip)[0])
            except Exception as e:  # NotApplicable (no music) or a media error: that clip alone
                out.append(e)
        return out


_OTHER_CATEGORY_STREAM = 1  # second entropy word of the anchor's generator (random-retrieval draws from clip.seed)


class OtherCategoryAnchor(RandomRetrieval):
    """Music of a clip of another category and another source video from the same split (content catch trial).

    As :class:`~baselines.reference.RandomRetrieval` (donor drawn uniformly, from a stream of the clip's seed,
    from the whole split, so `--limit` never changes it; fitted to the clip's duration, looped if shorter),
    restricted to donors whose category differs from the clip's. A clip with no such donor fails alone with LookupError.
    """

    def __init__(self, loop: bool = True) -> None:
        from vm_eval.models.api import ModelInfo

        super().__init__(loop)
        self.info = ModelInfo(name="anchor-other-category", family="reference",
                              extra={"anchor": "content",
                                     "about": "music of a clip of another category and source video"})

    def donor(self, clip):
        candidates = [c for c in self._pool
                      if c.category != clip.category and c.video_path != clip.video_path]
        if not candidates:
            raise LookupError(f"no clip with reference music of a category other than {clip.category!r} (and "
                              f"another source video) in the split to take an anchor from for {clip.id}")
        # A stream of its own: with random-retrieval's draw, the two would pick the same donor whenever the
        # other-category candidates happen to index alike, and a study comparing them would play one file twice.
        rng = np.random.default_rng([clip.seed, _OTHER_CATEGORY_STREAM])
        return candidates[int(rng.integers(len(candidates)))]

    def generate(self, batch):
        from vm_eval.models.api import NotApplicable

        with_music = iter(super().generate([c for c in batch if c.has_reference]))
        return [next(with_music) if c.has_reference else NotApplicable(f"clip {c.id} has no reference music")
                for c in batch]
