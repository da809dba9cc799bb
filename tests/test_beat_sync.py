"""beat-sync: tempo/phase choice on known change times, and the model on a synthetic video with known cuts."""
from __future__ import annotations

import numpy as np
import pytest

from baselines.beat_sync import SAMPLE_RATE, BeatSync, Grid, choose_grid, fold_period, make_score, render
from metrics.events import circular_shift, f_measure
from vm_eval.data.manifest import Clip, Manifest
from vm_eval.models.api import ClipInput

FPS = 25
CUT_FRAMES = (24, 36, 72, 84, 108, 144, 156)  # on a 12-frame (0.48 s, 125 BPM) grid, irregularly spaced
N_FRAMES = 199  # 7.96 s


def _grid_error(grid: Grid, times: np.ndarray) -> np.ndarray:
    """Distance (s) of each time to the nearest beat of the grid."""
    x = np.asarray(times) - grid.phase_s
    return np.abs(x - grid.period_s * np.round(x / grid.period_s))


# ---------------------------------------------------------------- tempo and phase (pure)
def test_regular_changes_every_half_second_give_120_bpm_on_the_changes():
    changes = np.arange(0.5, 8.0, 0.5)
    grid = choose_grid(changes)
    assert grid.bpm == pytest.approx(120.0, abs=1e-6)
    assert grid.phase_s == pytest.approx(0.0, abs=1e-6)
    assert _grid_error(grid, changes).max() < 1e-6
    assert grid.beats(2.0) == pytest.approx([0.0, 0.5, 1.0, 1.5], abs=1e-6)
    # the same, started off zero and twice as slow: folded into 70-160 BPM, still on the changes
    slow = 0.3 + np.arange(6) * 1.0
    g = choose_grid(slow)
    assert g.bpm == pytest.approx(120.0, abs=1e-6) and g.phase_s == pytest.approx(0.3, abs=1e-6)
    assert _grid_error(g, slow).max() < 1e-6
    assert g.beats(10.0)[g.downbeat] == pytest.approx(0.3)  # the first change starts a bar


def test_irregular_changes_on_a_hidden_grid_find_it():
    period, phase = 0.6, 0.17  # 100 BPM
    changes = phase + period * np.array([1, 3, 4, 7, 9, 10, 14])  # multiples 2, 1, 3, 2, 1, 4 of the period
    grid = choose_grid(changes)
    assert grid.bpm == pytest.approx(100.0, abs=1e-6)
    assert _grid_error(grid, changes).max() < 1e-6
    # jittered by up to 30 ms, plus one change far off the grid: the grid still holds the rest
    rng = np.random.default_rng(0)
    noisy = np.sort(np.r_[changes + rng.uniform(-0.03, 0.03, changes.size), 5.87])  # 5.87 s: half a beat off
    g = choose_grid(noisy)
    assert g.bpm == pytest.approx(100.0, rel=0.02)
    assert (_grid_error(g, noisy) <= 0.07).sum() == changes.size


def test_no_change_or_one_change_default_tempo():
    assert choose_grid(np.zeros(0)) == Grid(120.0, 0.0, 0)
    one = choose_grid(np.array([1.3]))
    assert one.bpm == 120.0 and one.phase_s == pytest.approx(0.3) and _grid_error(one, [1.3])[0] < 1e-9
    assert one.beats(10.0)[one.downbeat] == pytest.approx(1.3)
    assert choose_grid(np.array([2.0]), default_bpm=90.0).bpm == 90.0


def test_fold_period_by_octaves():
    assert fold_period(2.0, 70, 160) == pytest.approx(0.5)  # 30 BPM -> 120
    assert fold_period(0.2, 70, 160) == pytest.approx(0.4)  # 300 BPM -> 150
    assert fold_period(0.75, 70, 160) == pytest.approx(0.75)  # 80 BPM stays


def test_score_has_accents_on_every_change_even_off_grid():
    grid, changes = Grid(120.0, 0.0, 0), np.array([1.0, 2.23])  # 2.23 s is off the grid
    notes = make_score(grid, changes, 4.0, np.random.default_rng(0))
    for t in changes:
        assert {n.kind for n in notes if n.time_s == t} >= {"kick", "crash", "stab"}
    assert sorted(n.time_s for n in notes if n.kind == "snare") == pytest.approx([0.5, 1.5, 2.5, 3.5])
    audio = render(notes, 4.0, np.random.default_rng(0))
    assert audio.shape == (2, 4 * SAMPLE_RATE) and audio.dtype == np.float32
    assert np.isfinite(audio).all() and np.abs(audio).max() == pytest.approx(10 ** (-1 / 20), rel=1e-4)
    first_100ms, accent = audio[:, : SAMPLE_RATE // 10], audio[:, SAMPLE_RATE: SAMPLE_RATE + 3200]
    assert np.abs(first_100ms).max() < np.abs(accent).max()


# ---------------------------------------------------------------- the model on a synthetic video
@pytest.fixture(scope="module")
def video_clip(tmp_path_factory):
    from vm_eval.media import write_video

    root = tmp_path_factory.mktemp("beat-sync")
    rng = np.random.default_rng(7)
    bounds = (0, *CUT_FRAMES, N_FRAMES)
    frames = []
    for a, b in zip(bounds[:-1], bounds[1:]):  # each shot: its own coarse colour texture, drifting slowly
        tex = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
        frames += [np.roll(tex, k, axis=1) for k in range(b - a)]
    write_video(root / "v.mp4", frames, FPS)
    clip = Clip(id="synthetic", video="v.mp4", start=0.0, end=N_FRAMES / FPS, split="test")
    return clip, Manifest(root / "manifest.jsonl", [clip]), root


def _input(video_clip, run_seed=0):
    clip, manifest, root = video_clip
    return ClipInput(clip, manifest, run_seed, root / "media")


def test_beat_sync_locks_on_the_cuts_and_is_exact_and_deterministic(video_clip):
    model = BeatSync()
    clip = _input(video_clip)
    cuts = np.array(CUT_FRAMES) / FPS
    changes = model.changes(clip)
    assert changes == pytest.approx(cuts, abs=1e-9)
    grid, _, _ = model.compose(clip)
    assert grid.bpm == pytest.approx(125.0, abs=1e-6) and _grid_error(grid, cuts).max() < 1e-6

    (a,) = model.generate([clip])
    samples, sr = a
    assert sr == SAMPLE_RATE == model.info.sample_rate
    assert samples.shape == (2, round(clip.duration_s * SAMPLE_RATE)) and samples.dtype == np.float32
    assert np.isfinite(samples).all() and 0.8 < np.abs(samples).max() <= 10 ** (-1 / 20) + 1e-6
    assert np.array_equal(model.generate([_input(video_clip)])[0][0], samples)  # same seed: same samples
    other = model.generate([_input(video_clip, run_seed=1)])[0][0]
    assert other.shape == samples.shape and not np.allclose(other, samples)


def test_beat_sync_beats_and_onsets_land_on_the_changes(video_clip):
    from metrics.beats import BeatTimes, OnsetTimes
    from vm_eval.media import Audio, resample

    clip = _input(video_clip)
    samples, sr = BeatSync().generate([clip])[0]
    mono = resample(Audio(samples, sr).mono(), 44100).samples[0]
    cuts, dur = np.array(CUT_FRAMES) / FPS, clip.duration_s
    period = 0.48
    for events in (BeatTimes()(mono, 44100), OnsetTimes()(mono, 44100)):
        on = f_measure(cuts, events)
        # a quarter beat off (never on an eighth-note hat) and 5 random shifts: chance level
        off = [f_measure(circular_shift(cuts, s, dur), events)
               for s in (period / 4, *np.random.default_rng(0).uniform(0.25, dur - 0.25, 5))]
        assert on > 0.3 and on > max(off[0], np.mean(off)) + 0.2, (on, off)
        # every cut has a detected event within 70 ms (recall 1)
        assert all(np.min(np.abs(events - t)) <= 0.07 for t in cuts)


def test_beat_sync_options_and_metadata():
    m = BeatSync(detector="cuts", min_bpm=60, max_bpm=120)
    assert m.info.name == "beat-sync" and m.info.family == "reference" and m.checkpoints() == []
    assert m.info.extra["detector"] == "scenedetect-adaptive-cuts"
    with pytest.raises(ValueError, match="detector"):
        BeatSync(detector="flow")
    with pytest.raises(ValueError, match="max_bpm"):
        BeatSync(min_bpm=100, max_bpm=150)
