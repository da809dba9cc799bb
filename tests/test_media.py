"""Media I/O against known answers: exact WAV round trips, resampling, spans, errors that name the file,
level flags, frame timing of decode_frames, cut_video and mux_audio."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from vm_eval.media import (
    RESAMPLER, Audio, MediaError, audio_stats, cut_video, decode_frames, load_audio, mux_audio, probe_video,
    resample, write_video, write_wav,
)

SRC_FPS = 10
N_FRAMES = 37  # 3.7 s: a duration that is not a whole number of seconds
CODEC_TOL = 6  # flat colours survive H.264 + yuv420p within a few levels


def colour(k: int) -> np.ndarray:
    """A distinct flat RGB colour for source frame k (pairwise far apart in at least one channel)."""
    return np.array([(k * 37) % 256, (k * 91 + 40) % 256, (k * 53 + 100) % 256], dtype=np.float64)


COLOURS = np.stack([colour(k) for k in range(N_FRAMES)])


def which_frame(frame: np.ndarray) -> tuple[int, float]:
    """(index of the source colour this decoded frame shows, worst channel error against that colour)."""
    mean = frame.reshape(-1, 3).astype(np.float64).mean(axis=0)
    err = np.abs(COLOURS - mean).max(axis=1)
    k = int(np.argmin(err))
    return k, float(err[k])


def noise_music(seconds: float, sr: int, channels: int, seed: int = 0, base_hz: float = 330.0) -> Audio:
    """A non-periodic test signal (tones with a noise-modulated envelope) so correlations cannot alias."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sr)
    t = np.arange(n) / sr
    env = np.convolve(rng.standard_normal(n), np.ones(400) / 400, mode="same")
    env = 0.5 + 0.5 * env / (np.abs(env).max() + 1e-9)
    chans = [0.4 * env * np.sin(2 * np.pi * (base_hz + 110 * c) * t + c) for c in range(channels)]
    return Audio(np.stack(chans), sr)


@pytest.fixture(scope="module")
def colour_video(tmp_path_factory) -> Path:
    """37 frames at 10 fps, frame k a flat colour(k); no audio."""
    frames = np.empty((N_FRAMES, 48, 64, 3), np.uint8)
    frames[:] = COLOURS[:, None, None, :].astype(np.uint8)
    return write_video(tmp_path_factory.mktemp("vid") / "colours.mp4", frames, SRC_FPS)


@pytest.fixture(scope="module")
def video_with_audio(tmp_path_factory) -> tuple[Path, Audio]:
    frames = np.empty((30, 48, 64, 3), np.uint8)
    frames[:] = COLOURS[:30, None, None, :].astype(np.uint8)
    audio = noise_music(3.0, 16000, 2, seed=3)
    return write_video(tmp_path_factory.mktemp("vid") / "with_audio.mp4", frames, SRC_FPS, audio=audio), audio


# ------------------------------------------------------------------------------------------------ audio
def test_wav_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    samples = rng.uniform(-1.5, 1.5, size=(2, 12345)).astype(np.float32)  # beyond full scale is kept
    out = write_wav(tmp_path / "a.wav", Audio(samples, 22050))
    back = load_audio(out)
    assert back.sample_rate == 22050
    assert back.samples.dtype == np.float32
    assert back.samples.shape == (2, 12345)
    assert np.array_equal(back.samples, samples)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]  # no temp file left behind


def test_write_wav_failure_leaves_nothing(tmp_path, monkeypatch):
    from scipy.io import wavfile

    def killed_midway(path, rate, data):
        with open(path, "wb") as f:
            f.write(b"RIFF\x00\x00")  # a partial header, then the writer dies
        raise OSError("disk full")

    monkeypatch.setattr(wavfile, "write", killed_midway)
    with pytest.raises(OSError):
        write_wav(tmp_path / "bad.wav", Audio(np.zeros((1, 100)), 8000))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="sample rate"):
        Audio(np.zeros((1, 100)), 0)


def test_audio_shapes_and_mono():
    a = Audio(np.array([[1.0, 0.0, -1.0], [0.0, 0.5, 0.0]]), 8000)
    assert (a.channels, a.num_samples, a.sample_rate) == (2, 3, 8000)
    assert a.duration_s == pytest.approx(3 / 8000)
    m = a.mono()
    assert m.samples.shape == (1, 3)
    assert np.allclose(m.samples[0], [0.5, 0.25, -0.5])
    one = Audio(np.arange(4.0), 8000)  # 1-D input becomes one channel
    assert one.samples.shape == (1, 4) and one.samples.dtype == np.float32
    with pytest.raises(ValueError):
        Audio(np.zeros((1, 2, 3)), 8000)


def test_load_mono_is_mean_of_channels(tmp_path):
    a = noise_music(0.5, 8000, 2)
    path = write_wav(tmp_path / "s.wav", a)
    m = load_audio(path, mono=True)
    assert m.channels == 1
    assert np.allclose(m.samples[0], a.samples.mean(axis=0), atol=1e-7)


def test_resample_keeps_frequency_and_length():
    sr, n = 44100, 44100
    t = np.arange(n) / sr
    a = Audio(0.5 * np.sin(2 * np.pi * 1000.0 * t), sr)
    r = resample(a, 16000)
    assert r.sample_rate == 16000
    assert r.num_samples == 16000  # exactly n * 16000 / 44100
    spec = np.abs(np.fft.rfft(r.samples[0] * np.hanning(r.num_samples)))
    freqs = np.fft.rfftfreq(r.num_samples, 1 / 16000)
    assert freqs[np.argmax(spec)] == pytest.approx(1000.0, abs=1.0)
    core = r.samples[0, 1000:-1000]  # away from the filter's edge transients
    assert np.sqrt(np.mean(core**2)) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)
    # upsampling back gives the original length; same rate is a no-op
    assert resample(r, 44100).num_samples == n
    assert resample(a, 44100) is a
    assert "resample_poly" in RESAMPLER


def test_load_audio_resamples_on_request(tmp_path):
    path = write_wav(tmp_path / "s.wav", noise_music(1.0, 48000, 2))
    a = load_audio(path, sample_rate=32000, mono=True)
    assert (a.sample_rate, a.channels, a.num_samples) == (32000, 1, 32000)


def test_start_end_span(tmp_path):
    sr = 8000
    samples = np.arange(2 * sr, dtype=np.float32)[None, :] / (2 * sr)  # the value encodes the sample index
    path = write_wav(tmp_path / "ramp.wav", Audio(samples, sr))
    span = load_audio(path, start_s=0.25, end_s=0.75)
    assert np.array_equal(span.samples, samples[:, 2000:6000])
    tail = load_audio(path, start_s=1.5)
    assert np.array_equal(tail.samples, samples[:, 12000:])
    beyond = load_audio(path, start_s=1.9, end_s=5.0)  # end past the file: up to the end
    assert beyond.num_samples == 800
    with pytest.raises(MediaError) as e:
        load_audio(path, start_s=3.0)
    assert str(path) in str(e.value)


def test_span_of_a_video_soundtrack(video_with_audio):
    path, audio = video_with_audio
    a = load_audio(path, start_s=1.0, end_s=2.0)
    assert a.sample_rate == 16000 and a.channels == 2
    assert a.num_samples == 16000
    ref = audio.samples[:, 16000:32000]
    for ch in range(2):
        assert np.corrcoef(ref[ch], a.samples[ch])[0, 1] > 0.99


def test_missing_file_is_named(tmp_path):
    for name in ("nothing.wav", "nothing.mp4"):
        p = tmp_path / name
        with pytest.raises(MediaError) as e:
            load_audio(p)
        assert str(p) in str(e.value) and e.value.path == str(p)
    with pytest.raises(MediaError) as e:
        probe_video(tmp_path / "nothing.mp4")
    assert str(tmp_path / "nothing.mp4") in str(e.value)


def test_empty_file_is_named(tmp_path):
    for name in ("empty.wav", "empty.mp4"):
        p = tmp_path / name
        p.write_bytes(b"")
        with pytest.raises(MediaError) as e:
            load_audio(p)
        assert str(p) in str(e.value)
    with pytest.raises(MediaError) as e:
        decode_frames(tmp_path / "empty.mp4", 5)
    assert str(tmp_path / "empty.mp4") in str(e.value)


@pytest.mark.parametrize("name", ["corrupt.wav", "corrupt.mp4", "corrupt.flac"])
def test_corrupt_file_is_named(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(np.random.default_rng(7).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError) as e:
        load_audio(p)
    assert str(p) in str(e.value)
    if name.endswith(".mp4"):
        with pytest.raises(MediaError) as e:
            probe_video(p)
        assert str(p) in str(e.value)
        with pytest.raises(MediaError) as e:
            decode_frames(p, 5)
        assert str(p) in str(e.value)


def test_truncated_wav_is_named(tmp_path):
    good = write_wav(tmp_path / "good.wav", noise_music(0.2, 8000, 1))
    p = tmp_path / "cut.wav"
    p.write_bytes(good.read_bytes()[:30])  # header cut before the data chunk
    with pytest.raises(MediaError) as e:
        load_audio(p)
    assert str(p) in str(e.value)


def test_video_without_audio_is_named(colour_video):
    with pytest.raises(MediaError) as e:
        load_audio(colour_video)
    assert str(colour_video) in str(e.value)
    assert "no audio" in str(e.value)


def test_audio_file_is_not_a_video(tmp_path):
    p = write_wav(tmp_path / "a.wav", noise_music(0.2, 8000, 1))
    with pytest.raises(MediaError) as e:
        probe_video(p)
    assert str(p) in str(e.value) and "no video stream" in str(e.value)


def test_silent_and_clipped_flags():
    sr = 16000
    t = np.arange(sr) / sr
    sine = np.sin(2 * np.pi * 440 * t)
    zeros = audio_stats(Audio(np.zeros((2, sr)), sr))
    assert zeros.silent and not zeros.clipped and zeros.rms_dbfs == -math.inf
    quiet = audio_stats(Audio(1e-4 * sine, sr))  # RMS ~ -83 dBFS
    assert quiet.silent
    assert quiet.rms_dbfs == pytest.approx(20 * math.log10(1e-4 / math.sqrt(2)), abs=0.01)
    normal = audio_stats(Audio(0.5 * sine, sr))
    assert not normal.silent and not normal.clipped
    assert normal.peak_dbfs == pytest.approx(20 * math.log10(0.5), abs=0.01)
    assert normal.rms_dbfs == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.01)
    just_audible = audio_stats(Audio(0.01 * sine, sr))  # RMS ~ -43 dBFS
    assert not just_audible.silent
    hot = audio_stats(Audio(np.clip(1.5 * sine, -1, 1), sr))  # a third of the samples pinned at full scale
    assert hot.clipped and hot.clipped_fraction > 0.3
    one = np.zeros(100_000)
    one[5] = 1.0  # a single full-scale sample in 100k is not clipping
    assert not audio_stats(Audio(one, sr)).clipped
    many = np.zeros(100_000)
    many[:50] = -1.0
    assert audio_stats(Audio(many, sr)).clipped


def test_fit_length_trim_pad_loop():
    a = Audio(np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]), 4)  # 1 s at 4 Hz
    trimmed = a.fit_length(0.5)
    assert np.array_equal(trimmed.samples, [[1, 2], [5, 6]])
    padded = a.fit_length(1.5)
    assert np.array_equal(padded.samples, [[1, 2, 3, 4, 0, 0], [5, 6, 7, 8, 0, 0]])
    looped = a.fit_length(2.5, loop=True)
    assert np.array_equal(looped.samples, [[1, 2, 3, 4, 1, 2, 3, 4, 1, 2], [5, 6, 7, 8, 5, 6, 7, 8, 5, 6]])
    same = a.fit_length(1.0, loop=True)
    assert np.array_equal(same.samples, a.samples)
    empty = Audio(np.zeros((1, 0)), 4).fit_length(1.0, loop=True)  # nothing to loop: silence
    assert np.array_equal(empty.samples, np.zeros((1, 4)))
    assert padded.samples.dtype == np.float32 and looped.sample_rate == 4


def test_crop():
    a = Audio(np.arange(10.0)[None, :], 10)
    assert np.array_equal(a.crop(0.2, 0.5).samples, [[2, 3, 4]])
    assert np.array_equal(a.crop(0.8).samples, [[8, 9]])
    assert a.crop(0.5, 0.2).num_samples == 0


# ------------------------------------------------------------------------------------------------ video
def test_probe_video(colour_video, video_with_audio):
    info = probe_video(colour_video)
    assert (info.width, info.height) == (64, 48)
    assert info.fps == pytest.approx(SRC_FPS)
    assert info.duration_s == pytest.approx(N_FRAMES / SRC_FPS, abs=1e-6)
    assert not info.has_audio and info.audio_sample_rate is None
    info = probe_video(video_with_audio[0])
    assert info.has_audio and info.audio_sample_rate == 16000 and info.audio_channels == 2
    assert info.duration_s == pytest.approx(3.0, abs=1e-6)


@pytest.mark.parametrize("fps", [25.0, 10.0, 7.0, 3.3, 1.0])
def test_decode_frames_count_and_content(colour_video, fps):
    frames = decode_frames(colour_video, fps)
    duration = N_FRAMES / SRC_FPS
    assert frames.shape == (math.floor(duration * fps + 1e-9), 48, 64, 3)
    assert frames.dtype == np.uint8
    for j, f in enumerate(frames):
        k, err = which_frame(f)
        expected = math.floor(j / fps * SRC_FPS + 1e-9)  # sample and hold: the frame on screen at time j / fps
        assert k == expected, f"output frame {j} (t={j / fps:.3f}s) shows source frame {k}, expected {expected}"
        assert err <= CODEC_TOL


def test_decode_frames_span_and_size(colour_video):
    fps, start, end = 7.0, 1.05, 2.5
    frames = decode_frames(colour_video, fps, size=(32, 20), start_s=start, end_s=end)
    assert frames.shape == (math.floor((end - start) * fps + 1e-9), 20, 32, 3)
    shown = [which_frame(f) for f in frames]
    assert [k for k, _ in shown] == [math.floor((start + j / fps) * SRC_FPS + 1e-9) for j in range(len(frames))]
    assert max(e for _, e in shown) <= CODEC_TOL
    # end past the video's end is clamped to it
    tail = decode_frames(colour_video, 10.0, start_s=3.0, end_s=99.0)
    assert len(tail) == 7 and [which_frame(f)[0] for f in tail] == list(range(30, 37))


def test_decode_frames_errors(colour_video):
    with pytest.raises(MediaError) as e:
        decode_frames(colour_video, 5.0, start_s=10.0)
    assert str(colour_video) in str(e.value)
    with pytest.raises(ValueError):
        decode_frames(colour_video, 0)


def test_write_video_crops_odd_sizes(tmp_path):
    frames = np.full((5, 31, 33, 3), 128, np.uint8)
    info = probe_video(write_video(tmp_path / "odd.mp4", frames, 5))
    assert (info.width, info.height) == (32, 30)
    assert info.duration_s == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError):
        write_video(tmp_path / "none.mp4", [], 5)
    assert not (tmp_path / "none.mp4").exists()


def test_write_video_soundtrack_round_trip(video_with_audio):
    path, audio = video_with_audio
    back = load_audio(path)
    assert (back.sample_rate, back.channels) == (16000, 2)
    assert back.num_samples == audio.num_samples  # AAC padding is trimmed to the declared length
    for ch in range(2):
        assert np.corrcoef(audio.samples[ch], back.samples[ch])[0, 1] > 0.99


def test_cut_video_keeps_the_right_frames_and_drops_audio(video_with_audio, tmp_path):
    src, _ = video_with_audio
    out = cut_video(src, tmp_path / "cut.mp4", start_s=1.0, end_s=2.0)
    info = probe_video(out)
    assert not info.has_audio
    assert info.duration_s == pytest.approx(1.0, abs=1e-6)
    assert info.fps == pytest.approx(SRC_FPS)
    frames = decode_frames(out, SRC_FPS)
    shown = [which_frame(f) for f in frames]
    assert [k for k, _ in shown] == list(range(10, 20))
    assert max(e for _, e in shown) <= CODEC_TOL
    with pytest.raises(MediaError) as e:
        cut_video(src, tmp_path / "nothing.mp4", start_s=5.0, end_s=6.0)
    assert str(src) in str(e.value)
    assert not (tmp_path / "nothing.mp4").exists()


@pytest.mark.parametrize("seconds", [2.0, 3.0, 4.5])
def test_mux_audio_adds_a_soundtrack(colour_video, tmp_path, seconds):
    audio = noise_music(seconds, 44100, 2, seed=1)
    out = mux_audio(colour_video, audio, tmp_path / "muxed.mp4")
    info = probe_video(out)
    duration = N_FRAMES / SRC_FPS
    assert info.has_audio and info.audio_sample_rate == 44100 and info.audio_channels == 2
    assert info.duration_s == pytest.approx(duration, abs=1e-6)
    back = load_audio(out)
    assert back.sample_rate == 44100
    assert back.num_samples == round(duration * 44100)  # fitted to the video's length
    n = min(audio.num_samples, back.num_samples)
    for ch in range(2):
        assert np.corrcoef(audio.samples[ch, :n], back.samples[ch, :n])[0, 1] > 0.99
    if audio.num_samples < back.num_samples:  # padded with silence
        assert audio_stats(Audio(back.samples[:, n + 4410:], 44100)).silent
    # the picture is copied untouched
    frames = decode_frames(out, SRC_FPS)
    assert [which_frame(f)[0] for f in frames] == list(range(N_FRAMES))


def test_mux_audio_replaces_an_existing_track(video_with_audio, tmp_path):
    src, old = video_with_audio
    new = noise_music(3.0, 16000, 1, seed=9, base_hz=1234.0)
    back = load_audio(mux_audio(src, new, tmp_path / "re.mp4"))
    assert back.channels == 1 and back.num_samples == 48000
    assert np.corrcoef(new.samples[0], back.samples[0])[0, 1] > 0.99
    assert abs(np.corrcoef(old.samples[0], back.samples[0])[0, 1]) < 0.1


def _binary_code_frames(n: int) -> np.ndarray:
    """Frame k shows k in binary: 10 blocks of 16 px, white for a 1 bit (robust to codec error)."""
    frames = np.zeros((n, 16, 160, 3), np.uint8)
    for k in range(n):
        for b in range(10):
            if k >> b & 1:
                frames[k, :, b * 16 : (b + 1) * 16] = 255
    return frames


def _read_code(frame: np.ndarray) -> int:
    return sum(1 << b for b in range(10) if frame[:, b * 16 + 4 : (b + 1) * 16 - 4].mean() > 128)


def test_decode_frames_after_seeking_past_keyframes(tmp_path):
    """NTSC rate, 600 frames (x264 puts a keyframe every 250): spans that start mid-video need a seek."""
    fps = 30000 / 1001
    path = write_video(tmp_path / "ntsc.mp4", _binary_code_frames(600), fps)
    info = probe_video(path)
    assert info.fps == pytest.approx(fps, rel=1e-6)
    assert info.duration_s == pytest.approx(600 / fps, abs=1e-3)
    for start in (0.0, 8.5, 12.0, 19.5):
        out = decode_frames(path, 4.0, start_s=start, end_s=start + 0.5)
        assert [_read_code(f) for f in out] == [math.floor((start + j / 4) * fps + 1e-9) for j in range(2)]
    everything = decode_frames(path, 25.0)
    assert len(everything) == math.floor(600 / fps * 25)
    assert [_read_code(f) for f in everything] == [math.floor(j / 25 * fps + 1e-9) for j in range(len(everything))]


def test_write_wav_bytes_depend_only_on_samples(tmp_path):
    """Same samples -> same bytes, whenever written: content hashes key scores and caches."""
    import hashlib
    import time as _time

    a = Audio(np.random.default_rng(0).normal(size=(2, 4000)).astype(np.float32), 8000)
    write_wav(tmp_path / "a.wav", a)
    _time.sleep(1.1)  # libsndfile's PEAK chunk carried a 1 s resolution timestamp
    write_wav(tmp_path / "b.wav", a)
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(tmp_path / "a.wav") == digest(tmp_path / "b.wav")
