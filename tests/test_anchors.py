"""Listening-test anchors: the beat-shifted reference (music with a known beat) and other-category music."""
from __future__ import annotations

import numpy as np
import pytest

from baselines.anchors import OtherCategoryAnchor, ShiftedBeatAnchor, autocorrelation_period, shift_span
from vm_eval.data.manifest import Clip, Manifest
from vm_eval.media import Audio, load_audio, write_wav
from vm_eval.models.api import ClipInput, NotApplicable

SR = 44100
PERIOD, PHASE = 0.48, 0.2  # s: 125 BPM, first beat at 0.2 s of the file


def _music(duration_s: float, seed: int = 0) -> Audio:
    """Stereo drums + chord tones with beats at PHASE + k * PERIOD (kick every beat, snare on 2 and 4)."""
    rng = np.random.default_rng(seed)
    n = round(duration_s * SR)
    out = np.zeros(n)
    t = np.arange(int(0.3 * SR)) / SR
    kick = np.sin(2 * np.pi * np.cumsum(50 + 90 * np.exp(-t / 0.03)) / SR) * np.exp(-t / 0.1)
    snare = rng.standard_normal(t.size) * np.exp(-t / 0.05) * 0.4
    for k, b in enumerate(np.arange(PHASE, duration_s, PERIOD)):
        a = round(b * SR)
        for sound in (kick, snare) if k % 2 else (kick,):
            seg = sound[: n - a]
            out[a: a + seg.size] += seg
        tone = np.arange(round(PERIOD * SR)) / SR
        seg = 0.15 * np.sin(2 * np.pi * (220.0 * 2 ** ((k // 4 % 3) / 12)) * tone)[: n - a]
        out[a: a + seg.size] += seg * np.exp(-tone[: seg.size] / 0.2)
    return Audio(np.stack([out, 0.9 * out]) / np.abs(out).max() * 0.8, SR)


@pytest.fixture(scope="module")
def music_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("anchors")
    write_wav(root / "long.wav", _music(20.0))
    write_wav(root / "short.wav", _music(7.0))
    write_wav(root / "silent.wav", Audio(np.zeros((1, 6 * SR)), SR))
    return root


def _clip(root, cid, reference, start, end, category="promo", video=None, split="test"):
    return Clip(id=cid, video=video or f"{cid}.mp4", reference=reference, start=start, end=end, split=split,
                category=category)


def _inputs(root, clips, run_seed=0):
    manifest = Manifest(root / "manifest.jsonl", list(clips))
    return [ClipInput(c, manifest, run_seed, root / "media") for c in clips]


def _beat_offsets(beats: np.ndarray, start: float) -> np.ndarray:
    """Signed distance (s) of beats on a clip starting at `start` to the file's beat grid, in [-P/2, P/2)."""
    x = beats + start - PHASE
    return x - PERIOD * np.round(x / PERIOD)


# ---------------------------------------------------------------- pure parts
def test_autocorrelation_period():
    act = np.zeros(1000)
    act[5::48] = 1.0  # a beat every 48 frames at 100 frames/s
    assert autocorrelation_period(act) == pytest.approx(0.48)
    assert autocorrelation_period(np.zeros(1000)) is None  # flat
    assert autocorrelation_period(np.random.default_rng(0).random(1000)) is None  # no periodicity
    assert autocorrelation_period(act[:100]) is None  # shorter than the longest lag


def test_shift_span_branches():
    x = np.arange(100, dtype=np.float64)[None]
    out, branch = shift_span(x, 30, 20, 10, 0)
    assert branch == "before" and np.array_equal(out[0], np.arange(20, 40))
    out, branch = shift_span(x, 5, 20, 10, 0)
    assert branch == "after" and np.array_equal(out[0], np.arange(15, 35))
    out, branch = shift_span(x, 5, 90, 10, 0)
    assert branch == "roll" and np.array_equal(out[0], np.roll(np.arange(5, 95), 10))
    out, _ = shift_span(x, 5, 90, 10, 4)  # crossfade: 2 samples either side of the seam at index 10
    assert np.array_equal(out[0, :8], np.roll(np.arange(5, 95), 10)[:8])
    assert np.array_equal(out[0, 12:], np.roll(np.arange(5, 95), 10)[12:])
    # before the seam the span's end runs on (95, 96 after 93, 94), the start is led in (3, 4 before 5, 6)
    phi = (np.arange(4) + 0.5) / 4 * np.pi / 2
    want = np.array([93, 94, 95, 96]) * np.cos(phi) + np.array([3, 4, 5, 6]) * np.sin(phi)
    assert out[0, 8:12] == pytest.approx(want)


# ---------------------------------------------------------------- ShiftedBeatAnchor
@pytest.mark.parametrize("reference, start, end, branch", [
    ("long.wav", 8.0, 14.0, "before"),  # 8 - 0.72 >= 0: the music heard 1.5 beats earlier
    ("long.wav", 0.3, 6.3, "after"),  # too close to the start: the music 1.5 beats later
    ("short.wav", 0.0, 7.0, "roll"),  # the whole file: rolled
])
def test_shifted_beat_anchor_moves_beats_by_half_a_beat(music_dir, reference, start, end, branch):
    from metrics.beats import BeatTimes

    (clip,) = _inputs(music_dir, [_clip(music_dir, "c", reference, start, end)])
    anchor = ShiftedBeatAnchor()
    audio, shift = anchor.shift(clip)
    assert shift.branch == branch and shift.period_source == "madmom-beats"
    assert shift.period_s == pytest.approx(PERIOD, abs=0.011)
    assert shift.offset_s == pytest.approx(1.5 * shift.period_s)
    n = round((end - start) * SR)
    assert audio.sample_rate == SR and audio.samples.shape == (2, n)
    full = load_audio(music_dir / reference)
    off, a = round(shift.offset_s * SR), round(start * SR)
    if branch == "before":
        assert np.array_equal(audio.samples, full.samples[:, a - off: a - off + n])
    elif branch == "after":
        assert np.array_equal(audio.samples, full.samples[:, a + off: a + off + n])
    else:  # the span rolled by the offset, untouched away from the 20 ms crossfade
        rolled = np.roll(full.samples[:, a: a + n], off, axis=1)
        keep = np.abs(np.arange(n) - off) > round(0.01 * SR)
        assert np.array_equal(audio.samples[:, keep], rolled[:, keep])
        assert not np.array_equal(audio.samples, rolled)
    if branch != "after":  # the anchor's own tracked beats sit half a beat off the reference's
        beats = BeatTimes()(audio.mono().samples[0], SR)
        dist = np.abs(_beat_offsets(beats, start))
        assert beats.size >= 0.8 * (end - start) / PERIOD
        assert np.median(dist) == pytest.approx(PERIOD / 2, abs=0.03)
    assert anchor.generate([clip])[0].samples.shape == (2, n)


def test_shifted_beat_anchor_silence_and_no_music(music_dir, caplog):
    silent, none = _inputs(music_dir, [_clip(music_dir, "s", "silent.wav", 0.5, 3.5),
                                       _clip(music_dir, "n", None, 0.0, 3.0, category="other")])
    anchor = ShiftedBeatAnchor(beats=2)
    assert anchor.info.name == "anchor-beat-shift" and anchor.info.family == "reference"
    assert anchor.info.extra["anchor"] == "rhythm" and anchor.info.extra["shift_beats"] == 2.5
    audio, shift = anchor.shift(silent)
    assert shift.period_s == 0.5 and shift.period_source.startswith("default: silent")
    assert shift.offset_s == 1.25 and shift.branch == "after" and audio.samples.shape == (1, 3 * SR)
    assert "default: silent" in caplog.text
    out = anchor.generate([none, silent])
    assert isinstance(out[0], NotApplicable) and "no reference music" in str(out[0])
    assert isinstance(out[1], Audio)


# ---------------------------------------------------------------- OtherCategoryAnchor
@pytest.fixture(scope="module")
def category_pool(music_dir):
    for i in range(5):  # distinguishable music: a different pitch per file
        tone = np.sin(2 * np.pi * (200 + 50 * i) * np.arange(3 * 8000) / 8000)
        write_wav(music_dir / f"m{i}.wav", Audio(0.5 * tone, 8000))
    return [
        _clip(music_dir, "a", "m0.wav", 0.0, 2.0, "promo", video="v1.mp4"),
        _clip(music_dir, "b", "m1.wav", 0.0, 4.0, "commercial", video="v1.mp4"),  # others: a's video
        _clip(music_dir, "c", "m2.wav", 0.0, 2.5, "promo", video="v2.mp4"),
        _clip(music_dir, "d", "m3.wav", 0.5, 2.5, "compilation", video="v1.mp4"),
        _clip(music_dir, "e", None, 0.0, 2.0, "other", video="v4.mp4"),
    ]


def test_other_category_anchor_draws_another_category(music_dir, category_pool):
    clips = _inputs(music_dir, category_pool)
    anchor = OtherCategoryAnchor()
    assert anchor.info.name == "anchor-other-category" and anchor.info.extra["anchor"] == "content"
    anchor.prepare(clips)
    out = anchor.generate(clips)
    assert isinstance(out[0], LookupError) and "other than 'promo'" in str(out[0])  # a fails alone
    assert isinstance(out[4], NotApplicable)
    for clip, got in zip(clips[1:4], out[1:4]):
        donor = anchor.donor(clip)
        assert donor.category != clip.category and donor.video_path != clip.video_path
        want = donor.reference_audio().fit_length(clip.duration_s, loop=True)
        assert got.sample_rate == 8000 and np.array_equal(got.samples, want.samples)
        assert got.num_samples == round(clip.duration_s * 8000)
    assert anchor.donor(clips[1]).id == "c" == anchor.donor(clips[3]).id
    assert anchor.donor(clips[2]).id in ("b", "d")
    # deterministic: a fresh instance, the clips in another order and a sub-batch give the same donors
    again = OtherCategoryAnchor()
    again.prepare(clips[::-1])
    assert [again.donor(c).id for c in clips[1:4]] == [anchor.donor(c).id for c in clips[1:4]]
    assert np.array_equal(again.generate([clips[3]])[0].samples, out[3].samples)
    # over many seeds every eligible donor is drawn, never one of the clip's own category
    drawn = {anchor.donor(_inputs(music_dir, category_pool, s)[2]).id for s in range(20)}
    assert drawn == {"b", "d"}


def test_other_category_anchor_single_category_split_fails_per_clip(music_dir, category_pool):
    promo = [c for c in category_pool if c.category == "promo"]
    clips = _inputs(music_dir, promo)
    anchor = OtherCategoryAnchor()
    anchor.prepare(clips)
    out = anchor.generate(clips)
    assert len(out) == 2 and all(isinstance(e, LookupError) for e in out)
