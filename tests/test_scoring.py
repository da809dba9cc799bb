"""Scoring machinery: video and null inputs, sub-scores, set metrics with cached reference statistics, stand-ins."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import testsystems
from backbone_helpers import isolate_weights
from metrics.base import DoesNotApply, MetricInfo
from vm_eval.cli import main
from vm_eval.data.manifest import load_manifest
from vm_eval.registries import METRICS
from vm_eval.registry import Entry
from vm_eval.runner import RunConfig, execute
from vm_eval.scoring.clip_stage import TRACEBACK_LINES
from vm_eval.scoring.inputs import donor_ids
from vm_eval.scoring.resolve import resolve_metrics
from vm_eval.store.run import RunStore


def cfg(data_dir, results, **kw) -> RunConfig:
    base = dict(model="test-noise", split="test", dataset="demo", data=data_dir, results=results, progress=False)
    base.update(kw)
    return RunConfig(**base)


def test_video_and_null_inputs_give_sub_score_aggregates(data_dir, results, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_VIDEO_LOG", str(tmp_path / "video.log"))
    out = execute(cfg(data_dir, results, metrics=["test-av"]))
    n = out.counts["done"]
    assert out.aggregates["test-av"]["n"] == n and out.aggregates["test-av:vs-other"]["n"] == n
    assert out.aggregates["test-av:vs-other"]["paired_null"] == "vs-other"
    assert len(testsystems.read_lines(tmp_path / "video.log")) == n  # each clip's video decoded once
    scores = pd.read_parquet(out.run.dir / "scores.parquet")
    assert set(scores.metric) == {"test-av", "test-av:vs-other"}
    # the null uses another clip's audio: differences are not all zero
    assert np.abs(scores[scores.metric == "test-av:vs-other"].value).max() > 0
    execute(cfg(data_dir, results, metrics=["test-av"], rescore=True))
    assert len(testsystems.read_lines(tmp_path / "video.log")) == n  # features came from the cache


def test_donors_are_never_self_and_skip_clips_without_output():
    from vm_eval.data.manifest import Clip

    clips = [Clip(id=f"c{i}", video="v.mp4", start=0, end=5, split="test") for i in range(6)]
    gen = {f"c{i}": {"status": "done"} for i in range(6) if i != 2}
    donors = donor_ids(clips, gen, seed=0)
    assert set(donors) == set(gen) and all(d != c and d in gen for c, d in donors.items())
    assert donor_ids(clips, gen, seed=0) == donors and donor_ids(clips, {"c0": {"status": "done"}}, 0) == {}


def test_set_metric_caches_reference_statistics(data_dir, results, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_REFSTATS_LOG", str(tmp_path / "ref.log"))
    a = execute(cfg(data_dir, results, metrics=["test-set-rms"]))
    agg = a.aggregates["test-set-rms"]
    n_ref = sum(1 for c in load_manifest(data_dir / "demo").split("test") if c.reference)
    assert agg["kind"] == "set" and agg["n"] == a.counts["done"] and agg["n_reference"] == n_ref
    assert agg["reference_set"]["name"] == "demo:test" and agg["reference_set"]["n"] == n_ref
    b = execute(cfg(data_dir, results, metrics=["test-set-rms"], model="random-retrieval"))
    assert len(testsystems.read_lines(tmp_path / "ref.log")) == 1  # another system, same reference set: cached
    assert b.aggregates["test-set-rms"]["mean"] < agg["mean"]  # real music is closer to the reference set
    scores = pd.read_parquet(b.run.dir / "scores.parquet")
    assert (scores.metric == "test-set-rms:per-clip").sum() == b.counts["done"]


def test_reference_set_option_is_recorded(data_dir, results):
    manifest = data_dir / "demo" / "manifest.jsonl"
    out = execute(cfg(data_dir, results, metrics=["test-set-rms"], reference_set=f"{manifest}:train"))
    ref = out.aggregates["test-set-rms"]["reference_set"]
    n_train = sum(1 for c in load_manifest(manifest).split("train") if c.reference)
    assert ref["name"].endswith(":train") and ref["n"] == n_train


def test_stand_in_metric_yields_to_a_standard_one(monkeypatch):
    class StandIn:
        info = MetricInfo(name="x-standin", version=1, units="", higher_is_better=False, description="", standard=False)

        def score(self, audio, sr, ctx):
            return 0.0

    class Standard:
        info = MetricInfo(name="x-standard", version=1, units="", higher_is_better=False, description="")

        def score(self, audio, sr, ctx):
            return 0.0

    monkeypatch.setattr(METRICS, "_entries", {})
    METRICS.add(Entry("x-standin", StandIn, "", family="x"))
    chosen, skipped = resolve_metrics(None)
    assert [m.name for m in chosen] == ["x-standin"]
    METRICS.add(Entry("x-standard", Standard, "", family="x"))
    chosen, skipped = resolve_metrics(None)
    assert [m.name for m in chosen] == ["x-standard"] and "standard backbone" in skipped["x-standin"]
    chosen, _ = resolve_metrics(["x-standin"])  # asked for by name: it runs
    assert [m.name for m in chosen] == ["x-standin"]


def test_metric_needing_weights_is_skipped_with_the_file_named(monkeypatch, tmp_path):
    monkeypatch.setenv("VM_EVAL_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(METRICS, "_entries", {})
    METRICS.add(Entry("x-fad", "metrics.duration:DurationError", "", weights=("vggish",)))
    chosen, skipped = resolve_metrics(None)
    assert chosen == [] and "vggish" in skipped["x-fad"]
    with pytest.raises(RuntimeError, match="vggish"):
        resolve_metrics(["x-fad"])


def test_backbone_metric_runs_through_the_harness_with_weights_from_the_weights_folder(data_dir, results, tmp_path,
                                                                                          monkeypatch):
    """fad-vggish end to end: weights found in $VM_EVAL_WEIGHTS, backbone identity in the stored aggregate, and a
    different checkpoint gives a different metric identity (so scores never mix)."""
    import torch
    from torchvggish.torchvggish import VGG, make_layers

    isolate_weights(monkeypatch, tmp_path)
    chosen, skipped = resolve_metrics(None)
    assert "fad-vggish" in skipped and "fad-logmel-nonstandard" in {m.name for m in chosen}
    (tmp_path / "weights" / "vggish").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(VGG(make_layers(), postprocess=False).state_dict(), tmp_path / "weights" / "vggish" / "vggish-10086976.pth")
    chosen, skipped = resolve_metrics(None)
    names = {m.name for m in chosen}
    assert "fad-vggish" in names and "fad-logmel-nonstandard" not in names  # the stand-in yields
    out = execute(cfg(data_dir, results, model="ground-truth", metrics=["fad-vggish"]))
    agg = out.aggregates["fad-vggish"]
    assert agg["kind"] == "set" and agg["n"] == out.counts["done"] and agg["mean"] == pytest.approx(0, abs=1e-6)
    assert agg["backbone"]["file"] == "vggish-10086976.pth" and len(agg["backbone"]["sha256"]) == 64
    key = agg["key"]
    torch.manual_seed(1)
    torch.save(VGG(make_layers(), postprocess=False).state_dict(), tmp_path / "weights" / "vggish" / "vggish-10086976.pth")
    (m,) = resolve_metrics(["fad-vggish"])[0]
    assert m.key != key


def test_clip_patch_alignment_metric_wires_through_the_harness(data_dir, results, tmp_path, monkeypatch):
    """VidMusician's own visual signal (b): random CLIP weights from $VM_EVAL_WEIGHTS, two clips (wiring only; the null needs another clip)."""
    import open_clip
    import torch

    from vm_eval.results import format_table, run_summary

    isolate_weights(monkeypatch, tmp_path)
    (tmp_path / "weights" / "clip-vit-b-32").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(open_clip.create_model("ViT-B-32", pretrained=None).state_dict(),
               tmp_path / "weights" / "clip-vit-b-32" / "open_clip_pytorch_model.bin")
    out = execute(cfg(data_dir, results, model="ground-truth", metrics=["beat-visual-f1-clip"], limit=2))
    agg = out.aggregates["beat-visual-f1-clip"]
    assert agg["n"] == 2 and 0.0 <= agg["mean"] <= 1.0 and "beat-visual-f1-clip:vs-other" in out.aggregates
    ident = out.run.meta()["metrics"]["beat-visual-f1-clip"]["inputs"]["video"]
    assert ident["backbone"]["name"] == "clip-vit-b-32" and ident["fps"] == 25.0
    assert "beat-visual-f1-clip" in format_table([run_summary(out.run)])


def register_clip_metric(monkeypatch, name: str, score) -> None:
    """A per-clip test metric `name` whose value is `score(ctx)`, registered for this test only."""
    class ClipMetric:
        info = MetricInfo(name=name, version=1, units="", higher_is_better=None, description="test metric")

        def score(self, audio, sr, ctx):
            return score(ctx)

    monkeypatch.setattr(METRICS, "_entries", dict(METRICS._entries))
    METRICS.add(Entry(name, ClipMetric, "test", family="test"))


def records_by_clip(results, metric: str) -> dict[str, dict]:
    (run,) = RunStore(results).runs()
    return {cid: r for (cid, _), r in run.scores.latest("clip_id", "metric_key").items() if r["metric"] == metric}


def test_a_bug_in_a_metric_fails_its_clip_with_the_traceback_and_the_run_exits_1(data_dir, results, monkeypatch,
                                                                                capsys):
    """A KeyError raised inside a metric is a bug, not "does not apply": the clip's record is failed with the
    traceback's end, the other clips are scored, and `vm-eval run` exits 1 (it used to store 'skipped', exit 0)."""
    bad = load_manifest(data_dir / "demo").split("test")[0].id

    def score(ctx):
        bands = {"low": 1.0}
        return bands["low" if ctx.clip_id != bad else "lwo"]  # a typo on one clip's code path

    register_clip_metric(monkeypatch, "x-typo", score)
    code = main(["run", "--model", "test-noise", "--metrics", "x-typo", "--data", str(data_dir), "--results",
                 str(results), "--workers", "1", "--quiet"])
    assert code == 1 and f"FAILED {bad} [x-typo]: KeyError: 'lwo'" in capsys.readouterr().err
    recs = records_by_clip(results, "x-typo")
    rec = recs.pop(bad)
    assert rec["status"] == "failed" and rec["reason"] == "KeyError: 'lwo'"
    tb = rec["traceback"].splitlines()
    assert 3 <= len(tb) <= TRACEBACK_LINES and tb[-1] == "KeyError: 'lwo'" and "test_scoring.py" in rec["traceback"]
    assert recs and all(r["status"] == "done" and r["value"] == 1.0 for r in recs.values())


def test_a_metric_that_does_not_apply_skips_the_clip_with_the_reason(data_dir, results, monkeypatch):
    bad = load_manifest(data_dir / "demo").split("test")[0].id

    def score(ctx):
        if ctx.clip_id == bad:
            raise DoesNotApply("clip has no lyrics")
        return 1.0

    register_clip_metric(monkeypatch, "x-lyrics", score)
    out = execute(cfg(data_dir, results, metrics=["x-lyrics"]))
    assert out.failed == 0 and out.status == "complete"
    recs = records_by_clip(results, "x-lyrics")
    rec = recs.pop(bad)
    assert rec["status"] == "skipped" and rec["reason"] == "clip has no lyrics" and "traceback" not in rec
    assert recs and all(r["status"] == "done" for r in recs.values())
