"""Duration error, BS.1770 loudness and metric identity keys against hand-computed answers."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from metrics.base import ClipContext, MetricError, MetricInfo
from metrics.duration import DurationError
from metrics.loudness import ABSOLUTE_GATE_LUFS, IntegratedLoudness

RESAMPLER = "scipy.signal.resample_poly(window=('kaiser', 5.0))"


def sine(freq: float, seconds: float, sr: int, amp: float = 1.0) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return amp * np.sin(2 * np.pi * freq * t)


def ctx(duration_s: float = 5.0) -> ClipContext:
    return ClipContext(clip_id="clip-0", duration_s=duration_s)


# ---------------------------------------------------------------------------------------------- duration
@pytest.mark.parametrize(
    ("n", "sr", "video_s", "expected"),
    [(32000 * 10, 32000, 10.0, 0.0), (32000 * 8, 32000, 10.0, 2.0), (48000 * 12, 48000, 10.0, 2.0),
     (16000 * 3 + 8000, 16000, 3.0, 0.5), (0, 16000, 4.0, 4.0)],
)
def test_duration_error(n, sr, video_s, expected):
    audio = np.zeros((2, n), np.float32)
    assert DurationError().score(audio, sr, ctx(video_s)) == pytest.approx(expected, abs=1e-12)
    assert DurationError().score(audio[0], sr, ctx(video_s)) == pytest.approx(expected, abs=1e-12)  # 1-D too


def test_duration_info():
    info = DurationError.info
    assert info.name == "duration-error" and info.units == "s" and info.higher_is_better is False


# ---------------------------------------------------------------------------------------------- loudness
@pytest.mark.parametrize("sr", [48000, 44100, 32000])
def test_loudness_of_a_mono_997hz_sine(sr):
    """BS.1770: a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS; 20 dB lower reads -23.01."""
    m = IntegratedLoudness()
    s = sine(997, 5.0, sr)
    assert m.score(s[None, :], sr, ctx()) == pytest.approx(-3.01, abs=0.1)
    assert m.score(0.1 * s[None, :], sr, ctx()) == pytest.approx(-23.01, abs=0.1)
    assert m.score(0.1 * s[None, :].astype(np.float32), sr, ctx()) == pytest.approx(-23.01, abs=0.1)


@pytest.mark.parametrize("sr", [48000, 32000])
def test_loudness_of_a_stereo_sine_sums_channels(sr):
    """The same sine on both channels adds their powers: +3.01 LU over mono, so about 0.0 and -20.0 LUFS."""
    m = IntegratedLoudness()
    s = sine(997, 5.0, sr)
    assert m.score(np.stack([s, s]), sr, ctx()) == pytest.approx(0.0, abs=0.1)
    assert m.score(np.stack([0.1 * s, 0.1 * s]), sr, ctx()) == pytest.approx(-20.0, abs=0.1)
    mono = m.score(s[None, :], sr, ctx())
    assert m.score(np.stack([s, s]), sr, ctx()) - mono == pytest.approx(10 * np.log10(2), abs=0.01)


def test_loudness_gates_and_floor():
    m = IntegratedLoudness()
    sr = 48000
    assert m.score(np.zeros((2, 5 * sr)), sr, ctx()) == ABSOLUTE_GATE_LUFS == -70.0  # silence: the floor
    assert m.score(sine(997, 5.0, sr, amp=1e-5)[None, :], sr, ctx()) == -70.0  # ~ -103 LUFS: under the gate
    # relative gate: 4 s of tone (-23.01) then 4 s at -63 LUFS (above the absolute gate, under the relative one).
    # 400 ms blocks every 100 ms: 37 blocks hold only tone, 3 straddle the change (3/4, 1/2, 1/4 of the tone's
    # power, all above the relative gate), the 37 quiet ones are gated out -> mean power 38.5/40 of the tone's.
    loud_then_quiet = np.concatenate([sine(997, 4.0, sr, amp=0.1), sine(997, 4.0, sr, amp=0.001)])
    expected = -23.01 + 10 * np.log10(38.5 / 40)
    assert m.score(loud_then_quiet[None, :], sr, ctx()) == pytest.approx(expected, abs=0.1)
    # ungated, the quiet half would halve the power (-26 LUFS): the gate must be what keeps it near -23.2
    assert m.score(loud_then_quiet[None, :], sr, ctx()) > -23.01 - 1.0


def test_loudness_needs_one_block():
    m = IntegratedLoudness()
    sr = 48000
    with pytest.raises(MetricError):
        m.score(sine(997, 0.3, sr)[None, :], sr, ctx())
    with pytest.raises(MetricError):
        m.score(np.zeros((1, int(0.4 * sr) - 1)), sr, ctx())
    # exactly one block is measurable
    assert m.score(sine(997, 0.4, sr)[None, :], sr, ctx()) == pytest.approx(-3.01, abs=0.1)


# ---------------------------------------------------------------------------------------------- identity
BASE = MetricInfo(
    name="fad-vggish", version=1, units="", higher_is_better=False, description="FAD on VGGish embeddings",
    needs_reference=True, sample_rate=16000, mono=True, params={"windows_s": 0.96, "pca": False},
    backbone={"name": "vggish", "sha256": "a" * 64},
)


def test_key_is_stable():
    k = BASE.key(RESAMPLER)
    assert k == BASE.key(RESAMPLER)
    assert len(k) == 16 and int(k, 16) >= 0
    twin = MetricInfo(
        name="fad-vggish", version=1, units="", higher_is_better=False, description="FAD on VGGish embeddings",
        needs_reference=True, sample_rate=16000, mono=True, params={"pca": False, "windows_s": 0.96},  # other order
        backbone={"sha256": "a" * 64, "name": "vggish"},
    )
    assert twin.key(RESAMPLER) == k
    # the description is documentation, not identity
    assert dataclasses.replace(BASE, description="reworded").key(RESAMPLER) == k


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"params": {"windows_s": 0.96, "pca": True}},
        {"params": {"windows_s": 0.96}},
        {"sample_rate": 32000},
        {"sample_rate": None},
        {"backbone": {"name": "vggish", "sha256": "b" * 64}},
        {"backbone": {"name": "clap-music", "sha256": "a" * 64}},
        {"backbone": None},
        {"mono": False},
        {"name": "fad-clap"},
        {"needs_reference": False},
    ],
)
def test_key_changes_with_identity(change):
    assert dataclasses.replace(BASE, **change).key(RESAMPLER) != BASE.key(RESAMPLER)


def test_key_changes_with_resampler_when_resampling():
    assert BASE.key(RESAMPLER) != BASE.key("librosa.resample(res_type='soxr_hq')")
    assert BASE.identity(RESAMPLER)["resampler"] == RESAMPLER
    # a metric at the audio's native rate never resamples, so the resampler is not part of its identity
    native = dataclasses.replace(BASE, sample_rate=None)
    assert native.identity(RESAMPLER)["resampler"] is None
    assert native.key(RESAMPLER) == native.key("anything else")


def test_real_metric_keys_are_distinct():
    assert IntegratedLoudness.info.key(RESAMPLER) != DurationError.info.key(RESAMPLER)
    assert "description" not in IntegratedLoudness.info.identity(RESAMPLER)
