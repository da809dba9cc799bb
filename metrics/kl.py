"""KL divergence between an audio classifier's label distributions on generated and reference music (per clip).

Definition (MusicGen / audiocraft ``audiocraft/metrics/kld.py``, AudioLDM's audioldm_eval): the classifier's logits
over its C classes (AudioSet: 527) are turned into probabilities with a softmax (not the sigmoid the taggers were
trained with), and

    "ref-gen":  KL(ref || gen) = sum_c p_ref[c] * (log p_ref[c] - log(p_gen[c] + eps))      (audiocraft "kld")
    "gen-ref":  KL(gen || ref) = sum_c p_gen[c] * (log p_gen[c] - log(p_ref[c] + eps))      (stable-audio-metrics)

in nats, with 0 * log 0 = 0 and eps = 1e-6 added inside the logarithm of the second distribution only (audiocraft:
``F.kl_div((pred + eps).log(), target)``; stable-audio-metrics: ``F.kl_div((ref + 1e-6).log(), gen)``). A consequence
kept for exact agreement: identical distributions give KL = -sum_c p log(1 + eps / p), slightly negative, between
-C * eps and 0 (-5.27e-4 nats at most for AudioSet's 527 classes).

Windowing (audiocraft ``PasstKLDivergenceMetric``): the audio is split into consecutive NON-overlapping windows of
``window_s`` seconds (``torch.split``); the last, shorter window is kept unpadded when it is longer than 0.15 s and
dropped otherwise; each window gets its own softmax distribution, the KL is taken per window pair (window i of the
generated audio against window i of the reference) and averaged over the windows. stable-audio-metrics instead
uses 10 s windows with a 5 s hop, averages logits over windows and takes one softmax per clip; only its direction
is offered here ("gen-ref"), with audiocraft's windowing, and the name says so.

Sigmoid variant (hkchengrex/av-benchmark ``av_bench/metrics/kl.py``, ``compute_kl``'s ``kl_sigmoid``, offered there
beside the softmax one for multi-label clips): torch's ``kl_div`` on the LOG-SIGMOIDS of the generated and the
reference logits (``log_target=True``), summed over classes and clips and divided by the number of clips; per pair

    "ref-gen":  sum_c s_ref[c] * (log s_ref[c] - log s_gen[c]),    s = sigmoid(logits), log s = log-sigmoid (exact)

and the mean over pairs. The sigmoid outputs are NOT renormalised and the Bernoulli complement terms
(1 - s) log((1 - s) / (1 - s')) are NOT included: it is the sum over classes of the positive-label terms only, so,
unlike a divergence, it can be negative (s_ref = 0.5, s_gen = 0.9 gives 0.5 log(5/9) < 0); it is 0 for identical
logits. No eps (av-benchmark takes log-sigmoid of the logits). av-benchmark applies it to one row per clip (PANN
16 kHz on the whole clip, PaSST on the first 10 s zero-padded); here it runs per window with audiocraft's windowing
like the softmax variant, and the name (``kl-sigmoid-...-w10s``) says so; for clips of at most 10 s the PaSST
window is the same audio, unpadded.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from metrics.base import ClipContext, MetricError, MetricInfo

DIRECTIONS = ("ref-gen", "gen-ref")
ACTIVATIONS = ("softmax", "sigmoid")
DEFAULT_EPS = 1e-6
MIN_WINDOW_S = 0.15  # audiocraft PasstKLDivergenceMetric: min_duration


def split_windows(signal: np.ndarray, sample_rate: int, window_s: float = 10.0,
                  min_s: float = MIN_WINDOW_S) -> list[np.ndarray]:
    """audiocraft's PaSST segmentation of a 1-D signal: consecutive non-overlapping windows of
    ``int(window_s * sample_rate)`` samples; the last partial window is kept (unpadded) only if it has more than
    ``int(min_s * sample_rate)`` samples. Classifiers behind KLDivergence window their input this way."""
    x = np.asarray(signal)
    if x.ndim != 1:
        raise ValueError(f"split_windows wants a 1-D signal, got shape {x.shape}")
    size, minimum = int(window_s * sample_rate), int(min_s * sample_rate)
    if size < 1:
        raise ValueError(f"window of {window_s} s at {sample_rate} Hz has no samples")
    return [x[i:i + size] for i in range(0, x.shape[0], size) if x[i:i + size].shape[0] > minimum]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, float64 (max-subtracted for stability)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_sigmoid(logits: np.ndarray) -> np.ndarray:
    """log(sigmoid(x)) = -log(1 + exp(-x)), float64, exact for large |x| (as torch.nn.functional.logsigmoid)."""
    return -np.logaddexp(0.0, -np.asarray(logits, np.float64))


def _pair(p_logits_ref: np.ndarray, q_logits_gen: np.ndarray, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """(target, pred) logits for `direction`, validated: same shape [..., C], at least one pair."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    p, q = np.asarray(p_logits_ref), np.asarray(q_logits_gen)
    if p.shape != q.shape or p.ndim == 0 or p.shape[-1] < 1:
        raise ValueError(f"reference and generated logits must have the same shape [..., C], got {p.shape}, {q.shape}")
    if p.size == 0:
        raise ValueError("no windows to compare")
    return (p, q) if direction == "ref-gen" else (q, p)


def kl_divergence_sigmoid(p_logits_ref: np.ndarray, q_logits_gen: np.ndarray, direction: str = "ref-gen") -> float:
    """av-benchmark's ``kl_sigmoid`` (module docstring): mean over pairs of sum_c s_t (log s_t - log s_p), with s =
    sigmoid of the target's (t) and the prediction's (p) logits; "ref-gen": target = reference (av-benchmark's
    KL(gt || generated)), "gen-ref": target = generated. Logits ``[..., C]``, every leading index one pair."""
    target, pred = _pair(p_logits_ref, q_logits_gen, direction)
    log_t, log_p = log_sigmoid(target), log_sigmoid(pred)
    return float(np.mean((np.exp(log_t) * (log_t - log_p)).sum(axis=-1)))


def kl_divergence(p_logits_ref: np.ndarray, q_logits_gen: np.ndarray, direction: str = "ref-gen",
                  eps: float = DEFAULT_EPS) -> float:
    """Mean KL divergence (nats) between softmax(reference logits) and softmax(generated logits).

    Inputs are logits ``[..., C]`` of the same shape; every leading index is one window (or clip) pair, and the
    result is the mean of the per-pair KL over them, as audiocraft's KLDivergenceMetric divides its summed per-segment
    KL by the number of segments. ``direction``: "ref-gen" = KL(ref || gen) (audiocraft, audioldm_eval), "gen-ref" =
    KL(gen || ref) (stable-audio-metrics); `eps` goes inside the log of the second distribution (module docstring).
    """
    target, pred = (softmax(x) for x in _pair(p_logits_ref, q_logits_gen, direction))
    with np.errstate(divide="ignore", invalid="ignore"):
        t_log_t = np.where(target > 0, target * np.log(np.where(target > 0, target, 1.0)), 0.0)
    per_pair = (t_log_t - target * np.log(pred + eps)).sum(axis=-1)
    return float(np.mean(per_pair))


class KLDivergence:
    """Per-clip KL divergence between classifier label distributions of the generated and the reference music.

    ``classifier`` is an audio extractor returning per-window logits ``[windows, C]`` for the windows of
    ``split_windows(mono_audio, rate, window_s)`` (non-overlapping ``window_s`` windows, last partial window kept
    unpadded if longer than 0.15 s, else dropped), e.g. PaSST at 32 kHz with 10 s windows (audiocraft). If the
    classifier states ``params["window_s"]`` it must equal `window_s`.

    score_features: softmax per window; KL per window pair in `direction` (module docstring); mean over the
    windows. Length policy: audiocraft compares a pair cropped to the same length; since the two are featurised
    separately here, the pair is compared over their common windows, the first ``min(windows_gen, windows_ref)``.
    That equals cropping whenever both have the same windows (same length, the usual case: the reference is the
    clip's own span); if the lengths differ, the last common window may cover a partial window on one side.
    Per clip, windows weigh equally; audiocraft's dataset value weighs every window of every clip equally, so the
    two agree when all clips have the same number of windows. Units nats; lower is better. MetricError when the
    pair has no common window (audio of 0.15 s or less).

    ``activation="sigmoid"``: av-benchmark's sigmoid form per window instead (kl_divergence_sigmoid; no eps; can
    be negative, see the module docstring), named ``kl-sigmoid-<label>-...``.

    The name is ``kl-<label>-<direction>-w<window_s>s``; ``label`` names the classifier (default: its extractor
    name), so the registered names (``kl-passt-ref-gen-w10s``) still state the direction and the windowing.
    """

    def __init__(self, classifier: Any, direction: str = "ref-gen", window_s: float = 10.0,
                 eps: float = DEFAULT_EPS, label: str | None = None, activation: str = "softmax") -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        stated = (getattr(classifier.info, "params", None) or {}).get("window_s")
        if stated is not None and float(stated) != float(window_s):
            raise ValueError(f"classifier {classifier.info.name} windows {stated} s, metric asked for {window_s} s")
        self.classifier = classifier
        self.direction = direction
        self.window_s = float(window_s)
        self.activation = activation
        self.eps = float(eps) if activation == "softmax" else None
        self.inputs = {"audio": classifier, "reference": classifier}
        name = classifier.info.name
        sigmoid = activation == "sigmoid"
        form = {"ref-gen": "KL(ref || gen)", "gen-ref": "KL(gen || ref)"}[direction]
        self.info = MetricInfo(
            name=f"kl-{'sigmoid-' if sigmoid else ''}{label or name}-{direction}-w{self.window_s:g}s",
            version=1,
            units="nats",
            higher_is_better=False,
            description=(
                (f"av-benchmark's sigmoid {form}: sum over classes of s log(s / s') on sigmoid {name} outputs (not "
                 "renormalised, can be negative)" if sigmoid else
                 f"KL divergence {form} between softmax {name} label distributions")
                + f", per {self.window_s:g} s non-overlapping window, mean over windows (audiocraft kld.py windowing)"
            ),
            needs_reference=True,
            params={
                "direction": direction,
                "window_s": self.window_s,
                "min_window_s": MIN_WINDOW_S,
                "windowing": "non-overlapping; last partial window unpadded if > min_window_s, else dropped",
                "activation": activation,
                "eps": self.eps,
                "reduction": "mean over the common windows of the per-window KL",
                **({"form": "sum_c s_t (log s_t - log s_p), s = sigmoid, not renormalised (av-benchmark kl_sigmoid)"}
                   if sigmoid else {}),
            },
            backbone=classifier.info.backbone,
            standard=bool(getattr(classifier, "standard", True)),
            reference_impl=("hkchengrex/av-benchmark av_bench/metrics/kl.py (sigmoid form)" if sigmoid else
                            "audiocraft metrics/kld.py windowing; direction as audiocraft / audioldm_eval (ref || gen) "
                            "or stable-audio-metrics (gen || ref)"),
            null_value="0 = the same label distribution as the clip's reference music" + (
                "; the sigmoid form is not a true KL and can go below 0" if sigmoid else ""),
            caveats=("toolkits differ in direction and windowing: compare only with numbers of the same name",
                     "needs the clip's reference music: clips without one (e.g. AI-generated videos) are skipped"),
        )

    def score_features(self, feats: dict[str, np.ndarray], ctx: ClipContext) -> float:
        gen = np.asarray(feats["audio"], np.float64)
        ref = np.asarray(feats["reference"], np.float64)
        if gen.ndim != 2 or ref.ndim != 2:
            raise MetricError(f"expected logits [windows, classes], got {gen.shape} and {ref.shape}")
        if gen.shape[1] != ref.shape[1]:
            raise MetricError(f"class counts differ: generated {gen.shape[1]}, reference {ref.shape[1]}")
        k = min(gen.shape[0], ref.shape[0])
        if k == 0:
            raise MetricError(f"no common {self.window_s:g} s window longer than {MIN_WINDOW_S} s "
                              f"(generated {gen.shape[0]}, reference {ref.shape[0]} windows)")
        if not (np.all(np.isfinite(gen[:k])) and np.all(np.isfinite(ref[:k]))):
            raise MetricError("classifier logits contain NaN or infinite values")
        if self.activation == "sigmoid":
            return kl_divergence_sigmoid(ref[:k], gen[:k], self.direction)
        return kl_divergence(ref[:k], gen[:k], self.direction, self.eps)
