"""Frechet distance between Gaussians fitted to embeddings, FAD-inf, and a bootstrap CI over clips (numpy/scipy).

Definition (Frechet 1957; Dowson & Landau 1982; FAD: Kilgour et al. 2019, "Frechet Audio Distance"):

    d^2 = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrt(S1 S2))

Conventions, shared with frechet_audio_distance (``calculate_embd_statistics``) and microsoft/fadtk
(``calc_embd_statistics``): embeddings are rows ``[n_frames, d]``; the mean is over frames and the covariance is the
sample covariance with ddof=1 (``np.cov(emb, rowvar=False)``); all arithmetic is float64. The value is the squared
distance d^2 (what every FAD toolkit reports as "FAD"), in squared embedding units.

Stability. The reference implementations take ``scipy.linalg.sqrtm(S1 @ S2)``: a non-symmetric matrix whose square
root is computed through a complex Schur form, which on rank-deficient covariances (fewer frames than dimensions)
returns complex noise and can yield negative "distances". Here ``Tr(sqrt(S1 S2))`` is the sum of square roots of the
eigenvalues of ``L^T S2 L`` where ``L L^T = S1`` (Cholesky factor, or ``V diag(sqrt(max(w, 0)))`` from a symmetric
eigendecomposition when S1 is singular): ``L^T S2 L`` is similar to ``S1 S2`` and symmetric positive semi-definite,
so its eigenvalues are real and ``>= 0`` up to round-off; tiny negative ones are clipped to 0. When a Gaussian is
fitted to n frames with n < d, the same eigenvalues come from the n x n Gram matrix of the whitened frames, which is
cheaper and exact. The result is clamped at 0: it can only dip below by round-off (a true squared distance is >= 0).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg

DEFAULT_MIN_N = 500  # fadtk FrechetAudioDistance.score_inf(min_n=500)
DEFAULT_STEPS = 25  # fadtk FrechetAudioDistance.score_inf(steps=25)
DEFAULT_RESAMPLES = 200
DEFAULT_CONFIDENCE = 0.95


def _as_frames(emb: np.ndarray, what: str = "embeddings") -> np.ndarray:
    x = np.asarray(emb, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{what} must be 2-D [frames, dims], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contain NaN or infinite values")
    return x


def gaussian_stats(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [d] and sample covariance [d, d] (ddof=1) of frame embeddings [n, d], float64.

    Equals ``np.mean(emb, 0), np.cov(emb, rowvar=False)`` as in frechet_audio_distance's
    ``calculate_embd_statistics``; computed as ``Xc^T Xc / (n - 1)`` on centred frames (a symmetric rank-k update,
    faster than ``np.cov``). Needs n >= 2 frames.
    """
    x = _as_frames(emb)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"a covariance needs at least 2 frames, got {n}")
    mu = x.mean(axis=0)
    xc = x - mu
    sigma = xc.T @ xc  # numpy dispatches a.T @ a to BLAS syrk
    sigma /= n - 1
    return mu, sigma


def _psd_factor(sigma: np.ndarray) -> np.ndarray:
    """A matrix L with L @ L.T == sigma: Cholesky when sigma is numerically positive definite, else the symmetric
    eigendecomposition V diag(sqrt(max(w, 0))) (eigenvalues below 0 are round-off on a PSD covariance)."""
    try:
        return np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(sigma)
        return v * np.sqrt(np.clip(w, 0.0, None))


def _sum_sqrt_eigvalsh(m: np.ndarray) -> float:
    """Sum of sqrt of the eigenvalues of a symmetric PSD matrix (its lower triangle is read), negatives (round-off)
    clipped to 0."""
    w = linalg.eigh(m, eigvals_only=True, driver="evr", check_finite=False)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def _check_pair(mu1, sigma1, mu2, sigma2):
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shape mismatch: mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, sigma2 {s2.shape}")
    if not all(np.all(np.isfinite(a)) for a in (mu1, s1, mu2, s2)):
        raise ValueError("Gaussian statistics contain NaN or infinite values")
    return mu1, s1, mu2, s2


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Frechet distance d^2 between N(mu1, sigma1) and N(mu2, sigma2), float, >= 0.

    ``d^2 = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrt(S1 S2))`` (Dowson & Landau 1982; the "FAD" of Kilgour et
    al. 2019). Matches frechet_audio_distance's ``calculate_frechet_distance`` (scipy ``sqrtm``) on well-conditioned
    covariances; stays finite and >= 0 on rank-deficient ones (see the module docstring for the eigenvalue form and
    the clamp at 0, which only absorbs round-off). Symmetric in its two Gaussians.
    """
    mu1, s1, mu2, s2 = _check_pair(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    try:  # Tr sqrt(S1 S2) = Tr sqrt(S2 S1): factor whichever covariance is positive definite
        factor, other = np.linalg.cholesky(s1), s2
    except np.linalg.LinAlgError:
        try:
            factor, other = np.linalg.cholesky(s2), s1
        except np.linalg.LinAlgError:
            factor, other = _psd_factor(s1), s2
    tr_sqrt = _sum_sqrt_eigvalsh(factor.T @ other @ factor)
    d2 = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)
    return max(d2, 0.0)


@dataclass(frozen=True)
class ReferenceGaussian:
    """A reference Gaussian prepared for many distances: its factor L (L L^T = sigma) and trace are computed once.

    ``distance(emb)`` equals ``frechet_distance(*gaussian_stats(emb), mu, sigma)``. In the reference's whitened
    coordinates Z = X L the cross term Tr sqrt(S_gen sigma) is the sum of the singular values of the centred Z
    divided by sqrt(n - 1), obtained from whichever Gram matrix (n x n or d x d) is smaller.
    """

    mu: np.ndarray
    sigma: np.ndarray
    factor: np.ndarray
    trace: float

    @classmethod
    def from_stats(cls, mu: np.ndarray, sigma: np.ndarray) -> "ReferenceGaussian":
        mu, sigma, _, _ = _check_pair(mu, sigma, mu, sigma)
        return cls(mu, sigma, _psd_factor(sigma), float(np.trace(sigma)))

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    def whiten(self, emb: np.ndarray) -> np.ndarray:
        """Frames [n, d] in the reference's coordinates, X @ L (float64)."""
        return _as_frames(emb) @ self.factor

    def distance_stats(self, mu: np.ndarray, sigma: np.ndarray) -> float:
        """d^2 between N(mu, sigma) and this reference, >= 0 (``frechet_distance`` with the factor reused)."""
        mu, sigma, _, _ = _check_pair(mu, sigma, self.mu, self.sigma)
        diff = mu - self.mu
        tr_sqrt = _sum_sqrt_eigvalsh(self.factor.T @ sigma @ self.factor)
        return max(float(diff @ diff + np.trace(sigma) + self.trace - 2.0 * tr_sqrt), 0.0)

    def distance(self, emb: np.ndarray) -> float:
        """d^2 between the Gaussian of frames `emb` [n, d] (ddof=1, n >= 2) and this reference, >= 0.

        n > d: through the d x d covariance (``distance_stats``); n <= d: through the n x n Gram matrix of the
        whitened frames (FramePool), which is cheaper and exact on the rank-deficient covariance.
        """
        x = _as_frames(emb)
        if x.shape[0] > x.shape[1]:
            if x.shape[1] != self.dim:
                raise ValueError(f"embeddings have {x.shape[1]} dims, the reference has {self.dim}")
            return self.distance_stats(*gaussian_stats(x))
        return FramePool(x, self).distance(np.ones(x.shape[0]))


class FramePool:
    """Frames [n, d] prepared once for many FADs of re-weighted copies of themselves against one reference
    (FAD-inf subsets, bootstrap resamples): centred frames X0, their squared norms and their whitened Z0 = X0 L.

    ``distance(weights)``: weights are repeat counts per frame (0 = left out, k = repeated k times); the Gaussian
    (ddof=1) is that of the N = sum(weights) repeated frames, so ``distance(np.bincount(idx, minlength=n))`` equals
    ``ref.distance(emb[idx])``. The cross term ``Tr sqrt(S L L^T)`` is the sum of the square roots of the
    eigenvalues of the Gram matrix of the weighted, centred Z rows (n_used x n_used or d x d, the smaller).
    """

    def __init__(self, emb: np.ndarray, ref: ReferenceGaussian) -> None:
        x = _as_frames(emb)
        if x.shape[1] != ref.dim:
            raise ValueError(f"embeddings have {x.shape[1]} dims, the reference has {ref.dim}")
        self.ref = ref
        self.center = x.mean(axis=0) if x.shape[0] else np.zeros(ref.dim)
        self.x0 = x - self.center
        self.sq = np.einsum("ij,ij->i", self.x0, self.x0)
        self.z0 = self.x0 @ ref.factor

    def distance(self, weights: np.ndarray) -> float:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (self.x0.shape[0],) or np.any(w < 0):
            raise ValueError("weights must be non-negative repeat counts, one per frame")
        total = float(w.sum())
        if total < 2:
            raise ValueError(f"a covariance needs at least 2 frames, got {total:g}")
        mu0 = (w @ self.x0) / total
        tr_g = max(float(w @ self.sq - total * (mu0 @ mu0)), 0.0) / (total - 1)
        keep = np.flatnonzero(w)
        zc = (self.z0[keep] - mu0 @ self.ref.factor) * np.sqrt(w[keep])[:, None]
        gram = zc @ zc.T if zc.shape[0] < zc.shape[1] else zc.T @ zc
        tr_sqrt = _sum_sqrt_eigvalsh(gram) / math.sqrt(total - 1)
        diff = self.center + mu0 - self.ref.mu
        return max(float(diff @ diff + tr_g + self.ref.trace - 2.0 * tr_sqrt), 0.0)


@dataclass(frozen=True)
class FadInf:
    """FAD-inf (microsoft/fadtk ``score_inf``): intercept of the least-squares line FAD(n) = value + slope / n."""

    value: float
    slope: float
    r2: float
    points: tuple[tuple[int, float], ...]  # (n frames, FAD of that subset)


def fad_inf(
    gen_emb: np.ndarray,
    ref_mu: np.ndarray,
    ref_sigma: np.ndarray,
    min_n: int = DEFAULT_MIN_N,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
) -> FadInf:
    """FAD extrapolated to infinitely many generated frames, as microsoft/fadtk ``FrechetAudioDistance.score_inf``.

    Subset sizes ``n = int(x) for x in np.linspace(min_n, n_frames, steps)`` (fadtk's defaults: min_n 500,
    25 steps); each subset draws n frames of `gen_emb` [n_frames, d] uniformly WITH replacement (as fadtk does), from
    ``np.random.default_rng(seed)``; its Gaussian (ddof=1) is compared with the reference Gaussian; the line
    ``FAD = a + b / n`` is fitted by least squares and FAD-inf = a, with the fit's r^2 (1 - SS_res / SS_tot).
    Deterministic per seed. Raises ValueError when n_frames <= min_n (no range of sizes to extrapolate over).
    """
    x = _as_frames(gen_emb, "generated embeddings")
    n_frames = x.shape[0]
    if min_n < 2 or steps < 2:
        raise ValueError(f"FAD-inf needs min_n >= 2 and steps >= 2, got min_n={min_n}, steps={steps}")
    if n_frames <= min_n:
        raise ValueError(f"FAD-inf needs more than min_n={min_n} generated frames to extrapolate, got {n_frames}")
    pool = FramePool(x, ReferenceGaussian.from_stats(ref_mu, ref_sigma))
    rng = np.random.default_rng(seed)
    ns = [int(v) for v in np.linspace(min_n, n_frames, steps)]
    points = []
    with few_blas_threads(x.shape[1]):
        for n in ns:
            idx = rng.integers(0, n_frames, size=n)
            points.append((n, pool.distance(np.bincount(idx, minlength=n_frames))))
    inv_n = 1.0 / np.array(ns, dtype=np.float64)
    ys = np.array([p[1] for p in points])
    slope, intercept = np.polyfit(inv_n, ys, 1)
    ss_tot = float(np.sum((ys - ys.mean()) ** 2))
    ss_res = float(np.sum((ys - (slope * inv_n + intercept)) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    return FadInf(float(intercept), float(slope), float(r2), tuple(points))


BOOTSTRAP_METHODS = ("percentile", "bias-shifted")


@dataclass(frozen=True)
class BootstrapFad:
    """A bootstrap interval of FAD with the bootstrap's own bias estimate (mean of resampled FADs - full FAD)."""

    lo: float
    hi: float
    bias: float
    resamples: int  # resamples used (those with >= 2 pooled frames)


SMALL_DIM = 256


def few_blas_threads(dim: int):
    """One BLAS thread for loops of small-matrix work (d <= SMALL_DIM): on few cores, OpenBLAS's thread start-up
    costs more than the work itself (a 128 x 128 eigh measured 5 ms with threads, 0.35 ms without)."""
    if dim > SMALL_DIM:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def bootstrap_fad_detail(
    per_clip_emb: list[np.ndarray],
    ref_mu: np.ndarray,
    ref_sigma: np.ndarray,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    method: str = "percentile",
) -> BootstrapFad:
    """bootstrap_fad with its bias estimate; see there. `method`: "percentile" (Efron & Tibshirani 1993, ch. 13)
    or "bias-shifted" (the percentile interval moved down by the bootstrap bias estimate, ch. 10, so it is centred
    on the full-sample FAD: it then shows the spread due to which clips were generated around the reported value).
    """
    if method not in BOOTSTRAP_METHODS:
        raise ValueError(f"method must be one of {BOOTSTRAP_METHODS}, got {method!r}")
    clips = [_as_frames(e, "clip embeddings") for e in per_clip_emb]
    clips = [c for c in clips if c.shape[0] > 0]
    if len(clips) < 2:
        return BootstrapFad(math.nan, math.nan, math.nan, 0)
    ref = ReferenceGaussian.from_stats(ref_mu, ref_sigma)
    if any(c.shape[1] != ref.dim for c in clips):
        raise ValueError(f"clip embeddings must have {ref.dim} dims like the reference")
    pool = FramePool(np.concatenate(clips, axis=0), ref)
    owner = np.repeat(np.arange(len(clips)), [c.shape[0] for c in clips])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(clips), size=(resamples, len(clips)))
    values = []
    with few_blas_threads(ref.dim):
        for row in draws:
            w = np.bincount(row, minlength=len(clips)).astype(np.float64)[owner]
            if w.sum() >= 2:
                values.append(pool.distance(w))
    if not values or owner.shape[0] < 2:
        return BootstrapFad(math.nan, math.nan, math.nan, len(values))
    boot = np.array(values)
    bias = float(boot.mean() - pool.distance(np.ones(owner.shape[0])))
    alpha = (1.0 - confidence) / 2.0
    lo, hi = (float(v) for v in np.quantile(boot, [alpha, 1.0 - alpha]))
    if method == "bias-shifted":  # a squared distance is never negative: the shifted bound stops at 0
        lo, hi = max(0.0, lo - bias), max(0.0, hi - bias)
    return BootstrapFad(lo, hi, bias, len(values))


def bootstrap_fad(
    per_clip_emb: list[np.ndarray],
    ref_mu: np.ndarray,
    ref_sigma: np.ndarray,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    method: str = "percentile",
) -> tuple[float, float]:
    """Bootstrap CI (lo, hi) of FAD over generated clips; percentile method (Efron & Tibshirani 1993, ch. 13).

    Each resample draws len(per_clip_emb) clips with replacement (``np.random.default_rng(seed)``), pools the frames
    of the drawn clips (a clip drawn k times contributes its frames k times), fits the Gaussian (ddof=1) and takes
    its FAD against the reference (ref_mu [d], ref_sigma [d, d]). Returns the (1-confidence)/2 and (1+confidence)/2
    quantiles of the resampled FADs; (nan, nan) with fewer than 2 clips. Clips without frames are ignored;
    resamples with fewer than 2 pooled frames are skipped. Deterministic per seed.

    Caveat: FAD is biased upwards by a term that shrinks with the number of DISTINCT frames, and a resample repeats
    frames, so resampled FADs sit above the full-sample FAD by about that bias. When the bias is not small against
    the spread (high dimension, few frames: e.g. d=512 with 2,000 frames) the percentile interval lies entirely above
    the point estimate. ``method="bias-shifted"`` centres it on the estimate; bootstrap_fad_detail returns the bias.
    """
    r = bootstrap_fad_detail(per_clip_emb, ref_mu, ref_sigma, seed, resamples, confidence, method)
    return r.lo, r.hi
