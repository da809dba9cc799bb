"""BS.1770-4 loudness of 5.1 audio against answers from the standard's channel weights (L, R, C 1.0; Ls, Rs 1.41;
LFE not measured), unsupported channel counts refused by name, and mono to 5.0 unchanged (pyloudnorm's meter)."""
from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest

from metrics.base import ClipContext, MetricError
from metrics.loudness import ABSOLUTE_GATE_LUFS, IntegratedLoudness, integrated_lufs

SR = 48000
L, R, C, LFE, LS, RS = range(6)  # WAV/SMPTE order of 5.1
SURROUND_DB = 10 * math.log10(1.41)  # +1.49 dB


def tone(freq: float = 997.0, amp: float = 0.1, seconds: float = 3.0, sr: int = SR) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(round(seconds * sr)) / sr)


def surround(**channels: np.ndarray) -> np.ndarray:
    """[6, n] 5.1 audio with the named channels (L, R, C, LFE, Ls, Rs) set and the others silent."""
    n = len(next(iter(channels.values())))
    x = np.zeros((6, n))
    for name, signal in channels.items():
        x[{"L": L, "R": R, "C": C, "LFE": LFE, "Ls": LS, "Rs": RS}[name]] = signal
    return x


def test_a_surround_channel_reads_1_5_db_louder_than_a_front_one():
    """The same tone alone in L, R or C reads as mono (-23.01 LUFS for a 997 Hz sine at -20 dBFS peak); alone in
    Ls or Rs it reads 10 log10(1.41) dB louder, the standard's surround weight."""
    s = tone()
    front = integrated_lufs(surround(L=s), SR)
    assert front == pytest.approx(-23.01, abs=0.1)
    assert integrated_lufs(surround(R=s), SR) == pytest.approx(front, abs=1e-9)
    assert integrated_lufs(surround(C=s), SR) == pytest.approx(front, abs=1e-9)
    for ch in ("Ls", "Rs"):
        assert integrated_lufs(surround(**{ch: s}), SR) - front == pytest.approx(SURROUND_DB, abs=1e-9)


def test_the_lfe_channel_is_not_measured():
    s = tone()
    bass = tone(50.0, amp=0.9)
    assert integrated_lufs(surround(L=s, LFE=bass), SR) == integrated_lufs(surround(L=s), SR)
    assert integrated_lufs(surround(LFE=bass), SR) == -math.inf  # nothing measured: every block gated out
    assert IntegratedLoudness().score(surround(LFE=bass), SR, ClipContext("c", 3.0)) == ABSOLUTE_GATE_LUFS


def test_full_5_1_mix_sums_weighted_channel_powers():
    """One tone in all five main channels: powers add with weights 1 + 1 + 1 + 1.41 + 1.41 = 5.82 over mono."""
    s = tone()
    mono = integrated_lufs(s[None], SR)
    mix = surround(L=s, R=s, C=s, LFE=s, Ls=s, Rs=s)
    assert integrated_lufs(mix, SR) == pytest.approx(mono + 10 * math.log10(5.82), abs=1e-9)
    # 5.1 is 5.0 with an LFE channel: the same answer as the five main channels alone
    assert integrated_lufs(mix, SR) == pytest.approx(integrated_lufs(np.delete(mix, LFE, axis=0), SR), abs=1e-12)


@pytest.mark.parametrize("channels", [1, 2, 3, 5])
def test_up_to_five_channels_are_unchanged(channels):
    """Mono, stereo, 3.0 and 5.0 are what pyloudnorm's meter reads (its weights 1, 1, 1, 1.41, 1.41 by position)."""
    rng = np.random.default_rng(channels)
    x = 0.05 * rng.standard_normal((channels, 2 * SR))
    assert integrated_lufs(x, SR) == pyloudnorm.Meter(SR).integrated_loudness(x.T)
    if channels == 1:
        assert integrated_lufs(x[0], SR) == integrated_lufs(x, SR)  # 1-D mono too


@pytest.mark.parametrize("channels", [4, 7, 8])
def test_layouts_the_count_does_not_determine_are_refused_by_name(channels):
    x = np.tile(tone(), (channels, 1))
    with pytest.raises(ValueError, match=f"{channels}-channel audio is not supported"):
        integrated_lufs(x, SR)
    with pytest.raises(MetricError, match=f"{channels}-channel"):
        IntegratedLoudness().score(x, SR, ClipContext("c", 3.0))
