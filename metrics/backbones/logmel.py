"""NON-STANDARD stand-in embedding: per-window statistics of a log-mel spectrogram. Needs no weights.

It exists so the demo can compute a FAD-shaped number offline. It is not VGGish, CLAP or any published FAD backbone,
so its FAD (``fad-logmel-nonstandard``) is not comparable with any published FAD value.

Front end (numpy only, shaped after VGGish's input stage, Hershey et al. 2017): 16 kHz mono; STFT with a 25 ms
periodic Hann window (400 samples), 10 ms hop (160), 512-point FFT, magnitude; 64 triangular mel bands on the HTK
mel scale (mel = 1127 ln(1 + f / 700)) from 125 to 7500 Hz; log(mel + 0.01).
Embedding frames: 0.96 s windows with a 0.48 s hop (window k covers samples [k * 7680, k * 7680 + 15360)); each
window's embedding is the mean and the standard deviation over time of its 94 log-mel frames, 128 values
(64 means, then 64 standard deviations). Partial windows at the end are dropped, so audio shorter than 0.96 s has no
frames (shape [0, 128]).
"""
from __future__ import annotations

import numpy as np

from metrics.base import ExtractorInfo

SAMPLE_RATE = 16000
STFT_WIN = 400  # 25 ms
STFT_HOP = 160  # 10 ms
N_FFT = 512
N_MELS = 64
FMIN, FMAX = 125.0, 7500.0
LOG_OFFSET = 0.01
WINDOW_S, HOP_S = 0.96, 0.48
WINDOW = int(round(WINDOW_S * SAMPLE_RATE))  # 15360 samples
HOP = int(round(HOP_S * SAMPLE_RATE))  # 7680 samples
FRAMES_PER_WINDOW = (WINDOW - STFT_WIN) // STFT_HOP + 1  # 94 STFT frames lie wholly inside a window
FRAMES_PER_HOP = HOP // STFT_HOP  # 48


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)


def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """Triangular HTK-mel filterbank [n_fft // 2 + 1, n_mels]: filter m rises from edge m to edge m+1 and falls to
    edge m+2, edges evenly spaced in mel between fmin and fmax (Hz); peak weight 1; the DC bin is excluded."""
    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel = _hz_to_mel(freqs)
    edges = np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (mel[None, :] - lower) / (centre - lower)
    falling = (upper - mel[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling)).T
    weights[0, :] = 0.0
    return weights


class LogMelStats:
    """Per-window mean and std of 64 log-mel bands: a weightless, NON-STANDARD FAD embedding (``standard = False``).

    ``__call__(audio [channels, n] float32 at 16 kHz, 16000) -> float32 [windows, 128]``; channels are averaged.
    Deterministic (no randomness, numpy only).
    """

    standard = False

    def __init__(self) -> None:
        self.info = ExtractorInfo(
            name="logmel-nonstandard",
            version=1,
            sample_rate=SAMPLE_RATE,
            mono=True,
            params={
                "stft": {"window": "hann-periodic", "win": STFT_WIN, "hop": STFT_HOP, "n_fft": N_FFT,
                         "magnitude": True},
                "mel": {"bands": N_MELS, "fmin": FMIN, "fmax": FMAX, "scale": "htk", "log_offset": LOG_OFFSET},
                "window_s": WINDOW_S, "hop_s": HOP_S, "partial_windows": "dropped",
                "embedding": "mean and std over time of each band (128-d)",
                "standard": False,
            },
        )
        self._hann = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(STFT_WIN) / STFT_WIN)).astype(np.float64)
        self._mel = mel_filterbank()

    @property
    def dim(self) -> int:
        return 2 * N_MELS

    def log_mel(self, signal: np.ndarray) -> np.ndarray:
        """Log-mel spectrogram [stft_frames, 64] of a 1-D 16 kHz signal (float64); no padding."""
        x = np.asarray(signal, np.float64)
        if x.shape[0] < STFT_WIN:
            return np.zeros((0, N_MELS))
        frames = np.lib.stride_tricks.sliding_window_view(x, STFT_WIN)[::STFT_HOP]
        spec = np.abs(np.fft.rfft(frames * self._hann, n=N_FFT, axis=1))
        return np.log(spec @ self._mel + LOG_OFFSET)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"LogMelStats expects {SAMPLE_RATE} Hz audio, got {sample_rate}")
        a = np.asarray(audio, np.float64)
        mono = a if a.ndim == 1 else a.mean(axis=0)
        n_windows = 0 if mono.shape[0] < WINDOW else (mono.shape[0] - WINDOW) // HOP + 1
        if n_windows == 0:
            return np.zeros((0, self.dim), np.float32)
        lm = self.log_mel(mono[: (n_windows - 1) * HOP + WINDOW])
        # window k holds STFT frames [k * 48, k * 48 + 94)
        win = np.lib.stride_tricks.sliding_window_view(lm, FRAMES_PER_WINDOW, axis=0)[::FRAMES_PER_HOP]
        mean, std = win.mean(axis=-1), win.std(axis=-1)
        return np.hstack([mean, std]).astype(np.float32)
