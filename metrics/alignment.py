"""Beat-to-visual alignment metrics: per-clip feature metrics with nulls, for any music (no reference needed).

Each metric reads music events of the generated music ("audio"), the same events of another clip's music from
the same run ("other-audio", the harness's donor) and visual events of the clip ("video"), and returns

    {"": s, "vs-shift": s - s_shift, "vs-other": s - s_other}

- s: the score of the music against the video;
- s_shift: the same music's events circularly shifted on [0, duration) by an offset drawn uniformly from
  [0.25 s, duration - 0.25 s] with ``np.random.default_rng(ctx.seed)`` (:func:`metrics.events.random_shift`);
  the music keeps its own rhythm, only its timing relative to the picture is destroyed;
- s_other: the score of the donor's music against this video. The donor was generated for another video and
  may be shorter or longer: its events are looped (:func:`extend_events`) and cropped to [0, duration), so a
  short donor is not penalised for missing beats. "vs-other" is left out when the harness has no donor.

A beat score means little alone (DESIGN.md, "Metrics: definitions and traps"): report the paired difference
over clips with its bootstrap CI (:func:`metrics.stats.bootstrap_mean` of the per-clip "vs-other" values).
All times are seconds on the clip's timeline; events at or after ``ctx.duration_s`` are dropped. A clip whose
video has no visual event of the metric's kind cannot be scored (MetricError: nothing to align to); music
with no beats scores 0.

The metric set (all version 1, higher is better, inputs at 25 frames/s and 44.1 kHz):

| name | music events | visual events | score |
| --- | --- | --- | --- |
| beat-visual-f1-cuts | madmom beats | PySceneDetect AdaptiveDetector cuts | F-measure, +-70 ms |
| beat-visual-f1-framediff | madmom beats | FrameDiffChanges (cuts + flash onsets) | F-measure, +-70 ms |
| beat-align-framediff | madmom beats | FrameDiffChanges | Beat Align Score, sigma 0.12 s |
| bhs-cuts-200ms | madmom beats | AdaptiveDetector cuts | BHS, 0.2 s bins |
| bcs-cuts-200ms | madmom beats | AdaptiveDetector cuts | BCS, 0.2 s bins |
| av-align-adaptive | madmom onsets | Farneback flow peaks (adaptive) | AV-Align IoU, +-1 frame (40 ms) |

``av-align`` (:class:`AVAlign` with the reference rule for flow peaks, every local maximum >= 0.1 px/frame)
is available but not in the set: on the demo its flow peaks are mostly sub-pixel noise (6.6 peaks/s) and the
IoU then rewards onset density, so the clip's own music does not beat another clip's music (vs-other
+0.01, 95% CI [-0.04, 0.07] over 20 clips) although it does beat its shifted self (vs-shift +0.11).

Why 0.2 s bins for BHS/BCS and not LORIS's 1 s: music beats come every 0.28-1.1 s, so at 55 BPM or faster
almost every 1 s bin holds a beat of *any* music; BHS then saturates at 1 for the real and the null music
alike and BCS only measures how many bins hold a cut (tests/test_alignment.py shows both on the demo). The
1 s versions stay available (:class:`BeatHitScore` with ``bin_s=1.0``), and :mod:`metrics.events` computes
them as published. 0.2 s bins (5 Hz) are also what some later evaluation code uses in its copy of the
LORIS script; with them the null music scores clearly lower (tests/test_alignment.py).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from metrics import events as ev
from metrics.base import AudioExtractor, ClipContext, MetricError, MetricInfo, VideoExtractor
from metrics.beats import BeatTimes, OnsetTimes
from metrics.visual_change import FlowPeaks, FrameDiffChanges, SceneCuts

SHIFT_MARGIN_S = 0.25  # s: the random circular shift is drawn from [margin, duration - margin]
NULLS = {
    "vs-shift": "s - s(own music events circularly shifted by U[0.25 s, duration - 0.25 s], "
                "rng = default_rng(ctx.seed))",
    "vs-other": "s - s(donor music events, looped and cropped to the clip)",
}


def crop_events(times: np.ndarray, duration_s: float) -> np.ndarray:
    """Sorted events in [0, duration_s) seconds."""
    t = ev.as_events(times)
    return t[(t >= 0.0) & (t < duration_s)]


def extend_events(times: np.ndarray, duration_s: float) -> np.ndarray:
    """Events of music that may be shorter than the clip, looped to cover [0, duration_s) and cropped.

    The pattern from the first to the last event repeats with period (last - first + median gap), so a steady
    beat grid simply continues; fewer than 2 events are only cropped. Times in seconds.
    """
    t = crop_events(times, np.inf)
    if t.size >= 2 and t[-1] < duration_s:
        period = float(t[-1] - t[0] + np.median(np.diff(t)))
        if period > 0:
            reps = int(np.ceil((duration_s - t[0]) / period)) + 1
            t = (t[None, :] + period * np.arange(reps)[:, None]).ravel()
    return crop_events(t, duration_s)


class AlignmentMetric:
    """Base: subclasses set `info`, `inputs` ("audio", "other-audio", "video") and `pair_score`."""

    info: MetricInfo
    inputs: dict[str, AudioExtractor | VideoExtractor]
    visual_label: str = "visual events"

    def pair_score(self, visual: np.ndarray, music: np.ndarray, duration_s: float) -> float:
        """Score of music events against visual events (both seconds, cropped to [0, duration_s))."""
        raise NotImplementedError

    def score_features(self, feats: dict[str, np.ndarray], ctx: ClipContext) -> dict[str, float]:
        """{"": s, "vs-shift": s - s_shift, "vs-other": s - s_other} (module docstring); feats: "audio" and
        "other-audio" music event times, "video" visual event times, all seconds. Raises MetricError when
        the video has no visual event in [0, ctx.duration_s)."""
        dur = float(ctx.duration_s)
        if not dur > 0:
            raise MetricError(f"clip duration must be > 0 s, got {dur}")
        visual = crop_events(feats["video"], dur)
        if visual.size == 0:
            raise MetricError(f"no {self.visual_label} detected in the video: nothing to align the music to")
        music = crop_events(feats["audio"], dur)
        s = float(self.pair_score(visual, music, dur))
        offset = ev.random_shift(np.random.default_rng(ctx.seed), dur, SHIFT_MARGIN_S)
        shifted = ev.circular_shift(music, offset, dur)
        out = {"": s, "vs-shift": s - float(self.pair_score(visual, shifted, dur))}
        if "other-audio" in feats:
            other = extend_events(feats["other-audio"], dur)
            out["vs-other"] = s - float(self.pair_score(visual, other, dur))
        return out


# Caveats every beat-to-visual score shares (the leaderboard's definitions page shows them).
ALIGNMENT_CAVEATS = (
    "read the ':vs-shift' and ':vs-other' paired differences, not the raw score: dense beats or frequent visual "
    "events raise the raw score without any alignment",
    "beat-sync (a reference system) places its beats on the video's cuts and flashes by construction, so on "
    "cut-based scores it ties or beats ground truth (on the demo it ties ground truth by construction): a check "
    "of the metric, not a competitor",
    "beat and onset times come from madmom's bundled models; other trackers (librosa, mir_eval defaults) give "
    "other values, so compare only with numbers computed the same way",
)
ALIGNMENT_NULL = ("paired nulls per clip: ':vs-shift' = score - score of the same music circularly shifted, "
                  "':vs-other' = score - score of another clip's music; 0 = no better than chance alignment")


def _info(name: str, units: str, description: str, params: dict[str, Any], reference_impl: str = "",
          caveats: tuple[str, ...] = ()) -> MetricInfo:
    return MetricInfo(name=name, version=1, units=units, higher_is_better=True, description=description,
                      needs_reference=False,
                      params={**params, "nulls": NULLS, "shift_margin_s": SHIFT_MARGIN_S},
                      reference_impl=reference_impl, null_value=ALIGNMENT_NULL,
                      caveats=ALIGNMENT_CAVEATS + caveats)


def _beat_inputs(video: VideoExtractor, music: AudioExtractor | None = None) -> dict[str, Any]:
    m = music if music is not None else BeatTimes()
    return {"audio": m, "other-audio": m, "video": video}


class BeatVisualF1(AlignmentMetric):
    """F-measure (``metrics.events.f_measure``: mir_eval's one-to-one matching, +-window s, no 5 s trim) of
    music beats (estimates) against visual events (reference). Precision = matched beats / beats, recall =
    matched visual events / visual events."""

    def __init__(self, video: VideoExtractor, detector: str, window_s: float = ev.DEFAULT_WINDOW_S,
                 music: AudioExtractor | None = None) -> None:
        self.window_s = float(window_s)
        self.inputs = _beat_inputs(video, music)
        self.visual_label = f"visual events ({detector})"
        self.info = _info(
            f"beat-visual-f1-{detector}", "F-measure (0-1)",
            f"F-measure of music beats vs {detector} visual events within +-{self.window_s * 1000:.0f} ms "
            "(one-to-one matching, no 5 s trim), with shifted-music and other-clip-music nulls",
            {"window_s": self.window_s, "matching": "maximum bipartite (mir_eval.util.match_events)",
             "trim_s": 0.0},
            reference_impl="mir_eval.beat.f_measure (one-to-one matching) with visual events as the reference "
                           "and no 5 s trim",
            caveats=("mir_eval's beat evaluation trims the first 5 s by default; this one does not",))

    def pair_score(self, visual: np.ndarray, music: np.ndarray, duration_s: float) -> float:
        return ev.f_measure(visual, music, self.window_s)


class BeatAlignScore(AlignmentMetric):
    """Beat Align Score (Bailando): mean over visual events of exp(-d^2 / (2 sigma^2)), d = distance (s) to
    the nearest music beat, sigma in seconds (default 0.12 s = 3 frames at 25 fps)."""

    def __init__(self, video: VideoExtractor, detector: str, sigma_s: float = ev.DEFAULT_SIGMA_S,
                 music: AudioExtractor | None = None) -> None:
        self.sigma_s = float(sigma_s)
        self.inputs = _beat_inputs(video, music)
        self.visual_label = f"visual events ({detector})"
        self.info = _info(
            f"beat-align-{detector}", "Beat Align Score (0-1)",
            f"Bailando Beat Align Score of music beats around {detector} visual events, sigma "
            f"{self.sigma_s:.3f} s, averaged over visual events, with shifted-music and other-clip-music "
            "nulls",
            {"sigma_s": self.sigma_s, "averaged_over": "visual events"},
            reference_impl="Bailando (Siyao et al. 2022) Beat Align Score, sigma in seconds instead of frames",
            caveats=("Bailando averages over music beats of dance motion; here over visual events of the video",))

    def pair_score(self, visual: np.ndarray, music: np.ndarray, duration_s: float) -> float:
        return ev.beat_align_score(visual, music, self.sigma_s)


class BeatHitScore(AlignmentMetric):
    """BHS (D2M-GAN / LORIS): fraction of bins (bin_s seconds) with a visual event that also hold a beat."""

    def __init__(self, video: VideoExtractor, detector: str, bin_s: float = 0.2,
                 music: AudioExtractor | None = None) -> None:
        self.bin_s = float(bin_s)
        self.inputs = _beat_inputs(video, music)
        self.visual_label = f"visual events ({detector})"
        self.info = _info(
            f"bhs-{detector}-{self.bin_s * 1000:.0f}ms", "fraction of visual-event bins (0-1)",
            f"Beat Hit Score: share of {self.bin_s:g} s bins with a {detector} visual event that also hold a "
            "music beat, with shifted-music and other-clip-music nulls",
            {"bin_s": self.bin_s, "reference": f"{detector} visual events", "generated": "music beats"},
            reference_impl="LORIS beats_scores.py (D2M-GAN's BHS), with cuts in place of dance beats",
            caveats=("LORIS uses 1 s bins on librosa onsets; these 0.2 s bins on madmom beats give other values; "
                     "published BHS above 100 use yet another definition",))

    def pair_score(self, visual: np.ndarray, music: np.ndarray, duration_s: float) -> float:
        return ev.beat_hit_score(visual, music, duration_s, self.bin_s)


class BeatCoverageScore(AlignmentMetric):
    """BCS (LORIS): fraction of bins (bin_s seconds) holding a music beat that also hold a visual event."""

    def __init__(self, video: VideoExtractor, detector: str, bin_s: float = 0.2,
                 music: AudioExtractor | None = None) -> None:
        self.bin_s = float(bin_s)
        self.inputs = _beat_inputs(video, music)
        self.visual_label = f"visual events ({detector})"
        self.info = _info(
            f"bcs-{detector}-{self.bin_s * 1000:.0f}ms", "fraction of beat bins (0-1)",
            f"Beat Coverage Score: share of {self.bin_s:g} s bins with a music beat that also hold a "
            f"{detector} visual event, with shifted-music and other-clip-music nulls",
            {"bin_s": self.bin_s, "reference": f"{detector} visual events", "generated": "music beats"},
            reference_impl="LORIS beats_scores.py (BCS), with cuts in place of dance beats",
            caveats=("LORIS uses 1 s bins on librosa onsets; these 0.2 s bins on madmom beats give other values",))

    def pair_score(self, visual: np.ndarray, music: np.ndarray, duration_s: float) -> float:
        return ev.beat_coverage_score(visual, music, duration_s, self.bin_s)


class AVAlign(AlignmentMetric):
    """AV-Align (Yariv et al.): IoU of music onsets and optical-flow peaks, matched one-to-one within
    +-`frames` video frames (default 1 frame = 40 ms at 25 fps). With the default video extractor
    (``FlowPeaks(peaks="local-max")``, the reference peak rule) the metric is named "av-align"; with
    adaptive flow peaks "av-align-adaptive"."""

    def __init__(self, video: VideoExtractor | None = None, music: AudioExtractor | None = None,
                 frames: float = 1.0) -> None:
        v = video if video is not None else FlowPeaks(peaks="local-max")
        m = music if music is not None else OnsetTimes()
        self.fps = float(v.info.fps or 25.0)
        self.frames = float(frames)
        self.inputs = {"audio": m, "other-audio": m, "video": v}
        self.visual_label = "optical-flow peaks"
        rule = str(v.info.params.get("peaks", v.info.name))
        self.info = _info(
            "av-align" if rule == "local-max" else f"av-align-{rule}", "IoU (0-1)",
            f"AV-Align: intersection over union of music onsets and optical-flow magnitude peaks ({rule}), "
            f"matched one-to-one within +-{self.frames:g} frame at {self.fps:g} fps, with shifted and "
            "other-clip nulls",
            {"window_frames": self.frames, "fps": self.fps, "window_s": self.frames / self.fps,
             "iou": "matched / (|onsets| + |flow peaks| - matched)", "flow_peaks": rule},
            reference_impl="AV-Align (Yariv et al. 2024): IoU of audio onsets and optical-flow peaks, +-1 frame",
            caveats=() if rule == "local-max" else
            ("adaptive flow peaks differ from the reference local-maximum rule: not comparable with papers",))

    def pair_score(self, visual: np.ndarray, music: np.ndarray, duration_s: float) -> float:
        return ev.av_align(music, visual, self.fps, self.frames)


# ------------------------------------------------------- the registered set (zero-argument constructors)
class BeatVisualF1Cuts(BeatVisualF1):
    def __init__(self) -> None:
        super().__init__(SceneCuts("adaptive"), "cuts")


class BeatVisualF1FrameDiff(BeatVisualF1):
    def __init__(self) -> None:
        super().__init__(FrameDiffChanges(), "framediff")


class BeatAlignFrameDiff(BeatAlignScore):
    def __init__(self) -> None:
        super().__init__(FrameDiffChanges(), "framediff")


class BeatHitCuts(BeatHitScore):
    def __init__(self) -> None:
        super().__init__(SceneCuts("adaptive"), "cuts", bin_s=0.2)


class BeatCoverageCuts(BeatCoverageScore):
    def __init__(self) -> None:
        super().__init__(SceneCuts("adaptive"), "cuts", bin_s=0.2)


class AVAlignAdaptive(AVAlign):
    def __init__(self) -> None:
        super().__init__(FlowPeaks(peaks="adaptive"))


METRIC_SET = (BeatVisualF1Cuts, BeatVisualF1FrameDiff, BeatAlignFrameDiff, BeatHitCuts, BeatCoverageCuts,
              AVAlignAdaptive)
