"""Headphone screening stimuli: the Huggins-pitch test (Milne et al. 2021, "An online headphone screening test
based on dichotic pitch", Behavior Research Methods 53).

A round plays three noises; one carries a Huggins pitch and the rater says which. The pitch exists only between
the ears: the same white noise goes to both ears, except that in a narrow band around `frequency_hz` (here
+-`bandwidth` of it, 6% by default) the right ear's copy is phase-inverted (interaural phase difference pi). Over
headphones the inverted band is heard as a faint tone; over loudspeakers the two channels mix in the air and the
cue is lost, so loudspeaker listeners score near chance (1/3 per round). The other two noises are diotic (both ears
get the identical signal). Each channel alone is plain white noise in every interval (the inversion changes no
magnitude), so nothing is heard with one ear and nothing shows in either channel's spectrum.

Every interval has the same format and length (16-bit stereo PCM WAV), so its size and header are the same
whichever interval is the target; each interval's noise is drawn afresh, so no two files are equal. Everything is
a pure function of an integer seed: the server derives the seed from its secret and the rater id (which interval is
the target is never sent to the browser) and generates the files on request.
"""
from __future__ import annotations

import io
import wave
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

INTERVALS = 3  # noises per round


@dataclass(frozen=True)
class HugginsSpec:
    """Signal parameters. Level is the RMS of each channel in dBFS; fades are raised-cosine ramps (s)."""

    sample_rate: int = 48_000
    interval_s: float = 1.0
    frequency_hz: float = 600.0
    bandwidth: float = 0.06  # half-width of the inverted band, relative to frequency_hz
    level_dbfs: float = -23.0
    fade_s: float = 0.02

    @property
    def band_hz(self) -> tuple[float, float]:
        """(low, high) edges of the phase-inverted band, Hz."""
        return self.frequency_hz * (1 - self.bandwidth), self.frequency_hz * (1 + self.bandwidth)

    @property
    def n_samples(self) -> int:
        return int(round(self.interval_s * self.sample_rate))


def _rng(seed: int, *tag: int) -> np.random.Generator:
    seed &= (1 << 64) - 1
    return np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32, *tag])


def targets(seed: int, trials: int) -> list[int]:
    """The target interval of each round (0-based, uniform over the three), a pure function of `seed`."""
    return [int(x) for x in _rng(seed, 0).integers(INTERVALS, size=trials)]


def huggins_interval(seed: int, trial: int, interval: int, target: bool, spec: HugginsSpec = HugginsSpec()) \
        -> np.ndarray:
    """One interval as float samples, shape (n, 2) = (left, right), in [-1, 1].

    Diotic (right == left, sample for sample) unless `target`, where the right channel is the left one with the
    Fourier components inside :attr:`HugginsSpec.band_hz` negated. The noise depends on (seed, trial, interval)
    only, not on `target`: a target and a diotic interval of the same slot share their left channel.
    """
    n = spec.n_samples
    sigma = 10 ** (spec.level_dbfs / 20.0)
    left = _rng(seed, 1, trial, interval).standard_normal(n) * sigma
    if target:
        spectrum = np.fft.rfft(left)
        f = np.fft.rfftfreq(n, 1.0 / spec.sample_rate)
        lo, hi = spec.band_hz
        spectrum[(f >= lo) & (f <= hi)] *= -1.0  # interaural phase difference pi in the band only
        right = np.fft.irfft(spectrum, n)
    else:
        right = left.copy()
    x = np.stack([left, right], axis=1)
    nf = int(spec.fade_s * spec.sample_rate)
    if nf:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(nf) / nf)  # same ramps on both ears: the phase relation holds
        x[:nf] *= ramp[:, None]
        x[-nf:] *= ramp[::-1, None]
    return x


def wav_bytes(x: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV of float samples (n, channels) in [-1, 1]; the header depends on the shape only."""
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def interval_wav(seed: int, trial: int, interval: int, trials: int, spec: HugginsSpec = HugginsSpec()) -> bytes:
    """The WAV file of one interval of round `trial` (0-based) of the screening seeded by `seed`."""
    if not (0 <= trial < trials and 0 <= interval < INTERVALS):
        raise IndexError(f"no interval {interval} of round {trial} (rounds: {trials}, intervals: {INTERVALS})")
    target = targets(seed, trials)[trial] == interval
    return wav_bytes(huggins_interval(seed, trial, interval, target, spec), spec.sample_rate)


def score(answers: Sequence[int], seed: int) -> int:
    """Rounds answered right; `answers` are 0-based interval indices, one per round."""
    return sum(int(a == t) for a, t in zip(answers, targets(seed, len(answers))))
