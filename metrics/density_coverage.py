"""Density and Coverage (Naeem et al. 2020) of the generated clips against the reference set, one embedding per clip.

Definition (Naeem, Oh, Uh, Choi, Yoo 2020, "Reliable Fidelity and Diversity Metrics for Generative Models", ICML;
reference implementation: package ``prdc`` 0.2, ``prdc/prdc.py`` ``compute_prdc``). With reference ("real")
embeddings X_1..X_N, generated ("fake") embeddings Y_1..Y_M, k nearest neighbours and r_i the Euclidean distance from
X_i to its k-th nearest OTHER reference embedding (the ball B_i = {y : |y - X_i| < r_i}, strict as in prdc):

    density  = 1 / (k M) * sum_j #{i : Y_j in B_i}          0 .. N / k; about 1 when the generated clips sit in the
                                                            reference manifold as densely as the reference itself
    coverage = 1 / N * #{i : some Y_j in B_i}                0 .. 1; the share of reference neighbourhoods reached

Both are unitless and higher is better (density measures fidelity, coverage diversity). k = 5 as Naeem et al.
recommend and as the video-to-music papers that report them use (VidMuse, Diff-V2M). The distances and the radii come
from prdc's own functions (``compute_pairwise_distance``: scikit-learn's Euclidean ``pairwise_distances``;
``compute_nearest_neighbour_distances``), so values equal ``compute_prdc``'s bit for bit; prdc computes the radii
with ``argpartition`` at ``k + 1`` and so needs at least k + 2 reference clips.

One embedding per clip: each clip's extractor rows (CLAP windows, VGGish frames) are pooled by the metric's
``pool`` (named in its params), since the papers embed each clip once.

CI: the bootstrap over generated clips that FAD uses (metrics.fad): resample the M clips with replacement,
recompute the statistic against the same reference neighbourhoods. A resample repeats clips, which lowers coverage
(fewer distinct clips reach fewer neighbourhoods), so the default interval is the bias-shifted one, as for FAD.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from metrics.base import MetricError, MetricInfo, SetScore
from metrics.frechet import BOOTSTRAP_METHODS, DEFAULT_CONFIDENCE

STATISTICS = ("density", "coverage")
DEFAULT_K = 5
STATS_FORMAT = 1.0
_HEADER = 4  # [format, k, n, d]


def mean_rows(rows: np.ndarray) -> np.ndarray:
    """[rows, d] -> [d]: the plain mean of a clip's frame embeddings (float64)."""
    return np.asarray(rows, np.float64).mean(axis=0)


def bootstrap_set_statistic(statistic: Callable[[np.ndarray], float], n: int, value: float, seed: int,
                            resamples: int, confidence: float = DEFAULT_CONFIDENCE, method: str = "bias-shifted",
                            bounds: tuple[float, float] = (0.0, math.inf)) -> tuple[float, float, float]:
    """(lo, hi, bias) of a set statistic under the bootstrap over its n clips (Efron & Tibshirani 1993).

    ``statistic(idx)`` evaluates the statistic on clips ``idx`` (indices with repeats); each of `resamples` rows of
    ``np.random.default_rng(seed).integers(0, n, (resamples, n))`` is one resample, as in
    metrics.frechet.bootstrap_fad_detail. bias = mean of the resampled values - `value`; "percentile" gives the
    (1 - confidence) / 2 quantiles, "bias-shifted" moves them down by the bias (centred on `value`); both are clipped
    to the statistic's `bounds`. NaNs when n < 2.
    """
    if method not in BOOTSTRAP_METHODS:
        raise ValueError(f"method must be one of {BOOTSTRAP_METHODS}, got {method!r}")
    if n < 2:
        return math.nan, math.nan, math.nan
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    boot = np.array([statistic(row) for row in draws], dtype=np.float64)
    bias = float(boot.mean() - value)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = (float(v) for v in np.quantile(boot, [alpha, 1.0 - alpha]))
    if method == "bias-shifted":
        lo, hi = lo - bias, hi - bias
    return float(np.clip(lo, *bounds)), float(np.clip(hi, *bounds)), bias


def pack_reference(embeddings: np.ndarray, radii: np.ndarray, k: int) -> np.ndarray:
    """One flat float64 array ``[format=1, k, n, d, radii (n values), embeddings (n*d values, row-major)]``."""
    x = np.asarray(embeddings, np.float64)
    return np.concatenate([[STATS_FORMAT, k, x.shape[0], x.shape[1]], np.asarray(radii, np.float64), x.ravel()])


def unpack_reference(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(embeddings [n, d], radii [n], k) from pack_reference's layout; ValueError on another layout."""
    a = np.asarray(packed, np.float64).ravel()
    if a.size < _HEADER or a[0] != STATS_FORMAT:
        raise ValueError("not a packed density/coverage reference array (format 1)")
    k, n, d = (int(v) for v in a[1:_HEADER])
    if a.size != _HEADER + n + n * d:
        raise ValueError(f"packed reference of {n} x {d} must hold {_HEADER + n + n * d} values, got {a.size}")
    return a[_HEADER + n:].reshape(n, d).copy(), a[_HEADER:_HEADER + n].copy(), k


class DensityCoverage:
    """Density or coverage (``statistic``) of a run's generated clips against the reference set, on one
    embedding per clip: ``pool`` of the rows `extractor` gives for the clip (``pooling`` names it in the identity).

    - value: the statistic as prdc computes it (module docstring); unitless, higher is better.
    - lo, hi: 95% bootstrap interval over generated clips (``resamples``, seeded by score_set's `seed`),
      ``ci_method`` "bias-shifted" (default) or "percentile"; bounded below by 0 (coverage above by 1).
    - n: generated clips used; n_reference: reference clips.
    - per_clip (density only): each generated clip's own density, the number of reference neighbourhoods it lies
      in divided by k (0 = off the reference manifold); the value is their mean.
    - extra: ``bootstrap-bias`` (mean resampled value - value).
    MetricError with fewer than k + 2 reference clips, or embeddings of differing or non-finite values.
    """

    def __init__(self, extractor: Any, statistic: str, name: str, pooling: str = "mean of the clip's frame embeddings",
                 pool: Callable[[np.ndarray], np.ndarray] = mean_rows, k: int = DEFAULT_K, resamples: int = 200,
                 ci_method: str = "bias-shifted") -> None:
        if statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
        if ci_method not in BOOTSTRAP_METHODS:
            raise ValueError(f"ci_method must be one of {BOOTSTRAP_METHODS}, got {ci_method!r}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.extractor, self.statistic, self.k = extractor, statistic, int(k)
        self.pool, self.resamples, self.ci_method = pool, int(resamples), ci_method
        self.inputs = {"audio": extractor, "reference": extractor}
        ext = extractor.info
        self.info = MetricInfo(
            name=name,
            version=1,
            units="",
            higher_is_better=True,
            description=(
                f"{statistic.capitalize()} (Naeem et al. 2020, prdc) of the generated clips against the reference "
                f"set, k={self.k}, Euclidean, on one {ext.name} embedding per clip ({pooling}); CI: bootstrap over "
                "generated clips"
            ),
            needs_reference=True,
            params={
                "statistic": statistic,
                "k": self.k,
                "distance": "euclidean (prdc compute_pairwise_distance)",
                "radius": "distance to the k-th nearest other reference embedding (strict <)",
                "embedding": f"one per clip: {pooling}",
                "implementation": "prdc 0.2 compute_prdc",
                "resamples": self.resamples,
                "confidence": DEFAULT_CONFIDENCE,
                "bootstrap": f"{ci_method}, over generated clips",
            },
            backbone=ext.backbone,
            kind="set",
            standard=bool(getattr(extractor, "standard", True)),
            reference_impl="clovaai/generative-evaluation-prdc (prdc 0.2 compute_prdc), Naeem et al. 2020",
            null_value="about 1 for generated clips drawn from the reference distribution",
            caveats=("depends on k and on the number of reference clips: compare only on the same reference set",
                     "density is unbounded above (clustered samples inside reference balls exceed 1)"),
        )

    def embed(self, rows: Any, what: str) -> np.ndarray | None:
        """The clip's pooled embedding [d] (float64), None for a clip without rows."""
        x = np.asarray(rows, np.float64)
        if x.ndim != 2:
            raise MetricError(f"{what}: expected embeddings [rows, dims], got shape {x.shape}")
        if x.shape[0] == 0:
            return None
        e = np.asarray(self.pool(x), np.float64)
        if e.shape != (x.shape[1],) or not np.all(np.isfinite(e)):
            raise MetricError(f"{what}: pooled embedding of shape {e.shape} or with non-finite values")
        return e

    def _stack(self, rows: list[tuple[str, Any]], what: str) -> tuple[list[str], np.ndarray]:
        """Pooled embeddings [clips, d] in the given order, clips without rows left out, and their labels."""
        pooled = [(label, self.embed(r, f"{what} {label}")) for label, r in rows]
        pooled = [(label, e) for label, e in pooled if e is not None]
        if len({e.shape[0] for _, e in pooled}) > 1:
            raise MetricError(f"{what} embeddings have differing dimensions")
        return [label for label, _ in pooled], np.stack([e for _, e in pooled]) if pooled else np.zeros((0, 0))

    def reference_statistics(self, ref_feats: list[np.ndarray]) -> np.ndarray:
        """The pooled reference embeddings and their k-NN radii (prdc), packed by pack_reference."""
        from prdc.prdc import compute_nearest_neighbour_distances

        _, x = self._stack([(f"clip {i}", f) for i, f in enumerate(ref_feats)], "reference")
        if x.shape[0] < self.k + 2:
            raise MetricError(f"{self.statistic} with k={self.k} needs at least {self.k + 2} reference clips "
                              f"(prdc), got {x.shape[0]}")
        return pack_reference(x, compute_nearest_neighbour_distances(x, self.k), self.k)

    def score_set(self, gen_feats: dict[str, dict[str, np.ndarray]], ref_stats: np.ndarray, seed: int) -> SetScore:
        """The statistic of the generated clips (``gen_feats[clip_id]["audio"]``) against `ref_stats`; clips in
        sorted clip-id order (the bootstrap draws do not depend on the dict's order)."""
        from prdc.prdc import compute_pairwise_distance

        real, radii, k = unpack_reference(ref_stats)
        if k != self.k:
            raise MetricError(f"reference statistics were computed with k={k}, the metric uses k={self.k}")
        ids, fake = self._stack([(cid, gen_feats[cid]["audio"]) for cid in sorted(gen_feats)], "generated")
        if not ids:
            raise MetricError("no generated clip has an embedding")
        if fake.shape[1] != real.shape[1]:
            raise MetricError(f"generated embeddings have {fake.shape[1]} dims, the reference has {real.shape[1]}")
        inside = compute_pairwise_distance(real, fake) < radii[:, None]  # [N, M]: Y_j in B_i
        if self.statistic == "density":
            counts = inside.sum(axis=0)

            def stat(idx: np.ndarray) -> float:
                return float((1.0 / float(k)) * counts[idx].mean())

            bounds, per_clip = (0.0, math.inf), {cid: float(c) / k for cid, c in zip(ids, counts)}
        else:
            def stat(idx: np.ndarray) -> float:
                return float(inside[:, np.unique(idx)].any(axis=1).mean())

            bounds, per_clip = (0.0, 1.0), {}
        every = np.arange(len(ids))
        value = stat(every)
        lo, hi, bias = bootstrap_set_statistic(stat, len(ids), value, seed, self.resamples,
                                               method=self.ci_method, bounds=bounds)
        return SetScore(value=value, lo=lo, hi=hi, n=len(ids), n_reference=int(real.shape[0]), per_clip=per_clip,
                        extra={"bootstrap-bias": bias})
