"""Inception Score of the generated clips on an audio classifier's logits, as audioldm_eval computes it.

Definition (Salimans et al. 2016, "Improved Techniques for Training GANs": IS = exp(E_x KL(p(y|x) || p(y))));
reference implementation haoheliu/audioldm_eval ``audioldm_eval/metrics/isc.py`` (``calculate_isc``), called by
its ``eval.py`` with ``feat_layer_name="logits"``, ``splits=10``, ``samples_shuffle=True``, ``rng_seed=2020`` on the
PANN Cnn14 ``logits`` output: ``fc_audioset`` BEFORE the sigmoid (its ``clipwise_output`` is not used), one row per
whole file. hkchengrex/av-benchmark ``av_bench/metrics/isc.py`` is the same code. With x_1..x_N those rows:

    rows permuted by ``np.random.RandomState(2020).permutation(N)``;
    p_i = softmax(x_i) (float64: a softmax over the 527 AudioSet logits, not the tagger's sigmoid);
    split s = 0..S-1 holds rows [s N // S, (s + 1) N // S); q_s = mean of its p_i (the split's marginal p(y));
    IS_s = exp(mean over the split of sum_c p_i[c] (log p_i[c] - log q_s[c]));
    value = mean of IS_s; audioldm_eval's "inception_score_std" = population std (ddof 0) of IS_s.

Unitless, from 1 (every clip gets the same label distribution) to the number of classes; higher is better
(confident per clip, diverse over the set). It depends on the number of clips per split. Rows are taken in sorted
clip-id order before the permutation (audioldm_eval: sorted file names), so the same clips give the same value.
No reference set: the metric declares only an "audio" input, so the set stage computes no reference statistics
and passes ``ref_stats=None``.

Audio handling is the classifier's (metrics.backbones.pann: mean of the channels, resampy to 32 kHz, the
``Cnn14_mAP=0.431.pth`` model that audioldm_eval loads at ``sampling_rate=32000``); audioldm_eval's own loader takes
the first channel, removes its mean, resamples with torchaudio and zero-pads clips shorter than 32000 samples.
av-benchmark runs the same formula on the 16 kHz Cnn14.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from metrics.base import MetricError, MetricInfo, SetScore
from metrics.density_coverage import bootstrap_set_statistic
from metrics.frechet import BOOTSTRAP_METHODS, DEFAULT_CONFIDENCE

DEFAULT_SPLITS = 10  # audioldm_eval eval.py
SHUFFLE_SEED = 2020  # audioldm_eval eval.py rng_seed


@dataclass(frozen=True)
class InceptionScoreValue:
    mean: float
    std: float  # population std (ddof 0) over splits, as audioldm_eval
    per_split: tuple[float, ...]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, float64 (max-subtracted)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def inception_score(logits: np.ndarray, splits: int = DEFAULT_SPLITS,
                    shuffle_seed: int | None = SHUFFLE_SEED) -> InceptionScoreValue:
    """audioldm_eval's ``calculate_isc`` on logits [N, C] (module docstring); ``shuffle_seed=None``: no shuffle.

    ValueError when N < splits (a split would be empty: audioldm_eval returns NaN there).
    """
    x = np.asarray(logits, np.float64)
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"logits must be [clips, classes], got shape {x.shape}")
    n = x.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"the Inception Score with {splits} splits needs at least {splits} clips, got {n}")
    if shuffle_seed is not None:
        x = x[np.random.RandomState(shuffle_seed).permutation(n)]
    log_p = log_softmax(x)
    p = np.exp(log_p)
    scores = []
    for s in range(splits):
        chunk = slice(s * n // splits, (s + 1) * n // splits)
        q = p[chunk].mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):  # a class no clip of the split gives mass: 0 log 0 = 0
            terms = np.where(p[chunk] > 0, p[chunk] * (log_p[chunk] - np.log(q)), 0.0)
        scores.append(math.exp(float(terms.sum(axis=1).mean())))
    return InceptionScoreValue(float(np.mean(scores)), float(np.std(scores)), tuple(scores))


class InceptionScore:
    """Inception Score of a run's generated clips on `classifier` logits (one row per clip), no reference.

    ``classifier``: an audio extractor giving ONE logits row per clip ([1, C]: e.g. PannClassifier with
    ``window_s=None``, the whole clip, as audioldm_eval feeds whole files); a classifier stating a ``window_s``
    in its params is refused.

    - value: IS, mean over ``splits`` splits (module docstring); unitless, higher is better.
    - lo, hi: 95% bootstrap interval over generated clips (``resamples``, seeded by score_set's `seed`): each
      resample is scored like the run (same shuffle, same splits); ``ci_method`` "bias-shifted" (default: repeated
      clips lower the resampled IS) or "percentile"; bounded below by 1.
    - n: generated clips; n_reference: 0.
    - extra: ``std-over-splits`` (audioldm_eval's inception_score_std), ``splits``, ``bootstrap-bias``.
    MetricError with fewer clips than splits or logits that are not one finite row per clip.
    """

    def __init__(self, classifier: Any, name: str, splits: int = DEFAULT_SPLITS, shuffle_seed: int = SHUFFLE_SEED,
                 resamples: int = 200, ci_method: str = "bias-shifted") -> None:
        if ci_method not in BOOTSTRAP_METHODS:
            raise ValueError(f"ci_method must be one of {BOOTSTRAP_METHODS}, got {ci_method!r}")
        if (getattr(classifier.info, "params", None) or {}).get("window_s") is not None:
            raise ValueError(f"classifier {classifier.info.name} windows its input; the Inception Score takes one "
                             "logits row per clip (window_s=None)")
        self.classifier, self.splits, self.shuffle_seed = classifier, int(splits), int(shuffle_seed)
        self.resamples, self.ci_method = int(resamples), ci_method
        self.inputs = {"audio": classifier}
        self.info = MetricInfo(
            name=name,
            version=1,
            units="",
            higher_is_better=True,
            description=(
                f"Inception Score (Salimans et al. 2016) on {classifier.info.name} logits, softmax, "
                f"{self.splits} splits, as audioldm_eval isc.py; CI: bootstrap over generated clips"
            ),
            params={
                "activation": "softmax over the logits (pre-sigmoid classifier output)",
                "per": "one logits row per clip (whole clip)",
                "splits": self.splits,
                "shuffle": f"np.random.RandomState({self.shuffle_seed}).permutation of clips in sorted id order",
                "value": "mean over splits of exp(mean KL(p(y|x) || p(y) of the split))",
                "resamples": self.resamples,
                "confidence": DEFAULT_CONFIDENCE,
                "bootstrap": f"{ci_method}, over generated clips",
            },
            backbone=classifier.info.backbone,
            kind="set",
            standard=bool(getattr(classifier, "standard", True)),
            reference_impl="haoheliu/audioldm_eval isc.py (Inception Score on PANN logits)",
            null_value="1 = every clip gets the same class distribution; at most the number of classes",
            caveats=("uses no reference: rewards confident, varied AudioSet classes, not fidelity to the video",
                     "depends on the number of clips and splits"),
        )

    def reference_statistics(self, ref_feats: list[np.ndarray]) -> np.ndarray:
        """Not used: the metric has no "reference" input, so the set stage never asks for reference statistics."""
        raise MetricError("the Inception Score uses no reference set")

    def score_set(self, gen_feats: dict[str, dict[str, np.ndarray]], ref_stats: np.ndarray | None,
                  seed: int) -> SetScore:
        """IS of the generated clips (``gen_feats[clip_id]["audio"]``: logits [1, C]); `ref_stats` is ignored."""
        rows = []
        for cid in sorted(gen_feats):
            x = np.asarray(gen_feats[cid]["audio"], np.float64)
            if x.ndim != 2 or x.shape[0] != 1:
                raise MetricError(f"clip {cid}: expected one logits row [1, classes], got shape {x.shape}")
            if not np.all(np.isfinite(x)):
                raise MetricError(f"clip {cid}: logits contain NaN or infinite values")
            rows.append(x[0])
        if len({r.shape[0] for r in rows}) > 1:
            raise MetricError("clips have differing class counts")
        if len(rows) < self.splits:
            raise MetricError(f"the Inception Score with {self.splits} splits needs at least {self.splits} "
                              f"generated clips, got {len(rows)}")
        logits = np.stack(rows)
        full = inception_score(logits, self.splits, self.shuffle_seed)

        def stat(idx: np.ndarray) -> float:
            return inception_score(logits[idx], self.splits, self.shuffle_seed).mean

        lo, hi, bias = bootstrap_set_statistic(stat, len(rows), full.mean, seed, self.resamples,
                                               method=self.ci_method, bounds=(1.0, math.inf))
        return SetScore(value=full.mean, lo=lo, hi=hi, n=len(rows), n_reference=0,
                        extra={"std-over-splits": full.std, "splits": float(self.splits), "bootstrap-bias": bias})
