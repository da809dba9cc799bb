"""Music-side event extractors: beat times and onset times with madmom (bundled models, offline).

Both are audio extractors in the sense of :mod:`metrics.base`: they receive float32 audio [channels, n] (or
[n]) already resampled by the harness to ``info.sample_rate`` = 44100 Hz and downmixed to mono
(``info.mono``), and return a 1-D float64 array of event times in seconds from the start of the audio.

- :class:`BeatTimes`: ``RNNBeatProcessor`` (ensemble of the 8 bundled bidirectional LSTM beat models, 100
  frames/s activations; Böck, Krebs & Widmer, ISMIR 2014) followed by ``DBNBeatTrackingProcessor`` (the
  bar-pointer state space of Krebs, Böck & Widmer, ISMIR 2015), with the defaults of madmom's
  ``DBNBeatTracker`` program: 55-215 BPM, one tempo state per whole beat interval in frames
  (num_tempi None), transition lambda 100, observation lambda 16, activation threshold 0, beat positions
  corrected to the activation peak.
- :class:`OnsetTimes`: ``RNNOnsetProcessor`` (Eyben et al., ISMIR 2010; the bundled bidirectional models,
  100 frames/s) followed by ``OnsetPeakPickingProcessor`` with the parameters of madmom's ``OnsetDetector``
  program: threshold 0.35, smoothing 0.07 s, local maximum over +-0.01 s, onsets closer than 0.03 s combined.

madmom 0.16.1 needs the compatibility shims that ``import vm_eval`` installs (the harness imports vm_eval
first); this module only imports madmom lazily, when an extractor first runs.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from metrics.base import ExtractorInfo

MADMOM_SAMPLE_RATE = 44100  # Hz: every bundled madmom model was trained on 44.1 kHz audio
MADMOM_FPS = 100  # activation frames per second of the bundled beat and onset models


def package_version(dist: str) -> str:
    """Installed version of a distribution, read from its metadata (the package is not imported)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _mono(audio: np.ndarray, sample_rate: int, expected: int) -> np.ndarray:
    if int(sample_rate) != expected:
        raise ValueError(f"madmom extractors need audio at {expected} Hz, got {sample_rate} Hz")
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:
        a = a.mean(axis=0)
    if a.ndim != 1:
        raise ValueError(f"audio must be [channels, n] or [n], got shape {np.shape(audio)}")
    return np.ascontiguousarray(a)


class _Madmom:
    """Builds the madmom processors on first use (not pickled, so instances travel to worker processes)."""

    info: ExtractorInfo

    def __init__(self) -> None:
        self._procs: Any = None

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_procs"} | {"_procs": None}

    def _build(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _signal(self, audio: np.ndarray, sample_rate: int):
        from madmom.audio.signal import Signal

        return Signal(_mono(audio, sample_rate, MADMOM_SAMPLE_RATE), sample_rate=MADMOM_SAMPLE_RATE)


class BeatTimes(_Madmom):
    """Beat times (s) of music: madmom RNNBeatProcessor + DBNBeatTrackingProcessor at 100 frames/s.

    Input: float32 audio at 44100 Hz, mono (the harness prepares it from ``info``). Output: sorted 1-D float64
    beat times in seconds (10 ms resolution); empty for silence.
    """

    def __init__(
        self,
        min_bpm: float = 55.0,
        max_bpm: float = 215.0,
        num_tempi: int | None = None,
        transition_lambda: float = 100.0,
        observation_lambda: float = 16.0,
        threshold: float = 0.0,
        correct: bool = True,
    ) -> None:
        super().__init__()
        self.params = {
            "activations": "RNNBeatProcessor(online=False, bundled BEATS_BLSTM x8 ensemble)",
            "tracker": "DBNBeatTrackingProcessor", "fps": MADMOM_FPS, "min_bpm": float(min_bpm),
            "max_bpm": float(max_bpm), "num_tempi": None if num_tempi is None else int(num_tempi),
            "transition_lambda": float(transition_lambda), "observation_lambda": float(observation_lambda),
            "threshold": float(threshold),
            "correct": bool(correct), "madmom": package_version("madmom"),
        }
        self.info = ExtractorInfo(name="madmom-beats", version=1, sample_rate=MADMOM_SAMPLE_RATE, mono=True,
                                  params=self.params)

    def _build(self):
        from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor

        p = self.params
        return RNNBeatProcessor(online=False), DBNBeatTrackingProcessor(
            min_bpm=p["min_bpm"], max_bpm=p["max_bpm"], num_tempi=p["num_tempi"],
            transition_lambda=p["transition_lambda"], observation_lambda=p["observation_lambda"],
            threshold=p["threshold"], correct=p["correct"], fps=MADMOM_FPS)

    def activations(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Beat activation function (probability of a beat per 10 ms frame), float [n_frames]."""
        if self._procs is None:
            self._procs = self._build()
        return np.asarray(self._procs[0](self._signal(audio, sample_rate)), dtype=np.float64)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        if np.asarray(audio).size < MADMOM_SAMPLE_RATE // 10:  # < 0.1 s: nothing to track
            return np.zeros(0)
        act = self.activations(audio, sample_rate)
        return np.sort(np.asarray(self._procs[1](act), dtype=np.float64))


class OnsetTimes(_Madmom):
    """Onset times (s) of music: madmom RNNOnsetProcessor + OnsetPeakPickingProcessor at 100 frames/s.

    Input: float32 audio at 44100 Hz, mono. Output: sorted 1-D float64 onset times in seconds (10 ms
    resolution). Parameters default to madmom's ``OnsetDetector`` program.
    """

    def __init__(
        self,
        threshold: float = 0.35,
        smooth: float = 0.07,
        pre_max: float = 0.01,
        post_max: float = 0.01,
        combine: float = 0.03,
    ) -> None:
        super().__init__()
        self.params = {
            "activations": "RNNOnsetProcessor(online=False, bundled ONSETS_BRNN)",
            "peak_picking": "OnsetPeakPickingProcessor", "fps": MADMOM_FPS, "threshold": float(threshold),
            "smooth_s": float(smooth), "pre_max_s": float(pre_max), "post_max_s": float(post_max),
            "pre_avg_s": 0.0, "post_avg_s": 0.0, "combine_s": float(combine), "madmom": package_version("madmom"),
        }
        self.info = ExtractorInfo(name="madmom-onsets", version=1, sample_rate=MADMOM_SAMPLE_RATE, mono=True,
                                  params=self.params)

    def _build(self):
        from madmom.features.onsets import OnsetPeakPickingProcessor, RNNOnsetProcessor

        p = self.params
        return RNNOnsetProcessor(online=False), OnsetPeakPickingProcessor(
            threshold=p["threshold"], smooth=p["smooth_s"], pre_max=p["pre_max_s"], post_max=p["post_max_s"],
            pre_avg=0.0, post_avg=0.0, combine=p["combine_s"], fps=MADMOM_FPS)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        if np.asarray(audio).size < MADMOM_SAMPLE_RATE // 10:
            return np.zeros(0)
        if self._procs is None:
            self._procs = self._build()
        act = self._procs[0](self._signal(audio, sample_rate))
        return np.sort(np.asarray(self._procs[1](act), dtype=np.float64))
