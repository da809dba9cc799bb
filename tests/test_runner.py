"""The runner and run store: complete runs, provenance, resume after interruption, failures, seeding, rescoring."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import testsystems  # noqa: F401  (registers the test systems)
from vm_eval.data.manifest import load_manifest
from vm_eval.media import load_audio
from vm_eval.runner import RunConfig, execute
from vm_eval.store.run import RunLocked, RunStore

METRICS = ["duration-error", "loudness-lufs"]


def cfg(data_dir, results, **kw) -> RunConfig:
    base = dict(model="ground-truth", split="test", dataset="demo", data=data_dir, results=results, progress=False,
                metrics=METRICS)
    base.update(kw)
    return RunConfig(**base)


def test_ground_truth_run_is_complete_with_provenance(data_dir, results):
    out = execute(cfg(data_dir, results))
    manifest = load_manifest(data_dir / "demo")
    test = manifest.split("test")
    no_ref = [c.id for c in test if c.reference is None]
    assert out.status == "complete"
    assert out.counts["done"] == len(test) - len(no_ref) and out.counts["skipped"] == len(no_ref) >= 2
    # the stored audio is the reference span itself
    clip = next(c for c in test if c.reference)
    ref = load_audio(manifest.resolve(clip.reference), start_s=clip.start, end_s=clip.end)
    got = load_audio(out.run.audio_path(clip.id))
    assert got.sample_rate == ref.sample_rate and np.array_equal(got.samples, ref.samples)
    meta = out.run.meta()
    for key in ("code", "packages", "environment", "config", "seed", "checkpoints", "timings", "identity", "metrics",
                "resampler"):
        assert key in meta, key
    assert meta["packages"]["numpy"] and meta["identity"]["manifest_sha256"]
    agg = meta["aggregates"]["duration-error"]
    assert agg["n"] == len(test) - len(no_ref) and agg["missing"] == len(no_ref) and agg["mean"] == pytest.approx(0, abs=1e-4)
    clips = pd.read_parquet(out.run.dir / "clips.parquet")
    assert sorted(clips.clip_id) == sorted(c.id for c in test)
    skipped = clips[clips.status == "skipped"]
    assert all("no reference music" in r for r in skipped.reason)
    scores = pd.read_parquet(out.run.dir / "scores.parquet")
    assert set(scores.metric) == set(METRICS) and (scores.status == "done").all()


def test_identical_command_reuses_run_and_other_seed_makes_new_one(data_dir, results):
    a = execute(cfg(data_dir, results, model="random-retrieval"))
    b = execute(cfg(data_dir, results, model="random-retrieval"))
    c = execute(cfg(data_dir, results, model="random-retrieval", seed=1))
    assert a.run.dir == b.run.dir != c.run.dir
    assert len(list(a.run.generation)) == a.counts["clips"]  # the second command generated nothing


def test_random_retrieval_is_deterministic_and_never_self(data_dir, results):
    out = execute(cfg(data_dir, results, model="random-retrieval"))
    manifest = load_manifest(data_dir / "demo")
    for clip in manifest.split("test"):
        got = load_audio(out.run.audio_path(clip.id))
        assert got.duration_s == pytest.approx(clip.duration, abs=1e-3)
        if clip.reference:
            own = load_audio(manifest.resolve(clip.reference), start_s=clip.start, end_s=clip.end)
            n = min(own.num_samples, got.num_samples)
            assert not np.allclose(own.samples[:, :n], got.samples[:, :n])
    again = execute(cfg(data_dir, results / "other", model="random-retrieval"))
    for clip in manifest.split("test"):
        assert np.array_equal(load_audio(out.run.audio_path(clip.id)).samples,
                              load_audio(again.run.audio_path(clip.id)).samples)


def test_batch_size_does_not_change_audio(data_dir, results):
    one = execute(cfg(data_dir, results / "b1", model="test-noise", batch_size=1, model_args={"seconds": 2.0}))
    four = execute(cfg(data_dir, results / "b4", model="test-noise", batch_size=4, model_args={"seconds": 2.0}))
    ids = [r["clip_id"] for r in one.run.generation]
    assert len(ids) == one.counts["clips"]
    for cid in ids:
        assert np.array_equal(load_audio(one.run.audio_path(cid)).samples, load_audio(four.run.audio_path(cid)).samples)
    a, b = (load_audio(one.run.audio_path(i)).samples for i in ids[:2])
    assert not np.array_equal(a, b)  # clips really have their own streams


def test_limit_leaves_run_partial_then_resumes(data_dir, results, tmp_path, monkeypatch):
    log = tmp_path / "gen.log"
    monkeypatch.setenv("TEST_GEN_LOG", str(log))
    first = execute(cfg(data_dir, results, model="test-noise", limit=3))
    assert first.status == "partial" and first.counts["pending"] == first.counts["clips"] - 3
    assert first.run.meta()["aggregates"]["duration-error"]["missing"] == first.counts["clips"] - 3
    second = execute(cfg(data_dir, results, model="test-noise"))
    assert second.run.dir == first.run.dir and second.status == "complete"
    generated = testsystems.read_lines(log)
    assert len(generated) == len(set(generated)) == second.counts["clips"]  # no clip generated twice


def test_interrupt_resumes_without_redoing_finished_clips(data_dir, results, tmp_path, monkeypatch):
    gen_log, ext_log = tmp_path / "gen.log", tmp_path / "extract.log"
    monkeypatch.setenv("TEST_GEN_LOG", str(gen_log))
    monkeypatch.setenv("TEST_EXTRACT_LOG", str(ext_log))
    c = cfg(data_dir, results, model="test-noise", metrics=["test-rms"])
    from vm_eval.registries import MODELS

    real = MODELS.create("test-noise")
    interrupting = MODELS.create("test-noise", interrupt_after=4)
    monkeypatch.setattr(MODELS, "create", lambda name, **kw: interrupting)
    with pytest.raises(KeyboardInterrupt):
        execute(c)
    run = RunStore(results).runs()[0]
    assert run.status == "interrupted"
    assert len(list(run.generation)) == 4 and not list(run.scores)
    monkeypatch.setattr(MODELS, "create", lambda name, **kw: real)
    out = execute(c)
    assert out.status == "complete"
    generated = testsystems.read_lines(gen_log)
    assert len(generated) == len(set(generated)) == out.counts["clips"]
    assert len(testsystems.read_lines(ext_log)) == out.counts["clips"]
    again = execute(c)  # nothing left to do: no generation, no extraction, same aggregates
    assert len(testsystems.read_lines(gen_log)) == out.counts["clips"]
    assert len(testsystems.read_lines(ext_log)) == out.counts["clips"]
    assert again.aggregates["test-rms"] == out.aggregates["test-rms"]


def test_kill_9_mid_run_resumes(cli_env, tmp_path):
    cli_env["TEST_GEN_LOG"] = str(tmp_path / "gen.log")
    cmd = [sys.executable, "-m", "vm_eval.cli", "run", "--model", "test-noise", "--model-args", "sleep=0.4",
           "--metrics", "duration-error", "--quiet"]
    proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    journal = None
    deadline = time.time() + 120
    while time.time() < deadline:
        hits = list((tmp_path / "results").glob("demo/test/test-noise/*/journal/generation.jsonl"))
        if hits and len(hits[0].read_text().splitlines()) >= 3:
            journal = hits[0]
            break
        time.sleep(0.05)
    assert journal is not None, proc.stderr.read().decode() if proc.poll() is not None else "no progress"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run = RunStore(tmp_path / "results").runs()[0]
    assert run.status == "interrupted"
    done_before = {json.loads(line)["clip_id"] for line in journal.read_text().splitlines() if line.strip()}
    mtimes = {cid: run.audio_path(cid).stat().st_mtime_ns for cid in done_before}
    r = subprocess.run(cmd[:-1] + ["--quiet"], env=cli_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert run.status == "complete"
    generated = testsystems.read_lines(tmp_path / "gen.log")
    assert all(generated.count(cid) == 1 for cid in done_before)  # finished clips were not regenerated
    assert {cid: run.audio_path(cid).stat().st_mtime_ns for cid in done_before} == mtimes


def test_failures_are_recorded_and_retried(data_dir, results):
    manifest = load_manifest(data_dir / "demo")
    bad = manifest.split("test")[1].id
    out = execute(cfg(data_dir, results, model="test-noise", model_args={"fail_on": bad}))
    assert out.status == "complete" and out.counts["failed"] == 1 and out.failed == 1
    rec = out.run.generation.latest("clip_id")[(bad,)]
    assert rec["status"] == "failed" and "upstream crashed" in rec["reason"]
    assert "traceback" not in rec  # an exception the model returned, never raised: it has no frames to show
    assert out.aggregates["duration-error"]["missing"] == 1


def test_a_raised_failure_keeps_its_traceback_and_the_cli_shows_one(data_dir, results, capsys):
    from vm_eval.commands import _print_failures

    bad = load_manifest(data_dir / "demo").split("test")[0].id
    out = execute(cfg(data_dir, results, model="test-noise", model_args={"raise_on": bad}, limit=2, batch_size=1))
    recs = out.run.generation.latest("clip_id")
    assert recs[(bad,)]["reason"] == f"ZeroDivisionError: step 3 of {bad} divided by zero"
    tb = recs[(bad,)]["traceback"]
    assert "_decode_step_that_breaks" in tb and "testsystems.py" in tb  # where it was raised
    assert tb.splitlines()[-1] == recs[(bad,)]["reason"]
    assert [r["status"] for r in recs.values()].count("done") == 1  # batches of one: the other clip is unharmed
    _print_failures(out.run)
    err = capsys.readouterr().err
    assert f"FAILED {bad}: ZeroDivisionError" in err and f"traceback of {bad}" in err
    assert "    " + tb.rstrip().splitlines()[-1] in err  # indented under the list


@pytest.mark.parametrize("bad, words", [("nan", "NaN"), ("empty", "zero samples"), ("type", "expected Audio")])
def test_bad_model_output_fails_the_clip_with_reason(data_dir, results, bad, words):
    out = execute(cfg(data_dir, results, model="test-noise", model_args={"bad": bad}, limit=2))
    recs = list(out.run.generation.latest("clip_id").values())
    assert len(recs) == 2 and all(r["status"] == "failed" and words in r["reason"] for r in recs)
    assert not any(out.run.audio_path(r["clip_id"]).exists() for r in recs)


def test_rescore_keeps_audio_and_feature_cache(data_dir, results, tmp_path, monkeypatch):
    ext_log = tmp_path / "extract.log"
    monkeypatch.setenv("TEST_EXTRACT_LOG", str(ext_log))
    c = cfg(data_dir, results, model="test-noise", metrics=["test-rms", "duration-error"], limit=3)
    first = execute(c)
    audio_mtime = first.run.audio_path(first.run.generation.latest("clip_id").popitem()[0][0]).stat().st_mtime_ns
    n_scores = len(list(first.run.scores))
    second = execute(RunConfig(**{**c.__dict__, "rescore": True}))
    assert len(list(second.run.scores)) == n_scores  # journal was reset, then every score recomputed
    assert len(testsystems.read_lines(ext_log)) == 3  # features came from the cache
    assert second.aggregates == first.aggregates
    assert first.run.audio_path(first.run.generation.latest("clip_id").popitem()[0][0]).stat().st_mtime_ns == audio_mtime


def test_metric_needing_reference_skips_clips_without_one(data_dir, results):
    out = execute(cfg(data_dir, results, model="ground-truth", metrics=["test-ref-corr"]))
    agg = out.aggregates["test-ref-corr"]
    assert agg["mean"] == pytest.approx(1.0, abs=1e-6) and agg["n"] == out.counts["done"]

    noise = execute(cfg(data_dir, results, model="test-noise", metrics=["test-ref-corr"]))
    no_ref = sum(1 for c in load_manifest(data_dir / "demo").split("test") if c.reference is None)
    assert noise.aggregates["test-ref-corr"]["skipped"] == no_ref
    recs = [r for r in noise.run.scores if r["status"] == "skipped"]
    assert len(recs) == no_ref and all("no reference" in r["reason"] for r in recs)


def test_regenerated_audio_is_rescored_not_reused(data_dir, results, tmp_path, monkeypatch):
    """Scores and features are keyed by audio content: new audio under the same name is scored afresh."""
    ext_log = tmp_path / "extract.log"
    monkeypatch.setenv("TEST_EXTRACT_LOG", str(ext_log))
    c = cfg(data_dir, results, model="test-noise", metrics=["test-rms"], limit=1)
    first = execute(c)
    (cid,), rec = first.run.generation.latest("clip_id").popitem()
    path = first.run.audio_path(cid)
    path.unlink()  # lost audio: the clip is regenerated (same seed, so the same content) and not rescored
    execute(c)
    assert len(testsystems.read_lines(ext_log)) == 1
    from vm_eval.media import Audio, write_wav

    write_wav(path, Audio(np.zeros((1, 16000), np.float32) + 0.5, 16000))  # foreign content under the same name
    out = execute(c)
    assert len(testsystems.read_lines(ext_log)) == 1  # size differs -> regenerated; content as before -> cache hit
    assert out.aggregates["test-rms"]["mean"] == first.aggregates["test-rms"]["mean"]


def test_a_run_in_progress_is_locked(data_dir, results):
    out = execute(cfg(data_dir, results, limit=1))
    with out.run.lock():
        assert out.run.status in ("partial", "running")
        with pytest.raises(RunLocked):
            execute(cfg(data_dir, results, limit=1))


def test_silent_and_clipped_outputs_are_scored_and_flagged(data_dir, results):
    for bad, flag in (("silent", "silent"), ("clipped", "clipped")):
        out = execute(cfg(data_dir, results / bad, model="test-noise", model_args={"bad": bad}, limit=2,
                          metrics=["loudness-lufs"]))
        assert out.counts["done"] == 2 and out.counts[flag] == 2
        assert out.aggregates["loudness-lufs"]["n"] == 2
        assert all(r[flag] for r in out.run.generation)
    silent = RunStore(results / "silent").runs()[0].meta()["aggregates"]["loudness-lufs"]
    assert silent["mean"] == -70.0  # below the BS.1770 absolute gate: reported at the gate


def test_corrupt_reference_fails_only_its_clip_with_the_file_named(data_dir, results, tmp_path):
    import shutil

    from vm_eval.data.manifest import save_manifest

    src = load_manifest(data_dir / "demo")
    copy = tmp_path / "ds"
    shutil.copytree(data_dir / "demo", copy)
    victim = next(c for c in src.split("test") if c.reference)
    (copy / victim.reference).write_bytes(b"RIFF\x00\x00garbage")
    save_manifest(copy / "manifest.jsonl", src.clips)
    out = execute(cfg(data_dir, results, dataset=str(copy / "manifest.jsonl")))
    rec = out.run.generation.latest("clip_id")[(victim.id,)]
    assert rec["status"] == "failed" and victim.reference.split("/")[-1] in rec["reason"]
    assert out.counts["failed"] == 1 and out.counts["done"] >= 5


def test_a_worker_whose_model_loaded_other_checkpoints_is_refused(data_dir, tmp_path):
    """The run is named after the checkpoints describe() saw; an implicit choice that changed before the model was
    built (a newer training finished) must not generate under that name."""
    from vm_eval.data import resolve_dataset
    from vm_eval.errors import UserError
    from vm_eval.runner import generation_worker

    manifest = str(resolve_dataset("demo", data_dir).path)
    args = ("test-noise", {}, {}, manifest, "test", 0, str(tmp_path / "media"))
    assert callable(generation_worker(*args, [["test-noise", None]]))
    with pytest.raises(UserError, match="loaded checkpoints"):
        generation_worker(*args, [["test-noise", "/elsewhere/checkpoint.safetensors"]])
