"""Damaged run stores: a cut-short or wrong-shape run.json is reported, kept aside and rebuilt from the journals;
torn journal lines are reported once; timings and counts survive interrupted commands."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import testsystems  # noqa: F401  (registers the test systems)
from vm_eval.results import list_runs
from vm_eval.runner import RunConfig, execute
from vm_eval.store.run import RunStore
from vm_eval.store.schema import RunMetaDamaged


def cfg(data_dir, results, **kw) -> RunConfig:
    base = dict(model="test-noise", split="test", dataset="demo", data=data_dir, results=results, progress=False,
                metrics=["duration-error"], limit=3)
    return RunConfig(**{**base, **kw})


@pytest.fixture
def two_runs(data_dir, results):
    """Two finished runs in one results folder: (the one to damage, the healthy one)."""
    return execute(cfg(data_dir, results)).run, execute(cfg(data_dir, results, model="ground-truth")).run


def _cut(run) -> str:
    text = run.meta_path.read_text()
    run.meta_path.write_text(text[: len(text) // 2])
    return text


@pytest.mark.parametrize("damage", ["cut", "list"])
def test_results_and_leaderboard_name_a_damaged_run_and_show_the_others(two_runs, results, cli_env, damage):
    from leaderboard.data import load_results

    bad, good = two_runs
    if damage == "cut":
        _cut(bad)
    else:
        bad.meta_path.write_text("[1, 2]")
    with pytest.raises(RunMetaDamaged):
        bad.meta()
    rows, damaged = list_runs(results)
    assert [r["run_id"] for r in rows] == [good.dir.name]
    assert [e.path for e in damaged] == [bad.meta_path]
    r = subprocess.run([sys.executable, "-m", "vm_eval.cli", "results"], env=cli_env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1
    assert f"{bad.meta_path} is damaged" in r.stderr and good.dir.name[:8] in r.stdout
    assert "None" not in r.stdout
    loaded = load_results(results)
    assert list(loaded.runs["run_id"]) == [good.dir.name]
    assert any(str(bad.meta_path) in p and "damaged" in p for p in loaded.problems)


def test_run_keeps_a_damaged_run_json_aside_and_rebuilds_from_the_journals(two_runs, data_dir, results, capsys):
    bad, _ = two_runs
    before = bad.meta()
    journal_lines = bad.generation.path.read_text()
    cut = _cut(bad)
    out = execute(cfg(data_dir, results))
    assert out.run.dir == bad.dir and out.status == "partial"
    err = capsys.readouterr().err
    assert "is damaged" in err and "rebuilt the run from its journals" in err
    kept = list(bad.dir.glob("run.json.damaged-*"))
    assert len(kept) == 1 and kept[0].read_text() == cut[: len(cut) // 2]  # the damaged file, untouched
    after = bad.meta()
    assert bad.generation.path.read_text() == journal_lines  # nothing was regenerated
    assert after["created"] == before["created"]  # salvaged from the cut file
    assert after["aggregates"] == before["aggregates"] and after["counts"] == before["counts"]
    assert after["recovered"][0]["kept_as"] == kept[0].name and "not valid JSON" in after["recovered"][0]["why"]
    execute(cfg(data_dir, results))
    assert "damaged" not in capsys.readouterr().err  # said once: the next command finds a sound run.json


def test_wrong_shape_run_json_is_rebuilt(two_runs, data_dir, results, capsys):
    bad, _ = two_runs
    bad.meta_path.write_text(json.dumps({"run_id": 5, "identity": "x"}))
    out = execute(cfg(data_dir, results))
    assert out.run.dir == bad.dir and "schema error" in capsys.readouterr().err
    assert bad.meta()["identity"]["model"] == "test-noise"


def test_a_torn_journal_line_is_reported_once_and_redone(data_dir, results, capsys):
    first = execute(cfg(data_dir, results))
    lines = first.run.generation.path.read_text().splitlines(keepends=True)
    torn = lines[-1][: len(lines[-1]) // 2]
    first.run.generation.path.write_text("".join(lines[:-1]) + torn)  # a writer killed mid-line
    capsys.readouterr()
    out = execute(cfg(data_dir, results))
    err = capsys.readouterr().err
    assert "1 torn line(s)" in err and str(first.run.generation.path) in err
    assert out.counts["done"] == 3 and len(list(out.run.generation)) == 3  # the torn clip was generated again
    assert (first.run.generation.path.parent / "generation.jsonl.torn").read_text() == torn + "\n"
    execute(cfg(data_dir, results))
    assert "torn" not in capsys.readouterr().err


def test_timings_and_counts_of_an_interrupted_run(data_dir, results, monkeypatch):
    from vm_eval.registries import MODELS
    from vm_eval.results import run_summary

    interrupting = MODELS.create("test-noise", interrupt_after=2, sleep=0.2)
    monkeypatch.setattr(MODELS, "create", lambda name, **kw: interrupting)
    with pytest.raises(KeyboardInterrupt):
        execute(cfg(data_dir, results, limit=None))
    run = RunStore(results).runs()[0]
    summary = run_summary(run)
    assert summary["status"] == "interrupted"
    n = summary["counts"]["clips"]
    assert summary["counts"]["done"] == 2 and summary["counts"]["pending"] == n - 2  # from the journal
    interrupted_s = run.meta()["timings"]["generation_s"]
    assert interrupted_s >= 0.4  # the interrupted command's generation time is kept
    monkeypatch.setattr(MODELS, "create", lambda name, **kw: MODELS.get(name).load()(**kw))
    out = execute(cfg(data_dir, results, limit=None))
    assert out.status == "complete"
    assert run.meta()["timings"]["generation_s"] >= interrupted_s  # and added to by the resume
