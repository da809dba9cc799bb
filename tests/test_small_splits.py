"""Small splits (issue 15, part 3): a clip's own alignment scores are stored even when the run has no other clip
to take the "vs-other" null from; only that sub-score is left out, with its reason, and it appears once a donor
exists. Runs the real alignment metrics (madmom beats, PySceneDetect cuts) on demo clips with the clip's own
music (ground-truth), in this process and through the worker path (feature units, then scoring units)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import vm_eval  # noqa: F401  (compat hook before madmom)
from vm_eval.executors.local import LocalExecutor
from vm_eval.runner import RunConfig, execute
from vm_eval.scoring import clip_stage

METRICS = ["beat-visual-f1-cuts", "bhs-cuts-200ms", "bcs-cuts-200ms"]  # one beat and one cut extractor, shared
CLIPS = ["demo-011", "demo-016"]  # the two shortest demo clips with music (6.3 s, 7.1 s), a cut each
NO_DONOR = "no other clip with output in this run to use as the null"


def small_split(data_dir: Path, tmp_path: Path, ids: list[str]) -> Path:
    """A manifest whose test split is the given demo clips (absolute paths: it lives outside the demo folder)."""
    root = data_dir / "demo"
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines() if line.strip()]
    rows = [{**r, "split": "test", "video": str(root / r["video"]), "reference": str(root / r["reference"])}
            for r in rows if r["id"] in ids]
    path = tmp_path / f"split-{len(ids)}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(manifest: Path, results: Path, cache: Path, **kw):
    return execute(RunConfig(model="ground-truth", dataset=str(manifest), results=results, cache=cache,
                             metrics=METRICS, progress=False, **kw))


def records(outcome) -> dict[tuple[str, str], dict]:
    return {(r["clip_id"], r["metric"]): r for r in outcome.run.scores.latest("clip_id", "metric_key").values()}


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("small-splits-cache")  # the clips' features, shared by the tests' runs


@pytest.fixture(scope="module")
def one_clip(data_dir, tmp_path_factory, feature_cache):
    tmp = tmp_path_factory.mktemp("one-clip")
    return run(small_split(data_dir, tmp, CLIPS[:1]), tmp / "results", feature_cache)


def assert_no_donor(aggregates: dict, n: int) -> None:
    """Every metric has its own value and vs-shift on n clips; vs-other on none, with the reason."""
    for name in METRICS:
        main, shift, other = (aggregates[name + s] for s in ("", ":vs-shift", ":vs-other"))
        assert main["n"] == shift["n"] == n and math.isfinite(main["mean"]) and math.isfinite(shift["mean"])
        assert main["skip_reasons"] == shift["skip_reasons"] == {}
        assert other["n"] == 0 and other["skipped"] == n and other["skip_reasons"] == {NO_DONOR: n}
        assert other["paired_null"] == "vs-other" and math.isnan(other["mean"])


def test_one_clip_split_stores_the_clip_scores_and_skips_only_the_other_clip_null(one_clip):
    assert one_clip.status == "complete" and one_clip.failed == 0
    assert_no_donor(one_clip.aggregates, 1)
    for name in METRICS:
        rec = records(one_clip)[(CLIPS[0], name)]
        assert rec["status"] == "done" and set(rec["values"]) == {"vs-shift"}
        assert rec["skipped_subscores"] == {"vs-other": NO_DONOR}
    import pandas as pd

    table = pd.read_parquet(one_clip.run.dir / "scores.parquet").set_index("metric")
    assert table.at["bhs-cuts-200ms:vs-other", "status"] == "skipped"
    assert table.at["bhs-cuts-200ms:vs-other", "reason"] == NO_DONOR
    assert table.at["bhs-cuts-200ms", "status"] == "done"


def test_one_clip_split_on_workers_extracts_the_inputs_it_has(one_clip, data_dir, tmp_path, monkeypatch):
    """The worker path (as with --workers N on a large split): feature units for the clip's audio and video,
    none for the absent donor, and the same records as in this process."""
    class Workers(LocalExecutor):  # one worker, built in this process, but never the driver's own metrics
        def in_process(self, spec, n_units):
            return False

    units, real = [], clip_stage.feature_units

    def spy(*args):
        out = real(*args)
        units.extend(out)
        return out

    monkeypatch.setattr(clip_stage, "feature_units", spy)
    monkeypatch.setattr("vm_eval.runner.get_executor", lambda *a, **k: Workers(1))
    out = run(small_split(data_dir, tmp_path, CLIPS[:1]), tmp_path / "results", tmp_path / "cache")
    assert sorted(u.key.split(":", 1)[0] for u in units) == ["gen", "video"]
    assert out.run.meta()["timings"]["feature_cache"]["misses"] == 2  # beats of the music, cuts of the video
    assert json.dumps(out.aggregates, sort_keys=True) == json.dumps(one_clip.aggregates, sort_keys=True)


def test_two_clip_split_has_every_null_and_a_clip_gains_its_donor(one_clip, data_dir, tmp_path, feature_cache):
    manifest = small_split(data_dir, tmp_path, CLIPS)
    first = run(manifest, tmp_path / "results", feature_cache, limit=1)  # the other clip has no output yet
    assert first.status == "partial"
    assert_no_donor(first.aggregates, 1)
    before = records(first)
    full = run(manifest, tmp_path / "results", feature_cache)
    assert full.status == "complete" and full.failed == 0
    for name in METRICS:
        for s in ("", ":vs-shift", ":vs-other"):
            agg = full.aggregates[name + s]
            assert agg["n"] == 2 and agg["skipped"] == 0 and agg["skip_reasons"] == {} and math.isfinite(agg["mean"])
        # the first clip was rescored once its donor existed: the same own score, now with its vs-other null
        own, after = before[(CLIPS[0], name)], records(full)[(CLIPS[0], name)]
        assert after["inputs_sha"] != own["inputs_sha"] and after["value"] == own["value"]
        assert set(after["values"]) == {"vs-shift", "vs-other"} and "skipped_subscores" not in after
        # one clip's split gives the same own scores as its first run here (same music, same video)
        assert own["value"] == records(one_clip)[(CLIPS[0], name)]["value"]
