"""Alignment metrics (metrics/alignment.py): contract, nulls, and the demo's own music beating another clip's.

The demo's cuts (and flashes and burst starts where possible) fall on beats of the clip's own reference music,
so every metric in METRIC_SET must score a clip's own music above another clip's music (the "vs-other"
sub-score), with a paired bootstrap 95% CI over clips that excludes 0. Features are computed as the harness
would: each metric's input extractors on the reference WAV (44.1 kHz mono) and on frames decoded at the
extractor's fps and size; "other-audio" is the next clip's music (the donor), at its own length.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import vm_eval  # noqa: F401  (compat hook before madmom)
from metrics import events as ev
from metrics.alignment import (METRIC_SET, AVAlign, BeatCoverageScore, BeatHitScore, BeatVisualF1, crop_events,
                               extend_events)
from metrics.base import ClipContext, MetricError
from metrics.beats import BeatTimes, OnsetTimes
from metrics.stats import bootstrap_mean
from metrics.visual_change import FlowPeaks, FrameDiffChanges, SceneCuts, flow_magnitude_curve
from vm_eval.data.demo import FPS, load_ground_truth
from vm_eval.media import decode_frames, load_audio

N_CLIPS = 10  # the 10 shortest demo clips with music (82 s of music): madmom and optical flow are slow on CPU
BEATS, ONSETS = BeatTimes(), OnsetTimes()
FRAMEDIFF, CUTS = FrameDiffChanges(), SceneCuts("adaptive")
FLOW_ADAPTIVE, FLOW_LOCAL = FlowPeaks(peaks="adaptive"), FlowPeaks(peaks="local-max")
EXTRACTED = {e.info.name: e.info for e in (BEATS, ONSETS, FRAMEDIFF, CUTS, FLOW_ADAPTIVE, FLOW_LOCAL)}


def single_threaded() -> None:
    """Worker initializer: one BLAS / OpenCV thread per process (two processes share the two cores)."""
    import cv2

    cv2.setNumThreads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # optional: only a speed-up
        pass


def clip_features(root: str, cid: str) -> dict[str, np.ndarray]:
    """Every extractor's events for one clip, keyed by extractor name (runs in a worker process)."""
    a = load_audio(f"{root}/music/{cid}.wav", 44100, mono=True)
    frames = decode_frames(f"{root}/videos/{cid}.mp4", FPS, (128, 128))
    curve = flow_magnitude_curve(frames)  # shared by both flow-peak rules
    return {BEATS.info.name: BEATS(a.samples, a.sample_rate), ONSETS.info.name: ONSETS(a.samples, a.sample_rate),
            FRAMEDIFF.info.name: FRAMEDIFF(frames, FPS), CUTS.info.name: CUTS(frames, FPS),
            FLOW_ADAPTIVE.info.name: FLOW_ADAPTIVE.peaks_from_curve(curve),
            FLOW_LOCAL.info.name: FLOW_LOCAL.peaks_from_curve(curve)}


@pytest.fixture(scope="module")
def demo_features(data_dir):
    """(clip ids, {clip id: {extractor name: events}}, {clip id: duration s}, ground truth) for the chosen
    clips, computed in 2 worker processes (spawned: no fork of a process that may hold torch threads)."""
    root = data_dir / "demo"
    truth = load_ground_truth(root)
    with_music = [cid for cid, t in truth.items() if t.beat_times]
    ids = sorted(sorted(with_music, key=lambda c: truth[c].duration_s)[:N_CLIPS])
    order = sorted(ids, key=lambda c: -truth[c].duration_s)  # longest first: balances the two workers
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), initializer=single_threaded) as pool:
        feats = dict(zip(order, pool.map(clip_features, [str(root)] * len(order), order)))
    return ids, feats, {cid: truth[cid].duration_s for cid in ids}, truth


def per_clip(metric, demo_features) -> np.ndarray:
    """[n_clips, 3]: "", "vs-shift", "vs-other" for each clip; the donor of clip i is clip i + 1 (cyclic)."""
    ids, feats, durations, _ = demo_features
    rows = []
    assert all(EXTRACTED[e.info.name] == e.info for e in metric.inputs.values())  # same extractors, same params
    for i, cid in enumerate(ids):
        donor = ids[(i + 1) % len(ids)]
        inputs = {k: feats[donor if k == "other-audio" else cid][e.info.name] for k, e in metric.inputs.items()}
        out = metric.score_features(inputs, ClipContext(cid, durations[cid], seed=1000 + i))
        assert set(out) == {"", "vs-shift", "vs-other"}
        rows.append([out[""], out["vs-shift"], out["vs-other"]])
    return np.asarray(rows)


def test_beat_tracking_f_measure_on_demo_music(demo_features):
    """madmom beats of the reference WAVs vs the stored beat grids, +-70 ms, no trim: mean F >= 0.9."""
    ids, feats, _, truth = demo_features
    scores = {cid: ev.f_measure(truth[cid].beat_times, feats[cid][BEATS.info.name], 0.070) for cid in ids}
    print(f"\nbeat F-measure (+-70 ms) per clip: {scores}")
    assert np.mean(list(scores.values())) >= 0.9 and min(scores.values()) >= 0.8
    assert all(np.all(np.diff(feats[cid][BEATS.info.name]) > 0) for cid in ids)


def test_onsets_find_every_kick(demo_features):
    """Every beat of the demo music carries a kick drum: an onset within +-50 ms of (almost) every beat, and
    more onsets than beats (off-beat hats, chord changes)."""
    ids, feats, _, truth = demo_features
    for cid in ids:
        onsets = feats[cid][ONSETS.info.name]
        assert ev.precision_recall_f(truth[cid].beat_times, onsets, 0.05)[1] >= 0.95, cid
        assert onsets.size >= len(truth[cid].beat_times)


@pytest.mark.parametrize("metric_cls", METRIC_SET, ids=lambda c: c().info.name)
def test_own_music_beats_other_clips_music(metric_cls, demo_features):
    metric = metric_cls()
    rows = per_clip(metric, demo_features)
    other, shift = bootstrap_mean(rows[:, 2], seed=0), bootstrap_mean(rows[:, 1], seed=0)
    print(f"\n{metric.info.name}: s per clip {np.round(rows[:, 0], 3).tolist()}\n  vs-other per clip "
          f"{np.round(rows[:, 2], 3).tolist()}\n  mean s {rows[:, 0].mean():.3f}; vs-other {other.mean:+.3f} "
          f"[{other.lo:+.3f}, {other.hi:+.3f}]; vs-shift {shift.mean:+.3f} [{shift.lo:+.3f}, {shift.hi:+.3f}]")
    assert other.mean > 0 and other.lo > 0
    assert shift.mean > 0 and shift.lo > 0


def test_one_second_bins_cannot_tell_music_apart(demo_features):
    """The documented trap: with LORIS's 1 s bins every bin of any 75-150 BPM music holds a beat, so BHS is 1
    for the real and the other clip's music alike, and BCS barely moves."""
    bhs = per_clip(BeatHitScore(SceneCuts("adaptive"), "cuts", bin_s=1.0), demo_features)
    bcs = per_clip(BeatCoverageScore(SceneCuts("adaptive"), "cuts", bin_s=1.0), demo_features)
    assert np.all(bhs[:, 0] == 1.0) and abs(bhs[:, 2].mean()) < 0.02
    est = bootstrap_mean(bcs[:, 2], seed=0)
    assert abs(est.mean) < 0.02 and est.lo <= 0 <= est.hi


def test_reference_av_align_peaks_only_beat_the_shifted_null(demo_features):
    """AV-Align with the reference flow-peak rule (every local maximum >= 0.1 px/frame): its peaks are mostly
    sub-pixel drift, so it still beats the clip's own shifted music but the other-clip null is within noise
    (which is why the set uses adaptive flow peaks)."""
    rows = per_clip(AVAlign(), demo_features)
    shift, other = bootstrap_mean(rows[:, 1], seed=0), bootstrap_mean(rows[:, 2], seed=0)
    print(f"\nav-align (reference peaks): vs-shift {shift.mean:+.3f} [{shift.lo:+.3f}, {shift.hi:+.3f}], "
          f"vs-other {other.mean:+.3f} [{other.lo:+.3f}, {other.hi:+.3f}]")
    assert shift.lo > 0
    assert other.lo < 0 < other.hi


# ------------------------------------------------------------------------------------------ contract
class _Fixed:
    """A stand-in extractor for contract tests (score_features never calls extractors)."""

    def __init__(self, name: str):
        from metrics.base import ExtractorInfo

        self.info = ExtractorInfo(name=name, version=1, fps=25.0, size=(128, 128))


def test_metric_set_infos():
    infos = [m().info for m in METRIC_SET]
    assert 4 <= len(infos) <= 6
    assert len({i.name for i in infos}) == len(infos)
    for info, cls in zip(infos, METRIC_SET):
        assert info.version == 1 and info.higher_is_better is True and info.needs_reference is False
        assert info.kind == "clip" and info.units and info.description
        assert "vs-other" in info.params["nulls"] and info.params["shift_margin_s"] == 0.25
        m = cls()
        assert set(m.inputs) == {"audio", "other-audio", "video"}
        assert m.inputs["audio"].info == m.inputs["other-audio"].info
        assert len(info.key("resampler", m.inputs)) == 16
    names = {i.name: i for i in infos}
    assert names["beat-visual-f1-cuts"].params["window_s"] == 0.07
    assert names["beat-align-framediff"].params["sigma_s"] == 0.12
    assert names["bhs-cuts-200ms"].params["bin_s"] == 0.2 and names["bcs-cuts-200ms"].params["bin_s"] == 0.2
    assert names["av-align-adaptive"].params["window_s"] == pytest.approx(0.04)


def test_score_features_golden_and_nulls():
    """Visual events on a 0.5 s beat grid; own music on the grid, the donor half a beat off."""
    m = BeatVisualF1(_Fixed("v"), "test")
    grid = np.arange(0.0, 8.0, 0.5)
    visual = np.array([1.0, 3.0, 5.5])
    ctx = ClipContext("c", 8.0, seed=5)
    out = m.score_features({"audio": grid, "other-audio": grid + 0.25, "video": visual}, ctx)
    assert out[""] == pytest.approx(2 * 3 / (16 + 3))  # all 3 visual events matched: F = 2M / (|beats| + |visual|)
    assert out["vs-other"] == pytest.approx(out[""])  # the donor matches nothing
    offset = ev.random_shift(np.random.default_rng(5), 8.0)
    shifted = ev.f_measure(visual, ev.circular_shift(grid, offset, 8.0))
    assert out["vs-shift"] == pytest.approx(out[""] - shifted)
    assert m.score_features({"audio": grid, "other-audio": grid + 0.25, "video": visual}, ctx) == out  # seeded
    assert "vs-other" not in m.score_features({"audio": grid, "video": visual}, ctx)  # no donor in the run


def test_events_outside_the_clip_and_empty_inputs():
    m = BeatVisualF1(_Fixed("v"), "test")
    ctx = ClipContext("c", 4.0, seed=0)
    with pytest.raises(MetricError, match=r"no visual events \(test\)"):
        m.score_features({"audio": np.array([1.0]), "video": np.array([4.0, 5.0])}, ctx)  # all after the clip
    out = m.score_features({"audio": np.zeros(0), "other-audio": np.zeros(0), "video": np.array([1.0])}, ctx)
    assert out == {"": 0.0, "vs-shift": 0.0, "vs-other": 0.0}  # music without beats scores 0
    # beats after the clip's end do not count as false positives: F = 1 with or without them
    a = m.score_features({"audio": np.array([1.0, 2.0, 4.5, 9.0]), "video": np.array([1.0, 2.0])}, ctx)
    assert a[""] == 1.0


def test_extend_and_crop_events():
    assert extend_events([0.5, 1.0, 1.5], 3.2).tolist() == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    assert extend_events([0.5, 1.0, 1.5, 9.0], 3.0).tolist() == [0.5, 1.0, 1.5]  # a longer donor is cropped
    assert extend_events([1.0], 5.0).tolist() == [1.0] and extend_events([], 5.0).size == 0
    loop = extend_events([0.1, 0.3, 0.5, 1.1], 4.0)  # repeats every (1.1 - 0.1) + median gap 0.2 = 1.2 s
    assert loop.tolist() == pytest.approx([0.1, 0.3, 0.5, 1.1, 1.3, 1.5, 1.7, 2.3, 2.5, 2.7, 2.9, 3.5, 3.7, 3.9])
    assert crop_events([-1.0, 0.0, 2.0, 3.0], 3.0).tolist() == [0.0, 2.0]
