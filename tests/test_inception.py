"""metrics.inception: the Inception Score against a direct numpy transcription of audioldm_eval's calculate_isc,
hand-computed cases, the set metric (no reference set) and a run on the demo split."""
from __future__ import annotations

import math

import numpy as np
import pytest

from metrics.base import ExtractorInfo, MetricError
from metrics.inception import InceptionScore, inception_score

CLASSES = 527


def audioldm_eval_isc(logits: np.ndarray, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    """audioldm_eval/metrics/isc.py calculate_isc(samples_shuffle=True, rng_seed=seed), step by step in numpy:
    shuffle rows with RandomState(seed).permutation, float64, softmax and log-softmax, splits [i N // S, (i+1) N // S),
    exp(mean_i sum_c p (log p - log mean p)), then np.mean and np.std of the split scores."""
    x = logits[np.random.RandomState(seed).permutation(logits.shape[0])].astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    log_p = x - x.max(axis=1, keepdims=True) - np.log(e.sum(axis=1, keepdims=True))
    n, scores = x.shape[0], []
    for i in range(splits):
        pc, lc = p[i * n // splits:(i + 1) * n // splits], log_p[i * n // splits:(i + 1) * n // splits]
        q = pc.mean(axis=0, keepdims=True)
        scores.append(np.exp((pc * (lc - np.log(q))).sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def random_logits(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, CLASSES)) * 3.0 + rng.standard_normal(CLASSES)


@pytest.mark.parametrize("n", [10, 37, 200])
def test_matches_audioldm_eval(n):
    logits = random_logits(n, seed=n)
    mean, std = audioldm_eval_isc(logits)
    got = inception_score(logits)
    assert got.mean == pytest.approx(mean, rel=1e-12) and got.std == pytest.approx(std, rel=1e-9, abs=1e-12)
    assert len(got.per_split) == 10 and got.mean == pytest.approx(np.mean(got.per_split), rel=1e-15)
    # the same per split in its entropy form: IS_s = exp(H(mean p) - mean H(p)) (Salimans et al. 2016)
    x = logits[np.random.RandomState(2020).permutation(n)]
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    h = lambda a: -(a * np.log(a)).sum(-1)  # noqa: E731
    chunks = [p[i * n // 10:(i + 1) * n // 10] for i in range(10)]
    np.testing.assert_allclose(got.per_split, [math.exp(h(c.mean(0)) - h(c).mean()) for c in chunks], rtol=1e-9)


def test_hand_computed_cases():
    # every clip the same distribution: KL(p || p) = 0, IS = 1
    same = np.tile(random_logits(1), (20, 1))
    assert inception_score(same).mean == pytest.approx(1.0, abs=1e-12)
    # 4 classes, rows cycling through confident one-hot logits, no shuffle: each split of 4 rows holds each class
    # once, the split marginal is uniform, IS = exp(log 4 - H(p)) with p = (e^20, 1, 1, 1) / (e^20 + 3)
    logits = np.array([20.0 * np.eye(4)[i % 4] for i in range(40)])
    p = np.array([math.exp(20.0), 1.0, 1.0, 1.0]) / (math.exp(20.0) + 3.0)
    want = math.exp(math.log(4.0) + float((p * np.log(p)).sum()))
    got = inception_score(logits, shuffle_seed=None)
    assert got.mean == pytest.approx(want, rel=1e-12) and got.std == pytest.approx(0.0, abs=1e-12)
    assert 3.99 < got.mean < 4.0
    with pytest.raises(ValueError, match="at least 10 clips"):
        inception_score(random_logits(9))
    # a class no clip of a split gives any mass (underflow) counts 0 log 0 = 0, not NaN
    assert math.isfinite(inception_score(np.array([[0.0, -800.0], [0.0, -900.0]]), splits=1).mean)


class WholeClipClassifier:
    """Stand-in for PannClassifier(window_s=None): one row of logits per clip from a seeded linear map of a 24-band
    log spectrum of the whole clip. No pretrained weights."""

    def __init__(self, window_s: float | None = None):
        rng = np.random.default_rng(0)
        self.w, self.b = rng.standard_normal((12, 24)) * 2.0, rng.standard_normal(12)
        self.info = ExtractorInfo(name="toyclf", version=1, sample_rate=16000, params={"window_s": window_s},
                                  backbone={"name": "toyclf", "file": "toy.pt", "sha256": "0" * 64})

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        power = np.abs(np.fft.rfft(np.asarray(audio, np.float64).mean(axis=0))) ** 2
        bands = np.log(np.array([b.mean() for b in np.array_split(power, 24)]) + 1e-9)
        return (self.w @ (bands - bands.mean()) / 4.0 + self.b)[None]


def test_set_metric_without_reference():
    m = InceptionScore(WholeClipClassifier(), "is-toy", resamples=100)
    info = m.info
    assert info.kind == "set" and info.higher_is_better is True and not info.needs_reference
    assert set(m.inputs) == {"audio"} and info.params["splits"] == 10 and "softmax" in info.params["activation"]
    assert InceptionScore(WholeClipClassifier(), "is-toy", splits=5).info.key("r") != info.key("r")
    logits = random_logits(30, seed=3)
    gen = {f"c{i:02d}": {"audio": row[None]} for i, row in enumerate(logits)}
    s = m.score_set(gen, None, seed=0)
    want = inception_score(logits)  # rows in sorted clip-id order (= the order above)
    assert s.value == want.mean and s.extra["std-over-splits"] == want.std and s.extra["splits"] == 10
    assert (s.n, s.n_reference, s.per_clip) == (30, 0, {})
    assert 1.0 <= s.lo <= s.value <= s.hi and math.isfinite(s.extra["bootstrap-bias"])
    again = m.score_set(dict(reversed(list(gen.items()))), None, seed=0)
    assert (again.value, again.lo, again.hi) == (s.value, s.lo, s.hi)
    with pytest.raises(MetricError, match="at least 10"):
        m.score_set(dict(list(gen.items())[:9]), None, 0)
    with pytest.raises(MetricError, match="one logits row"):
        m.score_set({k: {"audio": np.vstack([v["audio"]] * 2)} for k, v in gen.items()}, None, 0)
    with pytest.raises(MetricError):
        m.reference_statistics([])
    with pytest.raises(ValueError, match="window_s=None"):
        InceptionScore(WholeClipClassifier(window_s=10.0), "is-toy")


def test_registered_metric(monkeypatch, tmp_path):
    """is-pann-cnn14 through the registry and the catalog, the toy classifier standing in for PANN (weights absent
    here): its own name, the whole clip as one window (PannClassifier(window_s=None)), 10 splits."""
    from vm_eval.registries import METRICS
    from vm_eval.scoring.resolve import build

    seen = {}

    def toy(checkpoint, window_s):
        seen["window_s"] = window_s
        return WholeClipClassifier(window_s)

    monkeypatch.setattr("metrics.backbones.pann.PannClassifier", toy)
    monkeypatch.setattr("vm_eval.weights.require", lambda name: tmp_path / name)
    entry = METRICS.get("is-pann-cnn14")
    assert entry.weights == ("pann-cnn14",) and entry.family == "inception"
    m = build(entry)
    assert m.info.name == "is-pann-cnn14" and seen == {"window_s": None} and m.info.params["splits"] == 10


def test_run_on_the_demo_split(data_dir, results, monkeypatch):
    """A set metric with no reference input runs through the harness: no reference statistics, no reference set
    recorded, one value for the run's clips."""
    import testsystems  # noqa: F401  registers the test-noise model
    from vm_eval.registries import METRICS
    from vm_eval.registry import Entry
    from vm_eval.runner import RunConfig, execute

    monkeypatch.setattr(METRICS, "_entries", {})
    METRICS.add(Entry("is-toy", lambda: InceptionScore(WholeClipClassifier(), "is-toy", splits=2, resamples=50),
                      "test", family="test"))
    out = execute(RunConfig(model="test-noise", split="test", dataset="demo", data=data_dir, results=results,
                            progress=False, metrics=["is-toy"]))
    agg = out.aggregates["is-toy"]
    assert agg["failed"] == 0 and agg["n"] == out.counts["done"] >= 2
    assert agg["n_reference"] == 0 and agg["reference_set"] is None and agg["mean"] >= 1.0
    assert agg["extra"]["splits"] == 2
