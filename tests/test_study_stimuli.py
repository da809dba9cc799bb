"""Stimulus preparation against known answers: loudness to -23 LUFS, true peak of a sine whose samples miss its
crest, the ceiling on peaky material, silent audio, muxing (one video and one audio stream, the video's length)
and the content cache."""
from __future__ import annotations

import math

import av
import numpy as np
import pyloudnorm
import pytest

import studies.stimuli as stimuli
from studies.stimuli import (
    StimulusError, integrated_loudness, make_stimulus, normalize_loudness, stereo_downmix, stimulus_key,
    true_peak_dbtp,
)
from vm_eval.media import Audio, MediaError, load_audio, probe_video, write_video

FS = 48000


def fade(n: int, k: int = 480) -> np.ndarray:
    """Raised-cosine fade in and out over k samples: an abrupt start rings after reconstruction (a real overshoot
    a true-peak meter rightly reports), which would blur the analytic answers below."""
    w = np.ones(n)
    ramp = np.sin(np.linspace(0, np.pi / 2, k)) ** 2
    w[:k], w[-k:] = ramp, ramp[::-1]
    return w


def music(seconds: float, sr: int = FS, channels: int = 2, level: float = 0.3, seed: int = 0) -> Audio:
    """Music-like: a few partials under a slowly varying envelope, a little noise, different per channel."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sr)
    t = np.arange(n) / sr
    env = np.convolve(rng.standard_normal(n), np.ones(sr // 50) / (sr // 50), mode="same")
    env = 0.5 + 0.5 * env / np.abs(env).max()
    chans = [level * env * (np.sin(2 * np.pi * 220 * t + c) + 0.5 * np.sin(2 * np.pi * 331 * t)
                            + 0.2 * np.sin(2 * np.pi * 1760 * t + 2 * c)) + 0.01 * level * rng.standard_normal(n)
             for c in range(channels)]
    return Audio(np.stack(chans) * fade(n), sr)


def quarter_rate_sine(amplitude: float, seconds: float = 2.0) -> Audio:
    """sin(2 pi (fs/4) t + pi/4): every sample is +-A/sqrt(2), the waveform's crest A lies between samples."""
    n = round(seconds * FS)
    return Audio(amplitude * np.sin(np.pi / 2 * np.arange(n) + np.pi / 4) * fade(n), FS)


def meter(audio: Audio) -> float:
    return pyloudnorm.Meter(audio.sample_rate).integrated_loudness(audio.samples.T.astype(np.float64))


@pytest.mark.parametrize("level,sr,channels", [(0.02, 48000, 2), (0.3, 44100, 1), (0.9, 32000, 2)])
def test_loudness_reaches_the_target(level, sr, channels):
    out, rec = normalize_loudness(music(4.0, sr, channels, level))
    assert not rec.peak_limited
    assert abs(meter(out) + 23.0) < 0.1 and abs(rec.output_lufs + 23.0) < 0.1
    assert rec.gain_db == pytest.approx(-23.0 - rec.input_lufs)
    assert rec.output_true_peak_dbtp <= -1.0
    assert out.sample_rate == sr and out.samples.shape == (channels, round(4.0 * sr))
    assert out.samples.dtype == np.float32


def test_true_peak_finds_the_crest_between_samples():
    a = quarter_rate_sine(0.5)
    sample_peak = 20 * math.log10(float(np.abs(a.samples).max()))
    assert sample_peak == pytest.approx(20 * math.log10(0.5) - 3.0103, abs=1e-3)
    assert true_peak_dbtp(a) == pytest.approx(20 * math.log10(0.5), abs=0.02)
    # below fs/2 the 4x interpolator is accurate for any frequency and phase; silence has no peak
    n = 2 * FS
    for f, phase in [(997.0, 0.3), (15000.0, 1.1), (20000.0, 2.0)]:
        tone = Audio(0.25 * np.sin(2 * np.pi * f * np.arange(n) / FS + phase) * fade(n), FS)
        assert true_peak_dbtp(tone) == pytest.approx(20 * math.log10(0.25), abs=0.02)
    assert true_peak_dbtp(Audio(np.zeros((1, 100)), FS)) == -math.inf


def test_ceiling_limits_inter_sample_peaks():
    """The sine needs +5.7 dB to reach 0 LUFS; that would put its true peak at -0.3 dBTP, above the ceiling,
    while its samples stay 3 dB lower (a sample-peak limiter would miss it)."""
    out, rec = normalize_loudness(quarter_rate_sine(0.5), target_lufs=0.0, ceiling_dbtp=-1.0)
    assert rec.peak_limited
    assert true_peak_dbtp(out) <= -1.0 + 0.05 and rec.output_true_peak_dbtp <= -1.0 + 0.05
    assert rec.output_true_peak_dbtp == pytest.approx(-1.0, abs=0.01)
    assert 20 * math.log10(float(np.abs(out.samples).max())) == pytest.approx(-4.01, abs=0.02)
    assert rec.output_lufs < 0.0 and rec.output_lufs == pytest.approx(rec.input_lufs + rec.gain_db, abs=0.01)


def test_peaky_material_ends_quieter_than_the_target():
    """A quiet bed with sparse loud clicks at fs/4: at -23 LUFS the clicks would exceed -1 dBTP, so the gain is
    lowered and the record shows the lower loudness."""
    bed = music(4.0, FS, 2, level=0.01)
    x = bed.samples.astype(np.float64)
    burst = 0.9 * np.sin(np.pi / 2 * np.arange(96) + np.pi / 4) * np.hanning(96)
    for start in range(FS // 4, x.shape[1] - 96, FS // 2):
        x[:, start:start + 96] += burst
    out, rec = normalize_loudness(Audio(x, FS))
    assert rec.peak_limited and rec.output_lufs < -23.0 - 0.5
    assert rec.output_true_peak_dbtp <= -1.0 + 0.05 and true_peak_dbtp(out) <= -1.0 + 0.05
    assert rec.output_lufs == pytest.approx(meter(out), abs=1e-6)


def test_silent_or_unmeasurable_audio_is_refused():
    with pytest.raises(StimulusError, match="silent"):
        normalize_loudness(Audio(np.zeros((2, FS)), FS))
    quiet = Audio(1e-6 * np.random.default_rng(0).standard_normal((1, 2 * FS)), FS)  # every block under -70 LUFS
    with pytest.raises(StimulusError, match="-70 LUFS"):
        normalize_loudness(quiet)
    with pytest.raises(StimulusError, match="shorter than one 0.4 s"):
        integrated_loudness(Audio(np.ones((1, 100)) * 0.1, FS))


@pytest.fixture(scope="module")
def clip_video(tmp_path_factory):
    """2.5 s at 10 fps with its own (loud, high-pitched) soundtrack that the stimulus must drop."""
    frames = np.zeros((25, 32, 48, 3), np.uint8)
    frames[:] = (np.arange(25) * 10)[:, None, None, None].astype(np.uint8)
    n = 16000 * 5 // 2
    original = Audio(0.5 * np.sin(2 * np.pi * 3000 * np.arange(n) / 16000)[None], 16000)
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames, 10, audio=original)


def streams(path) -> tuple[int, int]:
    with av.open(str(path)) as c:
        return len(c.streams.video), len(c.streams.audio)


def test_make_stimulus_muxes_normalised_music(clip_video, tmp_path):
    song = music(3.0, 32000, 2, level=0.05, seed=4)
    rec = make_stimulus(clip_video, song, tmp_path / "s.mp4")
    assert streams(tmp_path / "s.mp4") == (1, 1)
    info = probe_video(tmp_path / "s.mp4")
    assert info.duration_s == pytest.approx(2.5, abs=1e-6) and info.audio_sample_rate == 48000  # one format
    assert info.audio_channels == 2 and rec.sample_rate == 48000
    assert rec.duration_s == pytest.approx(2.5, abs=1e-6) and not rec.cached
    assert abs(rec.loudness.output_lufs + 23.0) < 0.1 and rec.loudness.output_true_peak_dbtp <= -1.0
    back = load_audio(tmp_path / "s.mp4")
    assert back.num_samples == 120000  # fitted to the video's length at 48 kHz
    assert abs(meter(back) + 23.0) < 0.3  # Opus changes the level a little
    # the music replaced the original soundtrack
    want = stimuli.to_stimulus_audio(song, 2.5).samples[0]
    assert np.corrcoef(want, back.samples[0])[0, 1] > 0.99


def test_make_stimulus_is_cached_by_content(clip_video, tmp_path, monkeypatch):
    song = music(2.5, 32000, 1, seed=5)
    first = make_stimulus(clip_video, song, tmp_path / "a.mp4", cache_dir=tmp_path / "cache")
    assert (tmp_path / "cache" / f"{first.key}.mp4").is_file()

    def no_encoding(*args, **kwargs):
        raise AssertionError("re-encoded a cached stimulus")

    monkeypatch.setattr(stimuli, "mux_stimulus", no_encoding)
    again = make_stimulus(clip_video, song, tmp_path / "a.mp4")  # same place: its sidecar holds the key
    assert again.cached and again.key == first.key and again.loudness == first.loudness
    elsewhere = make_stimulus(clip_video, song, tmp_path / "other" / "b.mp4", cache_dir=tmp_path / "cache")
    assert elsewhere.cached and (tmp_path / "other" / "b.mp4").read_bytes() == (tmp_path / "a.mp4").read_bytes()
    # other settings or other music: another key, so real work
    assert stimulus_key(clip_video, song, -20.0) != first.key
    louder = Audio(song.samples * 2, song.sample_rate)
    assert stimulus_key(clip_video, louder) != first.key
    with pytest.raises(AssertionError, match="re-encoded"):
        make_stimulus(clip_video, louder, tmp_path / "a.mp4", cache_dir=tmp_path / "cache")


def test_make_stimulus_errors_name_the_problem(clip_video, tmp_path):
    with pytest.raises(MediaError, match="file not found"):
        make_stimulus(tmp_path / "missing.mp4", music(1.0), tmp_path / "x.mp4")
    with pytest.raises(StimulusError, match="clip.mp4: audio is silent"):
        make_stimulus(clip_video, Audio(np.zeros((1, 32000 * 3)), 32000), tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()


# ---------------------------------------------------------------------------------------------- 5.1 music
def five_one(seconds: float, sr: int = FS, **channels: float) -> Audio:
    """5.1 in WAV order (L, R, C, LFE, Ls, Rs): a 997 Hz tone of the given amplitude in each named channel."""
    order = ("L", "R", "C", "LFE", "Ls", "Rs")
    n = round(seconds * sr)
    s = np.sin(2 * np.pi * 997 * np.arange(n) / sr) * fade(n)
    return Audio(np.stack([channels.get(name, 0.0) * s for name in order]), sr)


def test_5_1_loudness_and_stereo_downmix():
    """BS.1770-4 reads 5.1 without its LFE (surrounds +1.5 dB); the stimulus downmix (BS.775: C and Ls/Rs at -3 dB,
    no LFE) keeps a centre tone's loudness, puts a surround tone 1.5 + 3.0 dB lower, and drops the LFE."""
    front = integrated_loudness(five_one(3.0, L=0.1))
    assert front == pytest.approx(-23.01, abs=0.1)
    assert integrated_loudness(five_one(3.0, Ls=0.1)) - front == pytest.approx(10 * math.log10(1.41), abs=1e-6)
    centre = stereo_downmix(five_one(3.0, C=0.1, LFE=0.5))
    assert centre.channels == 2
    np.testing.assert_allclose(centre.samples[0], centre.samples[1])
    np.testing.assert_allclose(centre.samples[0], math.sqrt(0.5) * five_one(3.0, C=0.1).samples[2], atol=1e-7)
    assert integrated_loudness(centre) == pytest.approx(front, abs=1e-3)
    left_surround = stereo_downmix(five_one(3.0, Ls=0.1))
    assert not np.any(left_surround.samples[1])
    assert integrated_loudness(left_surround) == pytest.approx(front - 10 * math.log10(2), abs=1e-3)
    assert stereo_downmix(music(1.0, FS, 2)).samples.shape == (2, FS)  # stereo and mono pass through
    with pytest.raises(StimulusError, match="8-channel"):
        stereo_downmix(Audio(np.zeros((8, FS)), FS))


def test_make_stimulus_from_5_1_music(clip_video, tmp_path):
    """5.1 music becomes a stereo stimulus at -23 LUFS, measured as muxed: the centre's content is in it."""
    song = music(3.0, 32000, 6, level=0.05, seed=6)
    rec = make_stimulus(clip_video, song, tmp_path / "s51.mp4")
    back = load_audio(tmp_path / "s51.mp4")
    assert back.channels == 2 and abs(rec.loudness.output_lufs + 23.0) < 0.1
    assert abs(meter(back) + 23.0) < 0.3  # what raters hear is what was normalised
    want = stimuli.to_stimulus_audio(song, 2.5).samples  # L alone would correlate about 0.6 with it
    assert all(np.corrcoef(want[i], back.samples[i])[0, 1] > 0.99 for i in (0, 1))
    with pytest.raises(StimulusError, match="4-channel"):
        make_stimulus(clip_video, music(3.0, 32000, 4), tmp_path / "quad.mp4")
