"""metrics.kl: the KL formula and windowing against audiocraft's (kld.py, PaSST metric), the metric class."""
from __future__ import annotations

import math

import numpy as np
import pytest

import vm_eval  # noqa: F401  first: installs the torchvision shim audiocraft needs on a CPU machine
from metrics.base import ClipContext, ExtractorInfo, MetricError
from metrics.kl import KLDivergence, kl_divergence, kl_divergence_sigmoid, log_sigmoid, softmax, split_windows

SR = 8000
CLASSES = 12


class ToyClassifier:
    """Deterministic stand-in for an AudioSet classifier: a fixed random linear map of a 24-band log spectrum of
    each window (windows from split_windows, as the KL metric's contract says). No pretrained weights."""

    def __init__(self, window_s: float = 10.0, seed: int = 0, name: str = "toyclf"):
        rng = np.random.default_rng(seed)
        self.window_s = window_s
        self.w = rng.standard_normal((CLASSES, 24)) * 0.8
        self.b = rng.standard_normal(CLASSES)
        self.info = ExtractorInfo(name=name, version=1, sample_rate=SR, mono=True, params={"window_s": window_s})

    def window_logits(self, x: np.ndarray) -> np.ndarray:
        power = np.abs(np.fft.rfft(np.asarray(x, np.float64))) ** 2
        bands = np.log(np.array([b.mean() for b in np.array_split(power, 24)]) + 1e-9)
        return self.w @ (bands - bands.mean()) / 4.0 + self.b

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        mono = np.asarray(audio).mean(axis=0)
        wins = split_windows(mono, sample_rate, self.window_s)
        return np.stack([self.window_logits(w) for w in wins]) if wins else np.zeros((0, CLASSES))


def music(seed: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f = rng.uniform(100, 1500, size=4)
    x = sum(np.sin(2 * np.pi * fi * t) * rng.uniform(0.1, 0.5) for fi in f) + 0.05 * rng.standard_normal(t.size)
    return x[None, :].astype(np.float32)


CTX = ClipContext(clip_id="c", duration_s=25.0)


def test_matches_audiocraft_formula():
    import torch
    from audiocraft.metrics.kld import kl_divergence as ac_kl

    rng = np.random.default_rng(0)
    ref, gen = rng.standard_normal((7, 527)) * 3, rng.standard_normal((7, 527)) * 3
    p_ref, p_gen = torch.softmax(torch.from_numpy(ref), -1), torch.softmax(torch.from_numpy(gen), -1)
    # audiocraft: kl_divergence(pred=gen, target=ref) is KL(ref || gen), per pair; the metric is the mean over pairs
    want_rg = ac_kl(p_gen, p_ref).mean().item()
    want_gr = ac_kl(p_ref, p_gen).mean().item()  # audiocraft's "kld_qp", stable-audio-metrics' direction
    assert kl_divergence(ref, gen, "ref-gen") == pytest.approx(want_rg, rel=1e-6)
    assert kl_divergence(ref, gen, "gen-ref") == pytest.approx(want_gr, rel=1e-6)
    # eps placement matters with very confident classifiers: compare where it shows
    ref2, gen2 = ref.copy(), gen.copy()
    ref2[:, 0] += 40.0
    p2r, p2g = torch.softmax(torch.from_numpy(ref2), -1), torch.softmax(torch.from_numpy(gen2), -1)
    assert kl_divergence(ref2, gen2, "ref-gen", eps=1e-3) == pytest.approx(ac_kl(p2g, p2r, 1e-3).mean().item(),
                                                                             rel=1e-6)
    assert kl_divergence(ref2, gen2, "gen-ref", eps=1e-3) == pytest.approx(ac_kl(p2r, p2g, 1e-3).mean().item(),
                                                                             rel=1e-6)


def test_matches_audiocraft_passt_metric_windowing():
    """audiocraft's PasstKLDivergenceMetric, with the PaSST model swapped for the toy classifier, gives the same
    value as KLDivergence on the toy classifier's features: same windows (10 s + 10 s + 5 s partial), same
    reduction. Clips of 25 s at 8 kHz."""
    import torch
    from audiocraft.metrics.kld import PasstKLDivergenceMetric

    clf = ToyClassifier()

    class Wrapped(torch.nn.Module):
        def forward(self, wav):  # [1, t] -> logits [1, C]
            return torch.from_numpy(clf.window_logits(wav[0].numpy()))[None].float()

    class ToyPasst(PasstKLDivergenceMetric):
        def _initialize_model(self, pretrained_length=None):
            self.model = Wrapped()
            self.model_sample_rate = SR
            self.max_input_frames = int(10 * SR)
            self.min_input_frames = int(0.15 * SR)

    gen, ref = music(1, 25.0), music(2, 25.0)
    ac = ToyPasst()
    ac.update(torch.from_numpy(gen)[None], torch.from_numpy(ref)[None], torch.tensor([gen.shape[-1]]),
              torch.tensor([SR]))
    out = ac.compute()
    feats = {"audio": clf(gen, SR), "reference": clf(ref, SR)}
    assert feats["audio"].shape == (3, CLASSES)
    ours_rg = KLDivergence(clf, "ref-gen").score_features(feats, CTX)
    ours_gr = KLDivergence(clf, "gen-ref").score_features(feats, CTX)
    assert ours_rg == pytest.approx(out["kld"], rel=1e-5)  # audiocraft: float32 softmax and float32 sums
    assert ours_gr == pytest.approx(out["kld_qp"], rel=1e-5)


def test_hand_computed_two_classes():
    # p_ref = (1/2, 1/2), p_gen = (3/4, 1/4): KL(ref || gen) = 1/2 ln(4/3); KL(gen || ref) = 3/4 ln(3/2) + 1/4 ln(1/2)
    ref, gen = np.array([0.0, 0.0]), np.array([math.log(3.0), 0.0])
    assert kl_divergence(ref, gen, "ref-gen", eps=0.0) == pytest.approx(0.5 * math.log(4 / 3), rel=1e-12)
    assert kl_divergence(ref, gen, "gen-ref", eps=0.0) == pytest.approx(
        0.75 * math.log(1.5) + 0.25 * math.log(0.5), rel=1e-12)
    assert kl_divergence(ref, gen, "ref-gen") == pytest.approx(0.5 * math.log(4 / 3), abs=1e-5)


def test_zero_and_asymmetry():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 20)) * 2, rng.standard_normal((4, 20)) * 2
    assert kl_divergence(a, a, "ref-gen", eps=0.0) == pytest.approx(0.0, abs=1e-12)
    # eps inside the log: KL(p || p) = -sum p log(1 + eps / p), slightly NEGATIVE (~ -C * eps), as in audiocraft
    assert kl_divergence(a, a) == pytest.approx(-np.mean(np.sum(softmax(a) * np.log1p(1e-6 / softmax(a)), -1)))
    assert -20 * 1e-6 <= kl_divergence(a, a) < 0
    assert kl_divergence(a, b, "ref-gen") != pytest.approx(kl_divergence(a, b, "gen-ref"), rel=1e-3)
    assert kl_divergence(a, b, "gen-ref") == pytest.approx(kl_divergence(b, a, "ref-gen"), rel=1e-12)
    assert kl_divergence(a, b) > 0
    # softmax saturating to exact zeros stays finite (0 log 0 = 0)
    big = np.array([[1000.0, 0.0, -1000.0]])
    assert math.isfinite(kl_divergence(big, np.zeros((1, 3))))
    np.testing.assert_allclose(softmax(big).sum(), 1.0)
    with pytest.raises(ValueError):
        kl_divergence(a, b[:, :5])
    with pytest.raises(ValueError):
        kl_divergence(a, b, "sym")


def test_split_windows_like_audiocraft():
    x = np.arange(int(25.1 * SR))
    assert [w.shape[0] for w in split_windows(x, SR, 10.0)] == [80000, 80000, 40800]
    # a tail of 0.15 s or less is dropped, not padded
    assert [w.shape[0] for w in split_windows(np.arange(20 * SR + int(0.15 * SR)), SR)] == [80000, 80000]
    assert [w.shape[0] for w in split_windows(np.arange(20 * SR + int(0.15 * SR) + 1), SR)] == [80000, 80000, 1201]
    assert split_windows(np.arange(100), SR) == []


def test_metric_class():
    clf = ToyClassifier()
    m = KLDivergence(clf)
    assert m.info.name == "kl-toyclf-ref-gen-w10s" and m.info.units == "nats"
    assert m.info.higher_is_better is False and m.info.needs_reference
    assert set(m.inputs) == {"audio", "reference"} and m.inputs["audio"] is clf
    assert KLDivergence(ToyClassifier(2.5), "gen-ref", 2.5).info.name == "kl-toyclf-gen-ref-w2.5s"
    with pytest.raises(ValueError, match="windows"):
        KLDivergence(clf, window_s=5.0)
    with pytest.raises(ValueError):
        KLDivergence(clf, direction="both")

    ref = clf(music(3, 25.0), SR)
    same = m.score_features({"audio": ref, "reference": ref}, CTX)
    other = m.score_features({"audio": clf(music(4, 25.0), SR), "reference": ref}, CTX)
    assert -CLASSES * 1e-6 <= same < 0 < 1e-3 < other  # eps: KL(p || p) is -C * eps at most
    # common windows: a longer generation is compared over the reference's windows only
    longer = np.vstack([ref, clf(music(5, 20.0), SR)])
    assert m.score_features({"audio": longer, "reference": ref}, CTX) == pytest.approx(same)
    assert m.score_features({"audio": ref[:2], "reference": ref}, CTX) == pytest.approx(
        kl_divergence(ref[:2], ref[:2]))
    with pytest.raises(MetricError):
        m.score_features({"audio": np.zeros((0, CLASSES)), "reference": ref}, CTX)
    with pytest.raises(MetricError):
        m.score_features({"audio": ref[:, :5], "reference": ref}, CTX)


def test_registered_kl_metrics_carry_their_registry_names(monkeypatch, tmp_path):
    """Each registered KL metric built through the registry and the catalog, with the toy classifier standing in
    for PaSST / PANN (whose weights are absent here): its own name is the registered one (the build refuses any
    other) and states its direction and windowing."""
    from vm_eval.registries import METRICS
    from vm_eval.scoring.resolve import build

    toy = lambda checkpoint, window_s: ToyClassifier(window_s)  # noqa: E731
    monkeypatch.setattr("metrics.backbones.passt.PasstClassifier", toy)
    monkeypatch.setattr("metrics.backbones.pann.PannClassifier", toy)
    monkeypatch.setattr("vm_eval.weights.require", lambda name: tmp_path / name)
    entries = [e for e in METRICS.entries() if e.family == "kl"]
    assert len(entries) == 6
    for entry in entries:
        m = build(entry)
        assert m.info.name == entry.name
        assert entry.name.endswith(f"-{m.metric.direction}-w10s") and m.metric.window_s == 10.0
        assert m.metric.activation == ("sigmoid" if entry.name.startswith("kl-sigmoid-") else "softmax")
    assert {e.name for e in entries if e.name.startswith("kl-sigmoid-")} == {"kl-sigmoid-passt-ref-gen-w10s",
                                                                              "kl-sigmoid-pann-ref-gen-w10s"}


def test_sigmoid_matches_av_benchmark_formula():
    """av-benchmark compute_kl's kl_sigmoid: torch kl_div on the log-sigmoids of generated and reference logits,
    log_target=True, summed over classes and clips, divided by the number of clips; and its numpy form."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(4)
    ref, gen = rng.standard_normal((7, 527)) * 3, rng.standard_normal((7, 527)) * 3 - 1.0
    tr, tg = torch.from_numpy(ref), torch.from_numpy(gen)
    want = (F.kl_div(F.logsigmoid(tg), F.logsigmoid(tr), reduction="sum", log_target=True) / len(tg)).item()
    assert kl_divergence_sigmoid(ref, gen, "ref-gen") == pytest.approx(want, rel=1e-12)
    s_ref, s_gen = 1 / (1 + np.exp(-ref)), 1 / (1 + np.exp(-gen))
    assert kl_divergence_sigmoid(ref, gen) == pytest.approx(
        np.mean(np.sum(s_ref * (np.log(s_ref) - np.log(s_gen)), axis=-1)), rel=1e-10)
    assert kl_divergence_sigmoid(ref, gen, "gen-ref") == pytest.approx(kl_divergence_sigmoid(gen, ref), rel=1e-15)


def test_sigmoid_hand_computed_and_sign():
    # s_ref = (1/2, 1/2), s_gen = (9/10, 1/2): 1/2 log((1/2) / (9/10)) + 1/2 log 1 = 1/2 log(5/9) < 0: not a divergence
    ref, gen = np.array([0.0, 0.0]), np.array([math.log(9.0), 0.0])
    assert kl_divergence_sigmoid(ref, gen) == pytest.approx(0.5 * math.log(5 / 9), rel=1e-12)
    assert kl_divergence_sigmoid(ref, gen) < 0
    a = np.random.default_rng(2).standard_normal((3, 20))
    assert kl_divergence_sigmoid(a, a) == 0.0  # identical logits: exactly 0 (no eps)
    assert math.isfinite(kl_divergence_sigmoid(np.array([[1000.0, -1000.0]]), np.array([[-1000.0, 1000.0]])))
    np.testing.assert_allclose(log_sigmoid(np.array([-800.0, 0.0, 800.0])), [-800.0, -math.log(2.0), 0.0])
    with pytest.raises(ValueError):
        kl_divergence_sigmoid(a, a[:, :5])


def test_sigmoid_metric_is_named_apart_and_softmax_identity_is_unchanged():
    clf = ToyClassifier()
    soft, sig = KLDivergence(clf), KLDivergence(clf, activation="sigmoid")
    assert sig.info.name == "kl-sigmoid-toyclf-ref-gen-w10s" and soft.info.name == "kl-toyclf-ref-gen-w10s"
    assert sig.info.params["activation"] == "sigmoid" and sig.info.params["eps"] is None and "form" in sig.info.params
    # the softmax metric's identity keeps exactly its former parameters (stored scores keep their key)
    assert soft.info.params == {"direction": "ref-gen", "window_s": 10.0, "min_window_s": 0.15,
                                "windowing": "non-overlapping; last partial window unpadded if > min_window_s, "
                                             "else dropped",
                                "activation": "softmax", "eps": 1e-6,
                                "reduction": "mean over the common windows of the per-window KL"}
    assert sig.info.key("r", sig.inputs) != soft.info.key("r", soft.inputs)
    with pytest.raises(ValueError):
        KLDivergence(clf, activation="relu")
    ref, gen = clf(music(3, 25.0), SR), clf(music(4, 25.0), SR)
    assert sig.score_features({"audio": gen, "reference": ref}, CTX) == kl_divergence_sigmoid(ref, gen)
    assert sig.score_features({"audio": ref, "reference": ref}, CTX) == 0.0
