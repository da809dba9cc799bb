"""Audio as float32 arrays shaped [channels, samples]: load (any container), resample, write WAV, level stats.

Conventions: sample rates in Hz, times in seconds, samples in [-1, 1] full scale (values beyond are kept so
clipping can be detected), downmix to mono is the mean of channels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from vm_eval.fsutil import atomic_target
from vm_eval.media.errors import MediaError

#: The one resampler of the suite; its name is recorded in provenance and in every metric's identity.
RESAMPLER = "scipy.signal.resample_poly(window=('kaiser', 5.0))"
SILENCE_DBFS = -60.0  # RMS below this counts as silent
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped
_SOUNDFILE_EXTS = {".wav", ".flac", ".ogg", ".aiff", ".aif"}


@dataclass
class Audio:
    """Samples float32 [channels, n] at `sample_rate` Hz."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        s = np.asarray(self.samples, dtype=np.float32)
        if s.ndim == 1:
            s = s[None, :]
        if s.ndim != 2:
            raise ValueError(f"audio samples must be [channels, n], got shape {s.shape}")
        self.samples = s
        self.sample_rate = int(self.sample_rate)
        if self.sample_rate <= 0:
            raise ValueError(f"sample rate must be a positive number of Hz, got {self.sample_rate}")

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    def mono(self) -> "Audio":
        """Downmix by the mean of channels."""
        if self.channels == 1:
            return self
        return Audio(self.samples.mean(axis=0, keepdims=True), self.sample_rate)

    def crop(self, start_s: float = 0.0, end_s: float | None = None) -> "Audio":
        a = max(0, round(start_s * self.sample_rate))
        b = self.num_samples if end_s is None else max(a, round(end_s * self.sample_rate))
        return Audio(self.samples[:, a:b], self.sample_rate)

    def fit_length(self, duration_s: float, loop: bool = False) -> "Audio":
        """Trim to `duration_s`, or extend: repeat the audio if `loop`, else pad with silence."""
        n = round(duration_s * self.sample_rate)
        if self.num_samples >= n:
            return Audio(self.samples[:, :n], self.sample_rate)
        if loop and self.num_samples > 0:
            reps = math.ceil(n / self.num_samples)
            return Audio(np.tile(self.samples, (1, reps))[:, :n], self.sample_rate)
        pad = np.zeros((self.channels, n - self.num_samples), dtype=np.float32)
        return Audio(np.concatenate([self.samples, pad], axis=1), self.sample_rate)


@dataclass(frozen=True)
class AudioStats:
    """Level facts about one audio signal; `silent` and `clipped` are the per-clip flags metrics report."""

    peak_dbfs: float
    rms_dbfs: float
    clipped_fraction: float

    @property
    def silent(self) -> bool:
        return self.rms_dbfs < SILENCE_DBFS

    @property
    def clipped(self) -> bool:
        return self.clipped_fraction > 1e-4  # more than 1 sample in 10,000 at full scale


def _dbfs(x: float) -> float:
    return 20.0 * math.log10(x) if x > 0 else -math.inf


def audio_stats(audio: Audio) -> AudioStats:
    s = audio.samples
    if s.size == 0:
        return AudioStats(-math.inf, -math.inf, 0.0)
    peak = float(np.max(np.abs(s)))
    rms = float(np.sqrt(np.mean(np.square(s, dtype=np.float64))))
    return AudioStats(_dbfs(peak), _dbfs(rms), float(np.mean(np.abs(s) >= CLIP_LEVEL)))


def resample(audio: Audio, sample_rate: int) -> Audio:
    """Resample with :data:`RESAMPLER` (polyphase, exact rational ratio)."""
    if audio.sample_rate == sample_rate:
        return audio
    from scipy.signal import resample_poly

    ratio = Fraction(int(sample_rate), audio.sample_rate)
    out = resample_poly(audio.samples, ratio.numerator, ratio.denominator, axis=1, window=("kaiser", 5.0))
    return Audio(out.astype(np.float32), sample_rate)


def _load_soundfile(path: Path, start_s: float, end_s: float | None) -> Audio:
    import soundfile as sf

    try:
        info = sf.info(str(path))
        a = max(0, round(start_s * info.samplerate))
        b = None if end_s is None else max(a, round(end_s * info.samplerate))
        data, sr = sf.read(str(path), start=a, stop=b, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError on corrupt files
        raise MediaError(path, f"cannot decode audio ({e})") from e
    return Audio(data.T, sr)


def _load_av(path: Path, start_s: float, end_s: float | None) -> Audio:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(path, "has no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=stream.rate)
            chunks = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
            sr = stream.rate
            # AAC pads its last frame; the stream's declared duration is the true length.
            declared = round(float(stream.duration * stream.time_base) * sr) if stream.duration else None
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(path, f"cannot decode audio ({type(e).__name__}: {e})") from e
    if not chunks:
        raise MediaError(path, "audio stream holds no samples")
    samples = np.concatenate(chunks, axis=1)
    if declared:
        samples = samples[:, :declared]
    return Audio(samples, sr).crop(start_s, end_s)


def load_audio(
    path: str | Path,
    sample_rate: int | None = None,
    mono: bool = False,
    start_s: float = 0.0,
    end_s: float | None = None,
) -> Audio:
    """Load audio from an audio file or a video's first audio track.

    `sample_rate=None` keeps the native rate; otherwise :data:`RESAMPLER` is applied. `start_s`/`end_s` select a
    span in seconds. Raises :class:`MediaError` naming the file when it is missing, undecodable or empty.
    """
    p = Path(path)
    if not p.is_file():
        raise MediaError(p, "file not found")
    if p.stat().st_size == 0:
        raise MediaError(p, "file is empty (0 bytes)")
    audio = _load_soundfile(p, start_s, end_s) if p.suffix.lower() in _SOUNDFILE_EXTS else _load_av(p, start_s, end_s)
    if audio.num_samples == 0:
        raise MediaError(p, f"no samples in the span {start_s:.3f}-{end_s if end_s is not None else 'end'} s")
    if mono:
        audio = audio.mono()
    if sample_rate is not None:
        audio = resample(audio, sample_rate)
    return audio


def write_wav(path: str | Path, audio: Audio) -> Path:
    """Write 32-bit float WAV atomically (temp file + rename): a crash never leaves a half-written file.

    Written by scipy rather than libsndfile: libsndfile adds a PEAK chunk stamped with the wall-clock time, so the
    same samples would give different bytes (and content hashes) on every write.
    """
    from scipy.io import wavfile

    with atomic_target(path) as tmp:
        wavfile.write(tmp, audio.sample_rate, np.ascontiguousarray(audio.samples.T, dtype=np.float32))
    return Path(path)
