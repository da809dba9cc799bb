"""`vm-eval study create` on tiny demo runs (4 clips; ground-truth skips the AI clip demo-003): files, decoded
stimulus loudness and streams, no system names in stimulus paths, balance summary, catch trials with anchor runs
generated on demand, refusal to overwrite, reuse with --force, interrupted creates, and the user errors."""
from __future__ import annotations

import json
import re
import contextlib
import io
from pathlib import Path

import av
import pyloudnorm
import pytest

import studies.create as create_mod
from studies.create import CreateRequest, StudyCreateError, create_study, system_labels
from studies.layout import COMPLETE_FILE, StudyIncompleteError, verify_study
from vm_eval.cli import main
from vm_eval.media import load_audio
from vm_eval.runner import RunConfig, execute
from vm_eval.store.run import RunStore

MODELS = ("ground-truth", "random-retrieval", "beat-sync")


@pytest.fixture(scope="module")
def store(data_dir, tmp_path_factory) -> dict:
    results = tmp_path_factory.mktemp("study-results")
    runs = {m: execute(RunConfig(model=m, split="test", dataset="demo", data=data_dir, results=results,
                                 metrics=["duration-error"], limit=4, progress=False)).run for m in MODELS}
    return {"results": results, "runs": runs}


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["study", "create", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def study_args(store, out: Path, *extra: str) -> list[str]:
    runs = store["runs"]
    return ["--runs", "ground-truth", str(runs["random-retrieval"].dir), runs["beat-sync"].dir.name[:6],
            "--out", str(out), "--results", str(store["results"]), "--raters", "2", "--trials-per-rater", "6",
            "--catch-rate", "0.25", "--quiet", *extra]


@pytest.fixture(scope="module")
def created(store, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("studies") / "pilot"
    capture = {}
    so, se = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        capture["rc"] = main(["study", "create", *study_args(store, out)])
    capture.update(out=so.getvalue(), err=se.getvalue(), dir=out)
    return capture


def test_create_writes_a_complete_study(created, store):
    assert created["rc"] == 0, created["err"]
    d = created["dir"]
    for name in ("study.yaml", "design.json", "stimuli.json", "systems.json", COMPLETE_FILE):
        assert (d / name).is_file(), name
    man = verify_study(d)
    assert man["summary"]["clips"] == 3 and man["summary"]["dropped_clips"] == 7
    design = json.loads((d / "design.json").read_text())
    assert design["systems"] == list(MODELS) and design["clips"] == ["demo-000", "demo-001", "demo-002"]
    assert len(design["trials"]) == 12
    # the summary: systems, clips, trials, balance, loudness; the drop reason is reported
    assert "balance (max - min counts" in created["out"] and "cell_spread 0" in created["out"]
    assert "catch trials: 3" in created["out"] and "LUFS" in created["out"]
    assert "has no reference music" in created["err"]


def test_catch_trials_with_anchor_runs_generated(created, store):
    d = created["dir"]
    trials = json.loads((d / "design.json").read_text())["trials"]
    catch = [t for t in trials if t["is_catch"]]
    assert len(catch) == 3 and {t["catch_kind"] for t in catch} <= {"rhythm", "content"}
    for t in catch:
        gt = "left" if t["system_left"] == "ground-truth" else "right"
        assert t["expected"] == gt
    systems = json.loads((d / "systems.json").read_text())
    assert systems["anchor-beat-shift"]["role"] == "catch" and systems["ground-truth"]["role"] == "compared"
    assert systems["beat-sync"]["run_id"] == store["runs"]["beat-sync"].dir.name
    for anchor in ("anchor-beat-shift", "anchor-other-category"):
        assert f"catch trials need {anchor} audio" in created["err"]
        assert Path(systems[anchor]["run_path"], "run.json").is_file()


def test_stimuli_are_normalised_muxed_and_anonymous(created, store):
    d = created["dir"]
    stimuli = json.loads((d / "stimuli.json").read_text())["stimuli"]
    trials = json.loads((d / "design.json").read_text())["trials"]
    used = {(t["clip_id"], s) for t in trials for s in (t["system_left"], t["system_right"])}
    assert {(s["clip_id"], s["system"]) for s in stimuli} == used
    secrets = set(MODELS) | {"anchor", "ground", "beat", "random"}
    secrets |= {r.dir.name for r in RunStore(store["results"]).runs()}
    for p in (d / "stimuli").iterdir():
        assert not any(s in str(p.relative_to(d)) for s in secrets), p
    for s in stimuli:
        path = d / s["file"]
        assert re.fullmatch(r"stimuli/[0-9a-f]{64}\.mp4", s["file"])
        with av.open(str(path)) as c:
            assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        audio = load_audio(path)
        lufs = pyloudnorm.Meter(audio.sample_rate).integrated_loudness(audio.samples.T.astype("float64"))
        assert abs(lufs + 23.0) <= 0.5, (s["system"], lufs)
        assert s["loudness"]["output_true_peak_dbtp"] <= -1.0 + 1e-6
        assert abs(s["duration_s"] - audio.duration_s) < 0.1


def test_recreate_is_refused_then_forced_with_cached_stimuli(created, store, capsys):
    d = created["dir"]
    before = (d / "design.json").read_text()
    rc, _, err = cli(capsys, *study_args(store, d))
    assert rc == 2 and "already holds a complete study" in err and "--force" in err
    rc, out, err = cli(capsys, *study_args(store, d, "--force"))
    assert rc == 0, err
    assert "running it now" not in err  # the anchor runs made the first time are found
    stimuli = json.loads((d / "stimuli.json").read_text())["stimuli"]
    assert all(s["cached"] for s in stimuli) and f"({len(stimuli)} reused from cache)" in out
    assert (d / "design.json").read_text() == before
    verify_study(d)


def test_interrupted_create_never_looks_complete(store, tmp_path, monkeypatch):
    out = tmp_path / "s"
    calls = []
    real = create_mod.make_stimulus

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(create_mod, "make_stimulus", flaky)
    req = CreateRequest(runs=["ground-truth", "beat-sync"], out=out, results=store["results"], raters=1,
                        trials_per_rater=3, catch_rate=0.0, progress=False, log=lambda m: None)
    with pytest.raises(KeyboardInterrupt):
        create_study(req)
    assert out.is_dir() and not (out / COMPLETE_FILE).exists()
    with pytest.raises(StudyIncompleteError, match="not a complete study"):
        verify_study(out)
    monkeypatch.setattr(create_mod, "make_stimulus", real)
    result = create_study(req)  # an incomplete folder is simply finished, no --force needed
    assert result.summary["catch_trials"] == 0 and not result.anchors_run
    verify_study(out)
    (out / "design.json").write_text("{}")
    with pytest.raises(StudyIncompleteError, match="changed"):
        verify_study(out)


def test_user_errors(store, data_dir, tmp_path, capsys):
    base = ["--out", str(tmp_path / "x"), "--results", str(store["results"]), "--quiet"]
    rc, _, err = cli(capsys, "--runs", "ground-truth", "nosuchrun", *base)
    assert rc == 2 and "unknown run 'nosuchrun'" in err
    rc, _, err = cli(capsys, "--runs", "ground-truth", "beat-sync", "--catch-rate", "0.9", *base)
    assert rc == 2 and "catch_rate" in err
    rc, _, err = cli(capsys, "--runs", "ground-truth", "beat-sync", "--split", "val", *base)
    assert rc == 2 and "has no stored run on split 'val'" in err
    val = execute(RunConfig(model="ground-truth", split="val", dataset="demo", data=data_dir, results=store["results"],
                            metrics=["duration-error"], limit=1, progress=False)).run
    rc, _, err = cli(capsys, "--runs", val.dir.name, store["runs"]["beat-sync"].dir.name, *base)
    assert rc == 2 and "share one dataset and split" in err and "demo/val" in err and "demo/test" in err
    # a second random-retrieval run: its model name becomes ambiguous, labels disambiguate by run id
    rr2 = execute(RunConfig(model="random-retrieval", split="test", dataset="demo", data=data_dir, seed=1,
                            results=store["results"], metrics=["duration-error"], limit=1, progress=False)).run
    rc, _, err = cli(capsys, "--runs", "ground-truth", "random-retrieval", *base)
    assert rc == 2 and "2 stored runs" in err and rr2.dir.name in err
    rr1 = store["runs"]["random-retrieval"]
    assert system_labels([rr1, rr2, store["runs"]["beat-sync"]]) == [
        f"random-retrieval@{rr1.dir.name[:8]}", f"random-retrieval@{rr2.dir.name[:8]}", "beat-sync"]
    assert not (tmp_path / "x").exists()


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["study", "create", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--runs", "--split", "--out", "--raters", "--trials-per-rater", "--catch-rate", "--allow-ties",
                "--min-listen", "--seed", "--config", "--results", "--force"):
        assert opt in text


def test_trials_with_the_same_music_on_both_sides_warn_and_complete(data_dir, tmp_path):
    """Two ground-truth runs (seeds 0 and 1: two runs, one music) make every trial play the same file on both
    sides; create must warn through its log and still finish the study (manifest written and verified)."""
    results = tmp_path / "results"
    runs = [execute(RunConfig(model="ground-truth", split="test", dataset="demo", data=data_dir, results=results,
                              seed=seed, metrics=["duration-error"], limit=3, progress=False)).run for seed in (0, 1)]
    assert runs[0].dir != runs[1].dir
    logged: list[str] = []
    req = CreateRequest(runs=[r.dir.name for r in runs], out=tmp_path / "same", results=results, raters=1,
                        trials_per_rater=3, catch_rate=0.0, progress=False, log=logged.append)
    result = create_study(req)
    man = verify_study(req.out)
    n = len(result.design.all_trials())
    assert n == 3 and man["summary"]["identical_trials"] == n
    assert len({s["key"] for s in result.stimuli}) == len({s["clip_id"] for s in result.stimuli})  # one per clip
    warnings = [m for m in logged if "play the same music on both sides" in m]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {n} trial(s)")
