"""Event-matching scores (metrics/events.py): hand-computed golden cases and mir_eval cross-checks."""
from __future__ import annotations

import math

import mir_eval
import numpy as np
import pytest

from metrics import events as ev


# ------------------------------------------------------------------------------------------ F-measure
@pytest.mark.parametrize(
    ("ref", "est", "window", "expected"),
    [
        # 6.0-6.05 and 8.0-8.0 match, 7.0-7.1 is 100 ms apart, 10.0 is unmatched: P = R = 2/4
        ([6.0, 7.0, 8.0, 9.0], [6.05, 7.1, 8.0, 10.0], 0.07, 0.5),
        # one estimate cannot serve two references: P = 1, R = 1/2, F = 2/3
        ([6.0, 6.0], [6.0], 0.07, 2 / 3),
        # +-70 ms is inclusive even when the difference is not exact in binary (6.07 - 6.0 = 0.0700000000000003)
        ([6.0], [6.07], 0.07, 1.0),
        ([6.0], [6.0701], 0.07, 0.0),
        # a wider window: 3 of 3 references, 3 of 4 estimates -> P = 3/4, R = 1, F = 6/7
        ([6.0, 7.0, 8.0], [6.1, 6.9, 8.15, 12.0], 0.2, 6 / 7),
        ([], [6.0], 0.07, 0.0),
        ([6.0], [], 0.07, 0.0),
        ([], [], 0.07, 0.0),
    ],
)
def test_f_measure_golden(ref, est, window, expected):
    assert ev.f_measure(ref, est, window) == pytest.approx(expected, abs=1e-12)


def test_matching_is_maximum_not_greedy():
    """Nearest-first greedy pairs 10.04 with 10.06 and leaves 10.11 alone (F = 0.5); the maximum matching pairs
    10.04-10.00 and 10.11-10.06 (F = 1), as mir_eval does."""
    ref, est = np.array([10.00, 10.06]), np.array([10.04, 10.11])
    assert ev.match_events(ref, est, 0.07) == [(0, 0), (1, 1)]
    assert ev.f_measure(ref, est) == pytest.approx(1.0)
    assert mir_eval.beat.f_measure(ref, est) == pytest.approx(1.0)


def test_precision_recall_f_golden():
    p, r, f = ev.precision_recall_f([6.0, 7.0, 8.0, 9.0], [6.01, 8.02], 0.07)
    assert (p, r) == (1.0, 0.5) and f == pytest.approx(2 / 3)


def test_unsorted_input_is_sorted_and_bad_input_rejected():
    assert ev.f_measure([9.0, 6.0], [6.0, 9.0]) == 1.0
    assert ev.match_events([9.0, 6.0], [6.01]) == [(0, 0)]  # indices refer to the sorted inputs
    with pytest.raises(ValueError):
        ev.f_measure([6.0, np.nan], [6.0])
    with pytest.raises(ValueError):
        ev.f_measure(np.zeros((2, 2)), [6.0])


def test_f_measure_equals_mir_eval_on_times_after_5s():
    """mir_eval.beat.evaluate trims beats before 5 s; on events after 5 s ours must equal mir_eval.beat.f_measure."""
    ref = np.array([5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 8.5])
    est = np.array([5.52, 6.08, 6.47, 7.2, 7.49, 8.03, 9.1, 9.5])
    assert ev.f_measure(ref, est) == pytest.approx(mir_eval.beat.f_measure(ref, est), abs=1e-12)
    trimmed = mir_eval.beat.trim_beats(ref)
    assert np.array_equal(trimmed, ref)  # nothing for mir_eval to trim: same inputs on both sides


def test_f_measure_equals_mir_eval_on_random_cases():
    """200 random cases with dense, ambiguous neighbourhoods (jittered copies + extras), random windows."""
    rng = np.random.default_rng(1234)
    checked = 0
    for _ in range(200):
        n = int(rng.integers(1, 40))
        ref = np.sort(rng.uniform(0.0, 30.0, n))
        keep = ref[rng.random(n) < 0.7]
        est = np.sort(np.concatenate([keep + rng.normal(0, 0.05, keep.size), rng.uniform(0, 30, int(rng.integers(0, 10)))]))
        if est.size == 0:
            continue
        window = float(rng.choice([0.03, 0.07, 0.1, 0.5]))
        ours = ev.f_measure(ref, est, window)
        theirs = mir_eval.beat.f_measure(ref, est, f_measure_threshold=window)
        assert ours == pytest.approx(theirs, abs=1e-12)
        assert len(ev.match_events(ref, est, window)) == len(mir_eval.util.match_events(ref, est, window))
        checked += 1
    assert checked > 150


# ------------------------------------------------------------------------------------------ BHS / BCS
def test_bhs_bcs_golden_1s_bins():
    """5 s clip -> bins [0,1) ... [4,5). Visual events in bins {0, 2, 4}; beats in bins {0, 1, 2, 3}.
    Both in {0, 2}: BHS = 2/3 (of visual bins), BCS = 2/4 (of beat bins)."""
    visual, beats = [0.5, 2.2, 2.7, 4.9], [0.1, 1.5, 2.0, 3.3]
    assert ev.beat_hit_score(visual, beats, 5.0) == pytest.approx(2 / 3)
    assert ev.beat_coverage_score(visual, beats, 5.0) == pytest.approx(0.5)


def test_bins_edges_and_other_widths():
    assert ev.event_bins([0.0, 3.0, 4.999, 5.0, -0.1], 5.0).tolist() == [True, False, False, True, True]
    assert ev.event_bins([2.2], 2.3).tolist() == [False, False, True]  # ceil(2.3) = 3 bins
    # 0.5 s bins over 2 s: visual bins {0, 1, 3}, beat bins {0, 2}: BHS = 1/3, BCS = 1/2
    assert ev.beat_hit_score([0.2, 0.6, 1.9], [0.4, 1.2], 2.0, bin_s=0.5) == pytest.approx(1 / 3)
    assert ev.beat_coverage_score([0.2, 0.6, 1.9], [0.4, 1.2], 2.0, bin_s=0.5) == pytest.approx(1 / 2)
    assert ev.beat_hit_score([], [1.0], 3.0) == 0.0 and ev.beat_coverage_score([1.0], [], 3.0) == 0.0


def test_bhs_bcs_match_a_set_based_definition_on_random_cases():
    rng = np.random.default_rng(7)
    for _ in range(100):
        dur = float(rng.uniform(3, 30))
        a, b = rng.uniform(0, dur, int(rng.integers(1, 20))), rng.uniform(0, dur, int(rng.integers(1, 20)))
        bin_s = float(rng.choice([0.2, 0.5, 1.0]))
        sa, sb = {int(t // bin_s) for t in a}, {int(t // bin_s) for t in b}
        assert ev.beat_hit_score(a, b, dur, bin_s) == pytest.approx(len(sa & sb) / len(sa))
        assert ev.beat_coverage_score(a, b, dur, bin_s) == pytest.approx(len(sa & sb) / len(sb))


# ------------------------------------------------------------------------------------------ Beat Align Score
def test_beat_align_score_golden():
    # d = 0 and d = sigma: (1 + exp(-1/2)) / 2
    assert ev.beat_align_score([1.0, 2.0], [1.0, 2.12], sigma_s=0.12) == pytest.approx((1 + math.exp(-0.5)) / 2)
    # nearest beat 0.3 s away: exp(-0.09 / (2 * 0.0144)) = exp(-3.125)
    assert ev.beat_align_score([0.5], [0.0, 0.8], sigma_s=0.12) == pytest.approx(math.exp(-3.125))
    # one target, anchors on both sides; sigma 3 frames at 60 fps (Bailando's own) = 0.05 s
    d = np.array([0.24, 0.76])
    assert ev.beat_align_score([0.0, 1.0], [0.24], sigma_s=0.05) == pytest.approx(np.mean(np.exp(-d**2 / 0.005)))
    assert ev.beat_align_score([1.0], [3.0, 0.9, 2.0]) == pytest.approx(math.exp(-0.01 / 0.0288))  # unsorted targets
    assert ev.beat_align_score([], [1.0]) == 0.0 and ev.beat_align_score([1.0], []) == 0.0
    with pytest.raises(ValueError):
        ev.beat_align_score([1.0], [1.0], sigma_s=0.0)


def test_beat_align_score_direction_matters():
    """Averaged over the anchors: one visual event on a beat of a dense grid scores 1, the reverse does not."""
    grid = np.arange(0.0, 10.0, 0.5)
    assert ev.beat_align_score([3.0], grid) == pytest.approx(1.0)
    assert ev.beat_align_score(grid, [3.0]) < 0.1


# ------------------------------------------------------------------------------------------ AV-Align
def test_av_align_golden():
    # 1.00-1.04 is exactly one frame at 25 fps (inclusive); 2.00-2.10 is 2.5 frames: M = 1, IoU = 1 / (3 + 3 - 1)
    assert ev.av_align([1.0, 2.0, 3.0], [1.04, 2.10, 5.0], fps=25) == pytest.approx(0.2)
    # one video peak serves one audio peak only: M = 1, IoU = 1 / (2 + 1 - 1)
    assert ev.av_align([1.0, 1.04], [1.02], fps=25) == pytest.approx(0.5)
    assert ev.av_align([1.0, 2.0], [1.0, 2.0], fps=25) == 1.0
    # a wider window of 3 frames at 30 fps (0.1 s) now matches 2.00-2.10
    assert ev.av_align([1.0, 2.0, 3.0], [1.04, 2.10, 5.0], fps=30, frames=3) == pytest.approx(0.5)
    assert ev.av_align([], [], fps=25) == 0.0 and ev.av_align([1.0], [], fps=25) == 0.0


# ------------------------------------------------------------------------------------------ shifts
def test_circular_shift_golden():
    assert ev.circular_shift([0.5, 9.0], 2.0, 10.0).tolist() == [1.0, 2.5]
    assert ev.circular_shift([0.5, 9.0], -1.0, 10.0).tolist() == [8.0, 9.5]
    assert np.allclose(ev.circular_shift([1.0, 12.5], 0.0, 10.0), [1.0, 2.5])  # wrapped into [0, duration)
    out = ev.circular_shift(np.linspace(0, 9.9, 100), 3.3, 10.0)
    assert out.size == 100 and out.min() >= 0 and out.max() < 10.0
    with pytest.raises(ValueError):
        ev.circular_shift([1.0], 1.0, 0.0)


def test_random_shift_stays_away_from_zero_and_is_seeded():
    offs = [ev.random_shift(np.random.default_rng(s), 8.0) for s in range(200)]
    assert min(offs) >= 0.25 and max(offs) <= 7.75
    assert ev.random_shift(np.random.default_rng(3), 8.0) == ev.random_shift(np.random.default_rng(3), 8.0)
    assert 0.0 <= ev.random_shift(np.random.default_rng(0), 0.3) < 0.3  # too short for the margin
