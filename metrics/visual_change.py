"""Video-side event extractors: times (s) where the picture changes.

Every extractor is a video extractor in the sense of :mod:`metrics.base`: it receives uint8 RGB frames
[T, H, W, 3] decoded at ``info.fps`` frames per second and resized to ``info.size`` = (width, height), and
returns a sorted 1-D float64 array of event times in seconds, frame index / fps (frame k is shown from
k / fps on, so a cut at frame k is reported at k / fps). All run offline on the CPU.

- :class:`FrameDiffChanges`: abrupt global changes: hard cuts and flash onsets (a frame much brighter or
  darker than the one before). Change curve c_t in [0, 1] = mean of (i) the colour distance, half the L1
  distance between joint HSV histograms (16 hue x 4 saturation x 4 value bins) of frames t-1 and t, and (ii)
  the edge distance, sum |E_t - E_{t-1}| / sum (E_t + E_{t-1}) over gradient-magnitude maps (3x3 Sobel on
  luma) averaged in a 4 x 4 grid of blocks, so objects moving inside a block change it little; then
  :func:`pick_events`. Motion of objects over a static background (the demo's motion bursts) stays below the
  threshold by design; flash *offsets* closer than ``min_gap_s`` to the onset merge into it.
- :func:`patch_change_curve` / :class:`ClipPatchChanges`: VidMusician's rhythm signal
  d_t = 1 - (1/P) sum_p cos(p_{t,p}, p_{t-1,p}), d_0 = 1, over patch features [T, P, D] (25 frames/s in the
  paper's reading), peak-picked by :func:`pick_events` (t = 0 excluded: d_0 = 1 is a convention, not a
  change).
- :class:`SceneCuts`: hard cuts from PySceneDetect's detectors (``AdaptiveDetector`` adaptive_threshold 3.0
  or ``ContentDetector`` threshold 27.0, min_scene_len 15 frames), fed frame by frame through the detectors'
  ``process_frame`` API (no video file), plus our flash filter: a reported cut at frame k is dropped when
  one of frames k+1 .. k+F (F = max_flash_s * fps) is back within half the k-1 -> k jump of frame k-1 in
  ContentDetector's HSV distance (the picture came back: a flash, not a cut).
- :class:`FlowPeaks`: AV-Align's video peaks (Yariv et al. 2024): mean Farneback optical-flow magnitude
  between consecutive frames (OpenCV ``calcOpticalFlowFarneback`` with pyr_scale 0.5, 3 levels, window 15 px,
  3 iterations, poly_n 5, poly_sigma 1.2, on luma), then either the reference rule (strict local maxima at
  least 0.1 px/frame) or our adaptive peak picking.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from metrics.base import ExtractorInfo
from metrics.beats import package_version

DEFAULT_FPS = 25.0  # frames per second every video extractor here asks for (VidMusician's rhythm rate)


# ---------------------------------------- helpers
def _frames(frames: np.ndarray) -> np.ndarray:
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 RGB [T, H, W, 3], got shape {f.shape}")
    if f.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {f.dtype}")
    return f


def _check_fps(fps: float, expected: float) -> None:
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if abs(float(fps) - float(expected)) > 1e-6:
        raise ValueError(f"this extractor expects frames at {expected} frames/s, got {fps}")


def _running(x: np.ndarray, half: int, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """fn over the windows [t - half, t + half] of a 1-D x for every t (x reflected at its ends)."""
    n = x.size
    pad = np.pad(x, half, mode="reflect") if n > half else np.pad(x, half, mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1)
    return fn(win)


def pick_events(
    curve: np.ndarray,
    fps: float,
    floor: float,
    k: float = 3.0,
    window_s: float = 1.0,
    min_gap_s: float = 0.12,
    start: int = 1,
) -> np.ndarray:
    """Event frames of a change curve: onsets of runs above an adaptive threshold, at least min_gap_s apart.

    Frame t is above threshold when curve[t] >= floor and curve[t] >= median_w + k * 1.4826 * MAD_w, the
    median and median absolute deviation of the curve over [t - window_s/2, t + window_s/2] (seconds; a
    robust local baseline, so busy stretches need larger jumps). The first frame of each run of
    above-threshold frames is an event; an event closer than min_gap_s seconds to the previous accepted
    event is dropped (the earliest wins: an event's onset). Frames before `start` are ignored.
    Returns int frame indices, ascending.
    """
    c = np.asarray(curve, dtype=np.float64).ravel()
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    half = max(int(round(window_s * fps / 2)), 1)
    med = _running(c, half, lambda w: np.median(w, axis=-1))
    mad = _running(np.abs(c - med), half, lambda w: np.median(w, axis=-1))
    above = (c >= floor) & (c >= med + k * 1.4826 * mad)
    above[: max(start, 0)] = False
    onsets = np.flatnonzero(above & ~np.r_[False, above[:-1]])
    gap = max(int(round(min_gap_s * fps)), 1)
    out: list[int] = []
    for t in onsets:
        if not out or t - out[-1] >= gap:
            out.append(int(t))
    return np.asarray(out, dtype=np.int64)


def _gray(frames: np.ndarray) -> np.ndarray:
    """Luma (ITU-R BT.601, as OpenCV's RGB2GRAY) uint8 [T, H, W]."""
    import cv2

    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])


# ---------------------------------------- (a) frame differences
def colour_distance_curve(frames: np.ndarray, bins: tuple[int, int, int] = (16, 4, 4)) -> np.ndarray:
    """[T] half the L1 distance (in [0, 1]) between joint HSV histograms of frames t-1 and t; entry 0 is 0.

    HSV as OpenCV's 8-bit conversion (H in [0, 180), S and V in [0, 256)); `bins` = (hue, sat, value) counts.
    """
    import cv2

    f = _frames(frames)
    hb, sb, vb = bins
    hist = np.empty((f.shape[0], hb * sb * vb))
    for t, img in enumerate(f):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.int64)
        idx = ((hsv[:, 0] * hb) // 180 * sb + (hsv[:, 1] * sb) // 256) * vb + (hsv[:, 2] * vb) // 256
        hist[t] = np.bincount(idx, minlength=hb * sb * vb)
    hist /= np.maximum(hist.sum(axis=1, keepdims=True), 1)
    out = np.zeros(f.shape[0])
    out[1:] = 0.5 * np.abs(np.diff(hist, axis=0)).sum(axis=1)
    return out


def edge_distance_curve(frames: np.ndarray, grid: int = 4) -> np.ndarray:
    """[T] relative change (in [0, 1]) of block-averaged gradient magnitude between frames t-1 and t.

    Gradient magnitude = hypot of 3x3 Sobel derivatives of luma; averaged over a grid x grid lattice of
    blocks; distance = sum |E_t - E_{t-1}| / sum (E_t + E_{t-1}). Entry 0 is 0.
    """
    import cv2

    g = _gray(_frames(frames)).astype(np.float32)
    t_, h, w = g.shape
    hs, ws = max(h // grid, 1), max(w // grid, 1)
    maps = np.empty((t_, grid, grid))
    for t, img in enumerate(g):
        gx, gy = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
        mag = cv2.magnitude(gx, gy)
        maps[t] = mag[: hs * grid, : ws * grid].reshape(grid, hs, grid, ws).mean(axis=(1, 3))
    out = np.zeros(t_)
    num = np.abs(np.diff(maps, axis=0)).sum(axis=(1, 2))
    den = (maps[1:] + maps[:-1]).sum(axis=(1, 2))
    out[1:] = np.where(den > 1e-9, num / np.maximum(den, 1e-9), 0.0)
    return out


def frame_change_curve(
    frames: np.ndarray, hist_bins: tuple[int, int, int] = (16, 4, 4), grid: int = 4
) -> np.ndarray:
    """[T] FrameDiffChanges' curve in [0, 1]: mean of :func:`colour_distance_curve` and
    :func:`edge_distance_curve`; entry 0 is 0."""
    return 0.5 * (colour_distance_curve(frames, hist_bins) + edge_distance_curve(frames, grid))


class FrameDiffChanges:
    """Cut and flash-onset times (s) from colour-histogram and edge-map frame differences (numpy + OpenCV).

    Frames: uint8 RGB at 25 frames/s, 128 x 128 px (``info``). Events: :func:`pick_events` on
    :func:`frame_change_curve` with floor 0.3, k = 3 robust deviations over a 1 s window, events at least
    0.12 s (3 frames) apart. Times are frame / fps seconds.
    """

    def __init__(
        self,
        fps: float = DEFAULT_FPS,
        size: tuple[int, int] = (128, 128),
        floor: float = 0.3,
        k: float = 3.0,
        window_s: float = 1.0,
        min_gap_s: float = 0.12,
        hist_bins: tuple[int, int, int] = (16, 4, 4),
        grid: int = 4,
    ) -> None:
        self.fps = float(fps)
        self.floor, self.k = float(floor), float(k)
        self.window_s, self.min_gap_s = float(window_s), float(min_gap_s)
        self.hist_bins, self.grid = tuple(int(b) for b in hist_bins), int(grid)
        self.info = ExtractorInfo(
            name="framediff-changes", version=1, fps=self.fps, size=(int(size[0]), int(size[1])),
            params={"curve": "mean(hsv-hist half-L1, sobel-grid relative L1)",
                    "hist_bins_hsv": list(self.hist_bins), "edge_grid": self.grid, "floor": self.floor,
                    "k_mad": self.k, "window_s": self.window_s, "min_gap_s": self.min_gap_s})

    def curve(self, frames: np.ndarray) -> np.ndarray:
        """The change curve c [T] in [0, 1] (c_0 = 0)."""
        return frame_change_curve(frames, self.hist_bins, self.grid)

    def __call__(self, frames: np.ndarray, fps: float) -> np.ndarray:
        _check_fps(fps, self.fps)
        f = _frames(frames)
        if f.shape[0] < 2:
            return np.zeros(0)
        idx = pick_events(self.curve(f), self.fps, self.floor, self.k, self.window_s, self.min_gap_s, start=1)
        return idx / self.fps


# ---------------------------------------- (b) CLIP patch changes
def patch_change_curve(patch_feats: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """VidMusician's rhythm signal d [T] from patch features [T, P, D]:
    d_t = 1 - mean_p cos(p_{t,p}, p_{t-1,p}), d_0 = 1 (DESIGN.md, "Rhythm").

    The mean is over patches of the per-patch cosine (not the cosine of the flattened [P*D] vectors): every
    spatial location counts equally, whereas the flattened cosine weighs patches by their feature norm, so a
    few high-norm tokens (ViTs have them) would dominate and local changes elsewhere would barely register.
    Cosines use max(|a| |b|, eps) as denominator (a zero patch counts as fully changed). Range [0, 2].
    """
    x = np.asarray(patch_feats, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"patch features must be [T, P, D], got shape {x.shape}")
    d = np.ones(x.shape[0])
    if x.shape[0] > 1:
        a, b = x[1:], x[:-1]
        cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), eps)
        d[1:] = 1.0 - cos.mean(axis=1)
    return d


class ClipPatchChanges:
    """Change times (s) from peaks of :func:`patch_change_curve` over CLIP patch features.

    `encode_patches(frames uint8 [T, H, W, 3]) -> [T, P, D]` is the patch encoder (e.g. a CLIP ViT's patch
    tokens, metrics/backbones/clip.py); `backbone` ({name, file, sha256}) names its checkpoint and becomes
    part of the extractor's identity. Frames at 25 frames/s, 224 x 224 px by default. Events:
    :func:`pick_events` on d (t >= 1) with floor 0.1, k = 3 robust deviations over 1 s, at least 0.12 s apart.
    """

    def __init__(
        self,
        encode_patches: Callable[[np.ndarray], np.ndarray],
        backbone: dict[str, Any] | None,
        fps: float = DEFAULT_FPS,
        size: tuple[int, int] = (224, 224),
        floor: float = 0.1,
        k: float = 3.0,
        window_s: float = 1.0,
        min_gap_s: float = 0.12,
    ) -> None:
        self.encode_patches = encode_patches
        self.fps = float(fps)
        self.floor, self.k = float(floor), float(k)
        self.window_s, self.min_gap_s = float(window_s), float(min_gap_s)
        self.info = ExtractorInfo(
            name="clip-patch-changes", version=1, fps=self.fps, size=(int(size[0]), int(size[1])),
            backbone=backbone,
            params={"curve": "1 - mean_p cos(p_t, p_t-1), d_0 = 1", "floor": self.floor, "k_mad": self.k,
                    "window_s": self.window_s, "min_gap_s": self.min_gap_s})

    def curve(self, frames: np.ndarray) -> np.ndarray:
        """d [T] of the frames' patch features."""
        return patch_change_curve(self.encode_patches(_frames(frames)))

    def peaks_from_curve(self, d: np.ndarray) -> np.ndarray:
        """Change times (s) of a curve d [T] sampled at info.fps (t = 0 never counts)."""
        idx = pick_events(d, self.fps, self.floor, self.k, self.window_s, self.min_gap_s, start=1)
        return idx / self.fps

    def __call__(self, frames: np.ndarray, fps: float) -> np.ndarray:
        _check_fps(fps, self.fps)
        f = _frames(frames)
        if f.shape[0] < 2:
            return np.zeros(0)
        return self.peaks_from_curve(self.curve(f))


# ---------------------------------------- (c) PySceneDetect cuts
def hsv_content_distance(a: np.ndarray, b: np.ndarray) -> float:
    """ContentDetector's frame score with its default weights: mean over H, S, V of the mean absolute
    difference of the 8-bit channels (OpenCV HSV of the BGR frames), 0-255 scale. Inputs uint8 RGB
    [H, W, 3]."""
    import cv2

    ha = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2HSV).astype(np.int16)
    hb = cv2.cvtColor(np.ascontiguousarray(b), cv2.COLOR_RGB2HSV).astype(np.int16)
    return float(np.abs(ha - hb).reshape(-1, 3).mean(axis=0).mean())


class SceneCuts:
    """Hard-cut times (s) from PySceneDetect's ``AdaptiveDetector`` (default) or ``ContentDetector``.

    Frames: uint8 RGB at 25 frames/s, 128 x 128 px (``info``; ContentDetector's score is a mean over pixels
    of HSV differences, so a small frame suffices), converted to BGR and passed one by one to the
    detector's ``process_frame`` with a ``FrameTimecode(k, fps)``, then ``post_process``. Defaults:
    adaptive_threshold 3.0 (window 2 frames, min_content_val 15.0) or content threshold 27.0; min_scene_len 15
    frames. Flash filter (ours, ``flash_filter=True``): a cut at frame k is dropped if any frame k+1..k+F,
    F = round(max_flash_s * fps) (0.12 s = 3 frames), is closer to frame k-1 than flash_ratio (0.5) times the
    jump from k-1 to k, in ContentDetector's HSV distance (:func:`hsv_content_distance`): the picture came
    back, so it was a flash, not a cut. A ratio rather than an absolute level, because hue wraps around on
    red, low-saturation pictures and compression noise alone then gives distances above 20.
    """

    def __init__(
        self,
        detector: str = "adaptive",
        threshold: float | None = None,
        min_scene_len: int = 15,
        fps: float = DEFAULT_FPS,
        size: tuple[int, int] = (128, 128),
        flash_filter: bool = True,
        max_flash_s: float = 0.12,
        flash_ratio: float = 0.5,
        window_width: int = 2,
        min_content_val: float = 15.0,
    ) -> None:
        if detector not in ("adaptive", "content"):
            raise ValueError(f"detector must be 'adaptive' or 'content', got {detector!r}")
        self.detector = detector
        default = 3.0 if detector == "adaptive" else 27.0
        self.threshold = float(threshold if threshold is not None else default)
        self.min_scene_len = int(min_scene_len)
        self.fps = float(fps)
        self.flash_filter, self.max_flash_s = bool(flash_filter), float(max_flash_s)
        self.flash_ratio = float(flash_ratio)
        self.window_width, self.min_content_val = int(window_width), float(min_content_val)
        cls = "AdaptiveDetector" if detector == "adaptive" else "ContentDetector"
        params: dict[str, Any] = {
            "detector": f"scenedetect.{cls}", "threshold": self.threshold,
            "min_scene_len_frames": self.min_scene_len, "flash_filter": self.flash_filter,
            "max_flash_s": self.max_flash_s, "flash_ratio": self.flash_ratio,
            "scenedetect": package_version("scenedetect")}
        if detector == "adaptive":
            params.update(window_width=self.window_width, min_content_val=self.min_content_val)
        self.info = ExtractorInfo(name=f"scenedetect-{detector}-cuts", version=1, fps=self.fps,
                                  size=(int(size[0]), int(size[1])), params=params)

    def _make(self):
        from scenedetect.detectors import AdaptiveDetector, ContentDetector

        if self.detector == "adaptive":
            return AdaptiveDetector(adaptive_threshold=self.threshold, min_scene_len=self.min_scene_len,
                                    window_width=self.window_width, min_content_val=self.min_content_val)
        return ContentDetector(threshold=self.threshold, min_scene_len=self.min_scene_len)

    def cut_frames(self, frames: np.ndarray) -> np.ndarray:
        """Cut frame indices (first frame of each new shot) as reported by the PySceneDetect detector."""
        import cv2
        from scenedetect import FrameTimecode

        f = _frames(frames)
        det = self._make()
        # PySceneDetect >= 0.7 passes FrameTimecodes; 0.6 passed plain frame numbers (same detectors)
        timecodes = "timecode" in inspect.signature(det.process_frame).parameters
        at = (lambda k: FrameTimecode(k, fps=self.fps)) if timecodes else (lambda k: k)
        cuts: list[Any] = []
        for k, img in enumerate(f):
            cuts += det.process_frame(at(k), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if f.shape[0]:
            cuts += det.post_process(at(f.shape[0] - 1))
        return np.unique(np.asarray([getattr(c, "frame_num", c) for c in cuts], dtype=np.int64))

    def _is_flash(self, f: np.ndarray, k: int) -> bool:
        if k < 1:
            return False
        jump = hsv_content_distance(f[k - 1], f[k])
        span = max(int(round(self.max_flash_s * self.fps)), 1)
        return any(hsv_content_distance(f[k - 1], f[j]) < self.flash_ratio * jump
                   for j in range(k + 1, min(k + span, f.shape[0] - 1) + 1))

    def __call__(self, frames: np.ndarray, fps: float) -> np.ndarray:
        _check_fps(fps, self.fps)
        f = _frames(frames)
        ks = [int(k) for k in self.cut_frames(f) if k > 0]
        if self.flash_filter:
            ks = [k for k in ks if not self._is_flash(f, k)]
        return np.asarray(ks, dtype=np.float64) / self.fps


# ---------------------------------------- (d) optical-flow peaks
def flow_magnitude_curve(frames: np.ndarray) -> np.ndarray:
    """[T] mean Farneback optical-flow magnitude (px/frame at the frames' size) from frame t-1 to t on luma;
    entry 0 repeats entry 1 (as the AV-Align reference does). OpenCV parameters: pyr_scale 0.5, levels 3,
    winsize 15, iterations 3, poly_n 5, poly_sigma 1.2, flags 0."""
    import cv2

    g = _gray(_frames(frames))
    out = np.zeros(g.shape[0])
    for t in range(1, g.shape[0]):
        flow = cv2.calcOpticalFlowFarneback(g[t - 1], g[t], None, 0.5, 3, 15, 3, 5, 1.2, 0)
        out[t] = float(cv2.magnitude(flow[..., 0], flow[..., 1]).mean())
    if g.shape[0] > 1:
        out[0] = out[1]
    return out


class FlowPeaks:
    """Optical-flow peak times (s) for AV-Align, from :func:`flow_magnitude_curve` of uint8 RGB frames at
    25 frames/s, 128 x 128 px.

    ``peaks="local-max"`` (AV-Align's reference rule): every strict local maximum of the curve at least
    ``min_magnitude`` = 0.1 px/frame. On calm footage this fires on sub-pixel noise several times a second
    (6.6 peaks/s on the demo), so the IoU mostly measures onset and peak densities.
    ``peaks="adaptive"`` (ours): :func:`pick_events` on the curve with floor ``min_magnitude`` (default
    0.5 px/frame here), k = 3 robust deviations over 1 s, events at least 0.12 s apart: onsets of motion
    bursts, cuts and flashes (about 1 peak/s on the demo).
    """

    def __init__(
        self,
        fps: float = DEFAULT_FPS,
        size: tuple[int, int] = (128, 128),
        peaks: str = "local-max",
        min_magnitude: float | None = None,
        k: float = 3.0,
        window_s: float = 1.0,
        min_gap_s: float = 0.12,
    ) -> None:
        if peaks not in ("local-max", "adaptive"):
            raise ValueError(f"peaks must be 'local-max' or 'adaptive', got {peaks!r}")
        self.fps, self.peaks = float(fps), peaks
        default = 0.1 if peaks == "local-max" else 0.5  # px/frame
        self.min_magnitude = float(min_magnitude if min_magnitude is not None else default)
        self.k, self.window_s, self.min_gap_s = float(k), float(window_s), float(min_gap_s)
        params: dict[str, Any] = {"flow": "cv2.calcOpticalFlowFarneback(0.5, 3, 15, 3, 5, 1.2, 0), luma",
                                  "peaks": peaks, "min_magnitude_px": self.min_magnitude}
        if peaks == "adaptive":
            params.update(k_mad=self.k, window_s=self.window_s, min_gap_s=self.min_gap_s)
        self.info = ExtractorInfo(name=f"farneback-flow-peaks-{peaks}", version=1, fps=self.fps,
                                  size=(int(size[0]), int(size[1])), params=params)

    def peaks_from_curve(self, curve: np.ndarray) -> np.ndarray:
        """Peak times (s) of a flow-magnitude curve [T] sampled at info.fps."""
        m = np.asarray(curve, dtype=np.float64).ravel()
        if m.size < 3:
            return np.zeros(0)
        if self.peaks == "adaptive":
            idx = pick_events(m, self.fps, self.min_magnitude, self.k, self.window_s, self.min_gap_s, start=1)
        else:
            mid = m[1:-1]
            idx = np.flatnonzero((mid > m[:-2]) & (mid > m[2:]) & (mid >= self.min_magnitude)) + 1
        return idx / self.fps

    def __call__(self, frames: np.ndarray, fps: float) -> np.ndarray:
        _check_fps(fps, self.fps)
        return self.peaks_from_curve(flow_magnitude_curve(frames))
