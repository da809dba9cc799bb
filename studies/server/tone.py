"""The volume-check tone: a short 1 kHz sine as a 16-bit PCM WAV, generated on the server (no file shipped).

Its RMS level is set to the stimuli's integrated loudness target in dBFS (a 1 kHz sine's K-weighted loudness is
within about 1 dB of its RMS level, ITU-R BS.1770-4), so the volume a rater picks for the tone is the volume at
which the stimuli play. 20 ms raised-cosine fades avoid clicks.
"""
from __future__ import annotations

import io
import math
import wave
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def tone_wav(level_dbfs: float = -23.0, seconds: float = 3.0, freq_hz: float = 1000.0, sample_rate: int = 44_100,
             fade_s: float = 0.02) -> bytes:
    """WAV bytes of a mono sine whose RMS is `level_dbfs` dBFS (peak = RMS + 3.01 dB), with fades in and out."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    amp = math.sqrt(2.0) * 10 ** (level_dbfs / 20.0)
    x = amp * np.sin(2 * np.pi * freq_hz * t)
    nf = max(1, int(fade_s * sample_rate))
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(nf) / nf)
    x[:nf] *= ramp
    x[-nf:] *= ramp[::-1]
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()
