"""Pure event-matching scores over event times in seconds (numpy only).

Every function takes 1-D arrays of event times in seconds (any order; they are sorted, NaN/inf rejected) and
returns a float. When the set a score divides by is empty the score is 0.0 (as mir_eval and LORIS do); the
metrics in :mod:`metrics.alignment` decide separately whether such a clip can be scored at all.

Definitions followed (each function's docstring names its source):

- :func:`f_measure`: beat F-measure of Dixon (2007) as implemented by ``mir_eval.beat.f_measure`` (0.8.2):
  a one-to-one *maximum* matching of reference and estimated events whose distance is at most ``window``
  (default +-70 ms), precision = matches / #estimated, recall = matches / #reference, F = 2PR / (P + R).
  Unlike ``mir_eval.beat.evaluate`` we do NOT drop events before 5 s (``mir_eval.beat.trim_beats``): clips
  here are 6-30 s long and their first seconds matter. The window is inclusive and widened by
  :data:`EPS_S` (1 ns) so that frame-quantised times exactly one window apart (e.g. 3.07 - 3.00, which is
  0.07000000000000028 in binary floating point) count as inside.
- :func:`beat_hit_score` / :func:`beat_coverage_score`: BHS and BCS of D2M-GAN (Zhu et al., ECCV 2022) in the
  form of LORIS ``beats_scores.py`` (Yu et al., ICML 2023): time is cut into bins of ``bin_s`` seconds
  (default 1 s; bin k = [k * bin_s, (k + 1) * bin_s), ceil(duration / bin_s) bins), a bin is "on" when an
  event falls in it; BHS = #bins on in both / #bins on in the reference, BCS = #bins on in both / #bins on
  in the generated sequence. (D2M-GAN's own BCS was #generated bins / #reference bins, which can exceed 1;
  we follow LORIS.)
- :func:`beat_align_score`: Beat Align Score of Bailando (Li et al., CVPR 2022):
  mean over anchor events a of exp(-min_m (a - m)^2 / (2 sigma^2)). Bailando uses sigma = 3 frames at 60 fps
  (0.05 s); our unit is seconds and the default :data:`DEFAULT_SIGMA_S` = 0.12 s is 3 frames at 25 fps.
- :func:`av_align`: AV-Align of Yariv et al. (AAAI 2024, TempoTokens ``av_align.py``): intersection over
  union of audio peaks A and video peaks V, IoU = M / (|A| + |V| - M), where M is the number of one-to-one
  matched pairs whose distance is at most ``frames`` / ``fps`` seconds (default one video frame). We match
  maximally (the reference code matches greedily in audio order with a strict ``<``; the two agree except for
  peaks exactly one frame apart and rare chains of ambiguous pairs).
"""
from __future__ import annotations

import math

import numpy as np

DEFAULT_WINDOW_S = 0.070  # s, +-70 ms: the MIREX / mir_eval beat F-measure window
DEFAULT_BIN_S = 1.0  # s, LORIS / D2M-GAN bin width for BHS and BCS
DEFAULT_SIGMA_S = 0.12  # s, = 3 frames at 25 fps (Bailando: 3 frames at 60 fps = 0.05 s)
EPS_S = 1e-9  # s, floating-point slack added to every inclusive distance window


def as_events(times: np.ndarray | list[float] | tuple[float, ...]) -> np.ndarray:
    """Event times (s) as a sorted 1-D float64 array; raises ValueError on NaN/inf or a >1-D input."""
    a = np.asarray(times, dtype=np.float64)
    if a.ndim == 0:
        a = a[None]
    if a.ndim != 1:
        raise ValueError(f"event times must be 1-D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("event times must be finite")
    return np.sort(a)


def _candidates(ref: np.ndarray, est: np.ndarray, window: float) -> list[np.ndarray]:
    """For each estimated event (sorted), the indices of reference events (sorted) within +-window."""
    lo = np.searchsorted(ref, est - window - EPS_S, side="left")
    hi = np.searchsorted(ref, est + window + EPS_S, side="right")
    return [np.arange(a, b) for a, b in zip(lo, hi)]


def _maximum_matching(adj: list[np.ndarray], n_right: int) -> dict[int, int]:
    """Maximum-cardinality bipartite matching by augmenting paths (Kuhn's algorithm, iterative DFS).

    `adj[u]` lists the right vertices adjacent to left vertex u. Returns {left: right}.
    """
    match_right = np.full(n_right, -1, dtype=np.int64)
    match_left: dict[int, int] = {}
    for root in range(len(adj)):
        if adj[root].size == 0:
            continue
        seen = np.zeros(n_right, dtype=bool)
        # stack of (left vertex, position in its adjacency list); parent[v] = left vertex that reached right v
        stack = [(root, 0)]
        parent: dict[int, int] = {}
        found = -1
        while stack and found < 0:
            u, i = stack[-1]
            if i >= adj[u].size:
                stack.pop()
                continue
            stack[-1] = (u, i + 1)
            v = int(adj[u][i])
            if seen[v]:
                continue
            seen[v] = True
            parent[v] = u
            if match_right[v] < 0:
                found = v
            else:
                stack.append((int(match_right[v]), 0))
        if found < 0:
            continue
        v = found  # flip the augmenting path back to the root
        while True:
            u = parent[v]
            prev = match_left.get(u, -1)
            match_left[u] = v
            match_right[v] = u
            if u == root:
                break
            v = prev
    return match_left


def match_events(
    reference: np.ndarray, estimated: np.ndarray, window: float = DEFAULT_WINDOW_S
) -> list[tuple[int, int]]:
    """Largest one-to-one set of pairs (i, j) with |reference[i] - estimated[j]| <= window (+ EPS_S).

    Times in seconds, `window` in seconds. Indices refer to the *sorted* inputs. Same contract as
    ``mir_eval.util.match_events`` (maximum bipartite matching, not greedy); returns pairs sorted by i.
    """
    ref, est = as_events(reference), as_events(estimated)
    if window < 0:
        raise ValueError(f"window must be >= 0 s, got {window}")
    if ref.size == 0 or est.size == 0:
        return []
    matched = _maximum_matching(_candidates(ref, est, window), ref.size)
    return sorted((int(i), int(j)) for j, i in matched.items())


def precision_recall_f(
    reference: np.ndarray, estimated: np.ndarray, window: float = DEFAULT_WINDOW_S
) -> tuple[float, float, float]:
    """(precision, recall, F-measure) of estimated vs reference events within +-window seconds.

    Precision = matches / #estimated, recall = matches / #reference, F = 2PR / (P + R); all 0.0 when either
    set is empty (mir_eval's convention). No 5 s trim (see the module docstring).
    """
    ref, est = as_events(reference), as_events(estimated)
    if ref.size == 0 or est.size == 0:
        return 0.0, 0.0, 0.0
    m = len(match_events(ref, est, window))
    p, r = m / est.size, m / ref.size
    return p, r, (0.0 if m == 0 else 2.0 * p * r / (p + r))


def f_measure(reference: np.ndarray, estimated: np.ndarray, window: float = DEFAULT_WINDOW_S) -> float:
    """Beat F-measure (Dixon 2007; ``mir_eval.beat.f_measure``) within +-window s, without the 5 s trim."""
    return precision_recall_f(reference, estimated, window)[2]


def event_bins(times: np.ndarray, duration_s: float, bin_s: float = DEFAULT_BIN_S) -> np.ndarray:
    """Boolean occupancy of ceil(duration_s / bin_s) bins of `bin_s` seconds: bin k = [k*bin_s, (k+1)*bin_s).

    Events outside [0, n_bins * bin_s) are ignored (LORIS marks bin trunc(t) of a clip of ceil(duration) s).
    """
    if bin_s <= 0:
        raise ValueError(f"bin_s must be > 0 s, got {bin_s}")
    n = max(int(math.ceil(duration_s / bin_s - 1e-9)), 0)
    t = as_events(times)
    k = np.floor(t / bin_s + 1e-9).astype(np.int64)  # slack: 3.0 / 1.0 stays in bin 3 despite rounding
    k = k[(t >= 0) & (k >= 0) & (k < n)]
    on = np.zeros(n, dtype=bool)
    on[k] = True
    return on


def _bin_counts(reference: np.ndarray, generated: np.ndarray, duration_s: float, bin_s: float):
    r = event_bins(reference, duration_s, bin_s)
    g = event_bins(generated, duration_s, bin_s)
    return int(np.sum(r & g)), int(r.sum()), int(g.sum())


def beat_hit_score(
    reference: np.ndarray, generated: np.ndarray, duration_s: float, bin_s: float = DEFAULT_BIN_S
) -> float:
    """BHS (D2M-GAN; LORIS ``beats_scores.py``): #bins holding both a reference and a generated event /
    #bins holding a reference event, with bins of `bin_s` seconds (default 1 s) over [0, duration_s).
    0.0 when no reference bin is on. Here "reference" is the visual events and "generated" the music beats."""
    hit, n_ref, _ = _bin_counts(reference, generated, duration_s, bin_s)
    return hit / n_ref if n_ref else 0.0


def beat_coverage_score(
    reference: np.ndarray, generated: np.ndarray, duration_s: float, bin_s: float = DEFAULT_BIN_S
) -> float:
    """BCS as in LORIS ``beats_scores.py``: #bins holding both events / #bins holding a generated event, bins
    of `bin_s` seconds (default 1 s) over [0, duration_s). 0.0 when no generated bin is on."""
    hit, _, n_gen = _bin_counts(reference, generated, duration_s, bin_s)
    return hit / n_gen if n_gen else 0.0


def beat_align_score(anchors: np.ndarray, targets: np.ndarray, sigma_s: float = DEFAULT_SIGMA_S) -> float:
    """Beat Align Score (Bailando, Li et al. 2022): mean over `anchors` a of exp(-d(a)^2 / (2 sigma_s^2)),
    d(a) = distance (s) from a to the nearest of `targets`. `sigma_s` in seconds (default 0.12 s = 3 frames at
    25 fps). 0.0 when either set is empty.

    The paper averages over the kinematic (visual) beats, as the alignment metrics here do (anchors = visual
    events, targets = music beats); Bailando's released code loops over the music beats instead.
    """
    if sigma_s <= 0:
        raise ValueError(f"sigma_s must be > 0 s, got {sigma_s}")
    a, t = as_events(anchors), as_events(targets)
    if a.size == 0 or t.size == 0:
        return 0.0
    k = np.clip(np.searchsorted(t, a), 1, max(t.size - 1, 1))
    d = np.minimum(np.abs(a - t[k - 1]), np.abs(a - t[np.minimum(k, t.size - 1)]))
    return float(np.mean(np.exp(-(d**2) / (2.0 * sigma_s**2))))


def av_align(audio_peaks: np.ndarray, video_peaks: np.ndarray, fps: float, frames: float = 1.0) -> float:
    """AV-Align (Yariv et al. 2024): IoU = M / (|A| + |V| - M) of audio peaks A and video peaks V (s), M =
    one-to-one maximum matching of pairs at most `frames` / `fps` seconds apart (default +-1 frame,
    inclusive). 0.0 when both sets are empty."""
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    a, v = as_events(audio_peaks), as_events(video_peaks)
    m = len(match_events(a, v, frames / fps))
    union = a.size + v.size - m
    return m / union if union else 0.0


def circular_shift(times: np.ndarray, offset_s: float, duration_s: float) -> np.ndarray:
    """Events moved by `offset_s` seconds on a circle of `duration_s` seconds: (t + offset) mod duration,
    sorted.

    Times are first wrapped into [0, duration_s); the null used by the alignment metrics ("vs-shift").
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s must be > 0 s, got {duration_s}")
    t = np.mod(as_events(times) + offset_s, duration_s)
    t[t >= duration_s] = 0.0  # np.mod can return duration_s itself for tiny negative inputs
    return np.sort(t)


def random_shift(rng: np.random.Generator, duration_s: float, margin_s: float = 0.25) -> float:
    """An offset (s) for :func:`circular_shift`, uniform in [margin_s, duration_s - margin_s] (away from 0 and
    from a full turn); uniform in [0, duration_s) when the clip is shorter than 2 * margin_s."""
    if duration_s > 2 * margin_s:
        return float(rng.uniform(margin_s, duration_s - margin_s))
    return float(rng.uniform(0.0, duration_s))
