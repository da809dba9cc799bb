"""metrics.density_coverage: Density and Coverage against prdc's compute_prdc, a hand-computed case, the bootstrap,
the registered metrics and a run on the demo split."""
from __future__ import annotations

import math

import numpy as np
import pytest

from metrics.backbones.clap import pool_windows
from metrics.base import ExtractorInfo, MetricError
from metrics.density_coverage import DensityCoverage, mean_rows, pack_reference, unpack_reference

pytestmark = pytest.mark.usefixtures("one_blas_thread")

D = 16


class FakeEmbedding:
    """Stands in for an extractor: identity only, or a seeded band-energy embedding of the audio when called."""

    def __init__(self, name: str = "toy"):
        self.info = ExtractorInfo(name=name, version=1, sample_rate=16000,
                                  backbone={"name": name, "file": "toy.pt", "sha256": "0" * 64})
        self.w = np.random.default_rng(5).standard_normal((D, 32))

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        mono = np.asarray(audio, np.float64).mean(axis=0)
        frames = mono[: mono.size // 4000 * 4000].reshape(-1, 4000)  # 0.25 s frames
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        bands = np.log(np.stack([b.mean(axis=1) for b in np.array_split(power, 32, axis=1)], axis=1) + 1e-9)
        return (bands @ self.w.T / 10.0).astype(np.float32)


def clips(seed: int, n: int, frames: int = 4, shift: float = 0.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((frames, D)) + shift).astype(np.float32) for _ in range(n)]


def as_gen(rows: list[np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    return {f"c{i:03d}": {"audio": r} for i, r in enumerate(rows)}


def metric(statistic: str, **kw) -> DensityCoverage:
    return DensityCoverage(FakeEmbedding(), statistic, f"{statistic}-toy", resamples=100, **kw)


def score(m: DensityCoverage, ref: list[np.ndarray], gen: list[np.ndarray], seed: int = 0):
    return m.score_set(as_gen(gen), m.reference_statistics(ref), seed)


@pytest.mark.parametrize("pool", [mean_rows, pool_windows], ids=["mean", "l2-mean"])
def test_equals_prdc_compute_prdc(pool, capsys):
    """The same pooled embeddings through prdc.compute_prdc (nearest_k=5) give the very same numbers."""
    from prdc import compute_prdc

    ref, gen = clips(0, 60), clips(1, 45, shift=0.3)
    real = np.stack([np.asarray(pool(np.asarray(c, np.float64)), np.float64) for c in ref])
    fake = np.stack([np.asarray(pool(np.asarray(c, np.float64)), np.float64) for c in gen])
    want = compute_prdc(real, fake, nearest_k=5)
    pooling = {"pooling": pool.__name__, "pool": pool}
    density = score(metric("density", **pooling), ref, gen)
    coverage = score(metric("coverage", **pooling), ref, gen)
    assert density.value == want["density"] and coverage.value == want["coverage"]
    assert 0.0 < coverage.value < 1.0 and 0.0 < density.value  # not a degenerate case
    assert (density.n, density.n_reference, coverage.n, coverage.n_reference) == (45, 60, 45, 60)
    # density is the mean of the per-clip densities (reference balls holding the clip / k)
    assert np.mean(list(density.per_clip.values())) == pytest.approx(density.value, rel=1e-12)
    assert coverage.per_clip == {}


def test_hand_computed_tiny_case():
    """Reference (0,0), (1,0), (3,0) with k = 1: radii 1, 1, 2. Generated (-0.5,0) lies in ball 1; (2,0) lies in
    ball 3 and ON ball 2's boundary (not inside: strict <); (3.5,0) lies in ball 3. Density = (1 + 1 + 1) / (1 * 3)
    = 1; coverage = 2/3 (reference point 2 is reached by no generated clip)."""
    from prdc import compute_prdc

    real = [np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]), np.array([[3.0, 0.0]])]
    fake = [np.array([[-0.5, 0.0]]), np.array([[2.0, 0.0]]), np.array([[3.5, 0.0]])]
    mk = lambda s: DensityCoverage(FakeEmbedding(), s, f"{s}-toy", k=1, resamples=50)  # noqa: E731
    stats = mk("density").reference_statistics(real)
    x, radii, k = unpack_reference(stats)
    np.testing.assert_array_equal(radii, [1.0, 1.0, 2.0])
    assert k == 1 and x.shape == (3, 2)
    density = mk("density").score_set(as_gen(fake), stats, seed=0)
    coverage = mk("coverage").score_set(as_gen(fake), stats, seed=0)
    assert density.value == 1.0 and coverage.value == pytest.approx(2.0 / 3.0, abs=1e-15)
    assert density.per_clip == {"c000": 1.0, "c001": 1.0, "c002": 1.0}
    want = compute_prdc(np.vstack(real), np.vstack(fake), nearest_k=1)
    assert (density.value, coverage.value) == (want["density"], want["coverage"])


def test_shifted_generation_scores_lower_and_bootstrap():
    ref = clips(0, 60)
    near, far = clips(2, 40), clips(3, 40, shift=1.5)
    for stat in ("density", "coverage"):
        m = metric(stat)
        a, b = score(m, ref, near), score(m, ref, far)
        assert b.value < a.value
        for s in (a, b):
            assert s.lo <= s.hi and s.lo >= 0.0 and math.isfinite(s.extra["bootstrap-bias"])
        assert a.lo <= a.value <= a.hi
        # deterministic per seed, independent of the clips' dict order; another seed moves only the interval
        again = m.score_set(dict(reversed(list(as_gen(near).items()))), m.reference_statistics(ref), 0)
        assert (again.value, again.lo, again.hi) == (a.value, a.lo, a.hi)
        other = score(m, ref, near, seed=1)
        assert other.value == a.value and (other.lo, other.hi) != (a.lo, a.hi)
    cov = score(metric("coverage"), ref, near)
    assert cov.hi <= 1.0 and cov.extra["bootstrap-bias"] < 0  # repeated clips reach fewer reference balls
    pct = score(metric("coverage", ci_method="percentile"), ref, near)
    assert pct.hi < cov.hi  # the percentile interval sits lower by the bias


def test_info_and_shared_extractor():
    ext = FakeEmbedding()
    d = DensityCoverage(ext, "density", "density-toy", pooling="mean")
    c = DensityCoverage(ext, "coverage", "coverage-toy", pooling="mean")
    for m in (d, c):
        assert m.info.kind == "set" and m.info.higher_is_better is True and m.info.needs_reference
        assert m.info.params["k"] == 5 and m.info.params["embedding"] == "one per clip: mean"
        assert m.inputs == {"audio": ext, "reference": ext} and m.info.backbone == ext.info.backbone
    assert d.info.key("r", d.inputs) != c.info.key("r", c.inputs)  # two metrics ...
    assert d.info.identity("r", d.inputs)["inputs"] == c.info.identity("r", c.inputs)["inputs"]  # ... one extractor
    assert DensityCoverage(ext, "density", "density-toy", k=3).info.key("r") != d.info.key("r")
    with pytest.raises(ValueError):
        DensityCoverage(ext, "precision", "precision-toy")
    with pytest.raises(ValueError):
        DensityCoverage(ext, "density", "density-toy", ci_method="bca")


def test_errors_and_packing():
    m = metric("density")
    with pytest.raises(MetricError, match="at least 7 reference clips"):
        m.reference_statistics(clips(0, 6))
    stats = m.reference_statistics(clips(0, 10))
    with pytest.raises(MetricError, match="dims"):
        m.score_set(as_gen([c[:, :8] for c in clips(1, 5)]), stats, 0)
    with pytest.raises(MetricError, match="non-finite"):
        m.score_set(as_gen([np.full((2, D), np.nan)]), stats, 0)
    with pytest.raises(MetricError, match="k=3"):
        DensityCoverage(FakeEmbedding(), "density", "d", k=3).score_set(as_gen(clips(1, 5)), stats, 0)
    # a clip without rows is left out, as FAD leaves out clips without frames
    s = m.score_set({**as_gen(clips(1, 5)), "empty": {"audio": np.zeros((0, D), np.float32)}}, stats, 0)
    assert s.n == 5 and "empty" not in s.per_clip
    x, radii, k = unpack_reference(stats)
    assert np.array_equal(pack_reference(x, radii, k), stats)
    with pytest.raises(ValueError):
        unpack_reference(stats[:-1])


def test_registered_metrics_carry_their_names_and_share_fad_extractors(monkeypatch, tmp_path):
    """Built through the registry and the catalog with a toy extractor standing in for CLAP and VGGish (real weights
    are absent here): the names are the registered ones, k = 5, the pooling is in the identity, and each uses the
    very extractor identity of the FAD on the same backbone, so the feature cache computes the embeddings once."""
    from vm_eval.registries import METRICS
    from vm_eval.scoring.resolve import build

    monkeypatch.setattr("metrics.backbones.clap.ClapAudio", lambda checkpoint: FakeEmbedding("clap-audio"))
    monkeypatch.setattr("metrics.backbones.vggish.VGGishEmbedding", lambda checkpoint: FakeEmbedding("vggish"))
    monkeypatch.setattr("vm_eval.weights.require", lambda name: tmp_path / name)
    entries = {e.name: e for e in METRICS.entries() if e.family == "prdc"}
    assert set(entries) == {"density-clap-music", "coverage-clap-music", "density-vggish", "coverage-vggish"}
    for name, entry in entries.items():
        assert "prdc" in entry.packages
        m = build(entry)
        fad = build(METRICS.get("fad-clap-music" if "clap" in name else "fad-vggish"))
        assert m.info.name == name and m.info.params["k"] == 5 and m.metric.statistic == name.split("-")[0]
        assert m.identity()["inputs"] == fad.identity()["inputs"]
    assert "L2-normalised mean" in build(entries["density-clap-music"]).info.params["embedding"]
    assert build(entries["density-clap-music"]).metric.pool is pool_windows
    assert "mean of the 0.96 s frame" in build(entries["coverage-vggish"]).info.params["embedding"]


def test_density_vggish_on_random_weights_written_as_the_published_file(tmp_path, monkeypatch, capsys):
    """density-vggish built through the registry on random VGGish weights found in $VM_EVAL_WEIGHTS as
    vggish-10086976.pth: its value is prdc's on the clip means of the real extractor's frame embeddings."""
    import torch
    from prdc import compute_prdc
    from torchvggish.torchvggish import VGG, make_layers

    from backbone_helpers import isolate_weights, signal
    from vm_eval.registries import METRICS
    from vm_eval.scoring.resolve import build

    isolate_weights(monkeypatch, tmp_path)
    (tmp_path / "weights" / "vggish").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(VGG(make_layers(), postprocess=False).state_dict(),
               tmp_path / "weights" / "vggish" / "vggish-10086976.pth")
    m = build(METRICS.get("density-vggish"))
    assert m.info.backbone["file"] == "vggish-10086976.pth" and m.inputs["audio"].info.name == "vggish"
    ext = m.inputs["audio"]
    ref = [ext(signal(2.0, 16_000, seed=i), 16_000) for i in range(8)]  # at the model rate: no resampling cost
    gen = [ext(signal(2.0, 16_000, seed=100 + i) * (1 + 0.2 * i), 16_000) for i in range(7)]  # prdc: fake >= k + 2
    assert ref[0].shape == (2, 128)  # two 0.96 s frames per clip, pooled to one embedding by their mean
    s = m.metric.score_set(as_gen(gen), m.metric.reference_statistics(ref), 0)
    want = compute_prdc(np.stack([r.astype(np.float64).mean(0) for r in ref]),
                        np.stack([g.astype(np.float64).mean(0) for g in gen]), nearest_k=5)
    assert s.value == want["density"] and s.n == 7 and s.n_reference == 8


def test_run_on_the_demo_split(data_dir, results, tmp_path, monkeypatch):
    """Through the harness: `ground-truth` against its own reference set holds every reference clip, so coverage
    is 1; reference statistics are cached per metric; the reference set is recorded with the score."""
    from vm_eval.registries import METRICS
    from vm_eval.registry import Entry
    from vm_eval.runner import RunConfig, execute

    ext = FakeEmbedding()
    monkeypatch.setattr(METRICS, "_entries", {})
    for stat in ("density", "coverage"):
        METRICS.add(Entry(f"{stat}-toy", lambda s=stat: DensityCoverage(ext, s, f"{s}-toy", resamples=50), "test",
                          family="test"))
    cache = tmp_path / "cache"
    out = execute(RunConfig(model="ground-truth", split="test", dataset="demo", data=data_dir, results=results,
                            cache=cache, progress=False, metrics=["density-toy", "coverage-toy"]))
    cov, den = out.aggregates["coverage-toy"], out.aggregates["density-toy"]
    assert cov["mean"] == 1.0 and cov["n"] == cov["n_reference"] == out.counts["done"] >= 7
    assert den["mean"] > 0 and den["lo"] <= den["mean"] <= den["hi"] and den["reference_set"]["name"] == "demo:test"
    assert len(list(cache.rglob("refstats-*/**/*.npy"))) == 2
    # one extractor identity for both metrics: one cached entry per input file (generated and reference audio)
    assert len(list((cache / "features" / "toy").rglob("*.npy"))) <= 2 * out.counts["done"]
