"""`vm-eval results` as a reader sees it (issue 17): systems as rows, headline metrics as columns within 100
characters, references below a rule, `--metrics` / `--nulls` / `--wide`, strict JSON, run selectors of `compare`.

The results folder is demo-like and written directly in the run store's format (run.json, score journal), as
tests/leaderboard_results.write_synthetic does: the demo's seven systems (references, two untrained models) with
the demo's metric names, sub-scores and skip pattern (three AI-generated clips without reference music), plus two
trained systems so that something is ranked. No model runs: the folder builds in well under a second."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vm_eval.cli import main

CLIPS = [f"demo-{i:03d}" for i in range(10)]
NO_REFERENCE = {"demo-003", "demo-006", "demo-009"}  # the demo's AI-generated clips have no reference music
ALIGN = ["av-align-adaptive", "bcs-cuts-200ms", "beat-align-framediff", "beat-visual-f1-cuts",
         "beat-visual-f1-framediff", "bhs-cuts-200ms"]
# (model, family, trained, level of the alignment scores, clips skipped by design)
SYSTEMS = [
    ("ground-truth", "reference", True, 0.36, NO_REFERENCE),
    ("random-retrieval", "reference", True, 0.07, set()),
    ("beat-sync", "reference", True, 0.36, set()),
    ("anchor-beat-shift", "reference", True, 0.0, NO_REFERENCE),
    ("anchor-other-category", "reference", True, 0.05, NO_REFERENCE),
    ("musicgen-text-tiny-random", "baseline", False, 0.10, {"demo-002", "demo-005", "demo-008"}),
    ("vidmusician-tiny-random", "vidmusician", False, 0.08, set()),
    ("system-strong", "baseline", True, 0.30, set()),
    ("system-weak", "baseline", True, 0.05, {"demo-000"}),  # one clip fewer: ranks use the common 9
]
NOT_RUN = {m: "pretrained weights not found: x (see `vm-eval weights`)"
           for m in ("fad-vggish", "kl-passt-ref-gen-w10s", "clap-caption", "imagebind-score")}


def _key(name: str) -> str:
    return f"{name}-key-0001"


def _agg(values, name: str, units: str, hib, kind: str = "clip", standard: bool = True, n_split: int = 10,
         paired_null=None) -> dict:
    from metrics.stats import bootstrap_mean

    e = bootstrap_mean(np.asarray(values, dtype=float), seed=0)
    return {**e.as_dict(), "missing": n_split - e.n, "failed": 0, "skipped": 0, "skip_reasons": {},
            "key": _key(name.split(":")[0]), "units": units, "higher_is_better": hib, "kind": kind,
            "standard": standard, "backbone": None, "version": 1, "paired_null": paired_null}


def write_demo_like(results: Path, seed: int = 0) -> dict[str, Path]:
    """The demo-like results folder described in the module docstring; {model: run folder}."""
    from vm_eval.store.schema import RunMeta, write_meta

    from vm_eval.data.manifest import Clip, save_manifest

    rng = np.random.default_rng(seed)
    cats = ["promo", "commercial", "compilation", "other"]
    manifest = save_manifest(results.parent / "demo-like-data" / "manifest.jsonl", [
        Clip(id=c, video=f"videos/{c}.mp4", start=0.0, end=5.0, split="test", category=cats[i % 4],
             source="ai-generated" if c in NO_REFERENCE else "real") for i, c in enumerate(CLIPS)])
    out = {}
    for k, (model, family, trained, level, skipped) in enumerate(SYSTEMS):
        run_id = f"{k:02d}{model[:4]}0000000000"[:12]
        d = results / "demo" / "test" / model / run_id
        (d / "journal").mkdir(parents=True)
        done = [c for c in CLIPS if c not in skipped]
        aggregates, score_lines = {}, []
        for name in ALIGN:
            main_v = np.clip(level + rng.normal(0, 0.05, len(done)), 0, 1)
            shift = main_v - np.clip(rng.normal(0.05, 0.05, len(done)), 0, 1)
            other = main_v - np.clip(rng.normal(0.05, 0.05, len(done)), 0, 1)
            aggregates[name] = _agg(main_v, name, "F-measure (0-1)", True)
            aggregates[f"{name}:vs-shift"] = _agg(shift, f"{name}:vs-shift", "F-measure (0-1)", True,
                                                  paired_null="vs-shift")
            aggregates[f"{name}:vs-other"] = _agg(other, f"{name}:vs-other", "F-measure (0-1)", True,
                                                  paired_null="vs-other")
            for c, v, s, o in zip(done, main_v, shift, other):
                score_lines.append({"clip_id": c, "metric": name, "metric_key": _key(name), "status": "done",
                                    "value": float(v), "values": {"vs-shift": float(s), "vs-other": float(o)}})
        for name, units, hib, vals in (("duration-error", "s", False, np.zeros(len(done))),
                                       ("loudness-lufs", "LUFS", None, rng.normal(-17, 0.5, len(done)))):
            aggregates[name] = _agg(vals, name, units, hib)
            score_lines += [{"clip_id": c, "metric": name, "metric_key": _key(name), "status": "done",
                             "value": float(v)} for c, v in zip(done, vals)]
        fad = 0.0 if model == "ground-truth" else 10.0 + 40 * k
        aggregates["fad-logmel-nonstandard"] = {
            "mean": fad, "lo": max(fad - 5, 0.0), "hi": fad + 5, "n": len(done), "missing": 10 - len(done),
            "failed": 0, "key": _key("fad-logmel-nonstandard"), "units": "", "higher_is_better": False, "kind": "set",
            "standard": False, "backbone": None, "version": 1}
        if model == "anchor-other-category":  # a failed set metric: NaN mean and CI, stored as JSON null
            aggregates["fad-logmel-nonstandard"].update(mean=float("nan"), lo=float("nan"), hi=float("nan"), n=0)
        meta = {"run_id": run_id, "model": model, "dataset": "demo", "split": "test", "status": "complete", "seed": 0,
                "n_clips": 10, "model_info": {"name": model, "family": family, "trained": trained},
                "counts": {"clips": 10, "done": len(done), "failed": 0, "skipped": len(skipped), "pending": 0},
                "aggregates": aggregates, "skipped_metrics": NOT_RUN, "checkpoints": [],
                "code": {"version": "0.1.0", "git_sha": "0" * 40, "dirty": False}, "packages": {"numpy": "2"},
                "created": f"2026-01-01T00:00:{k:02d}+00:00", "last_command": {"manifest": str(manifest)},
                "identity": {"dataset": "demo", "split": "test", "model": model, "seed": 0}}
        write_meta(d / "run.json", RunMeta.model_validate(meta))
        (d / "journal" / "scores.jsonl").write_text("".join(json.dumps(x) + "\n" for x in score_lines))
        why = "has no reference music" if skipped == NO_REFERENCE else "has no caption"
        (d / "journal" / "generation.jsonl").write_text("".join(
            json.dumps({"clip_id": c, "status": "skipped" if c in skipped else "done",
                        **({"reason": f"clip {c} {why}"} if c in skipped else {})}) + "\n" for c in CLIPS))
        out[model] = d
    return out


@pytest.fixture
def demo_like(tmp_path) -> Path:
    results = tmp_path / "results"
    write_demo_like(results)
    return results


def results_out(capsys, results: Path, *args: str) -> tuple[int, str, str]:
    rc = main(["results", "--results", str(results), *args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_default_table_fits_100_columns_with_references_apart(demo_like, capsys):
    rc, out, _ = results_out(capsys, demo_like)
    assert rc == 0
    lines = out.splitlines()
    assert max(len(x) for x in lines) <= 100, max(lines, key=len)
    header = next(x for x in lines if x.startswith("system"))
    # headline metrics only: one per family that ran (FAD stand-in, the main beat-to-visual score)
    assert "fad-logmel-nonstandard ↓" in header and "beat-visual-f1-framediff ↑" in header
    assert "loudness" not in header and "vs-shift" not in header
    rule = next(i for i, x in enumerate(lines) if x.startswith("references (never ranked)"))
    above, below = "\n".join(lines[:rule]), "\n".join(lines[rule:rule + 6])
    for ref in ("ground-truth (ceiling)", "random-retrieval (chance)", "anchor-beat-shift (rhythm anchor)"):
        assert ref in below and ref.split()[0] not in above
    assert "vidmusician-tiny-random [untrained]" in above
    ranked = [x for x in lines[:rule] if x.startswith("system-")]
    assert [x.split()[0] for x in ranked] == ["system-strong", "system-weak"]  # sorted by FAD, lower first
    assert ranked[0].split()[1] == "1" and ranked[1].split()[1] == "2"  # rank ranges from the CIs
    untrained = [x for x in lines[:rule] if "[untrained]" in x]
    assert all(x.split()[2] == "-" for x in untrained)  # never ranked
    assert out.count("metric(s) not run here") == 1 and "4 metric(s) not run here" in out
    assert "* = CI entirely better" in out  # the star is explained
    assert "ground-truth, anchor-beat-shift: n=7: 3 clips have no reference music" in out
    assert "more metric(s) stored, not shown" in out and "loudness-lufs" in out


def test_metrics_nulls_and_wide(demo_like, capsys):
    _, out, _ = results_out(capsys, demo_like, "--metrics", "beat-visual-f1-cuts,loudness-lufs", "--nulls")
    header = next(x for x in out.splitlines() if x.startswith("system"))
    assert "beat-visual-f1-cuts ↑" in out and "beat-visual-f1-cuts:vs-shift ↑" in out
    assert "loudness-lufs" in out and "loudness-lufs ↑" not in out and "loudness-lufs ↓" not in out
    assert "fad-logmel" not in header
    assert max(len(x) for x in out.splitlines()) <= 100  # columns beyond the width go to a further block
    _, wide, _ = results_out(capsys, demo_like, "--wide")
    assert wide.splitlines()[0].startswith("metric") and "loudness-lufs (LUFS)" in wide  # runs as columns
    rc, _, err = results_out(capsys, demo_like, "--metrics", "no-such-metric")
    assert rc == 2 and "no stored run has metric 'no-such-metric'" in err
    _, out, _ = results_out(capsys, demo_like, "--sort", "beat-visual-f1-framediff")
    assert out.splitlines()[0].endswith("sorted by beat-visual-f1-framediff")
    rc, _, err = results_out(capsys, demo_like, "--sort", "loudness-lufs")
    assert rc == 2 and "cannot sort by 'loudness-lufs'" in err


def test_json_is_strict(demo_like, capsys):
    def no_constant(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    rc, out, _ = results_out(capsys, demo_like, "--format", "json")
    assert rc == 0
    rows = json.loads(out, parse_constant=no_constant)
    (anchor,) = [r for r in rows if r["model"] == "anchor-other-category"]
    assert anchor["aggregates"]["fad-logmel-nonstandard"]["mean"] is None
    assert {r["family"] for r in rows} == {"reference", "baseline", "vidmusician"}
    from vm_eval.results import format_json

    assert json.loads(format_json([{"x": float("nan"), "y": [float("inf")]}]),
                      parse_constant=no_constant) == [{"x": None, "y": [None]}]


def test_compare_takes_model_names_and_stars_only_directional_metrics(demo_like, capsys):
    rc = main(["compare", "beat-sync", "ground-truth", "--results", str(demo_like)])
    out = capsys.readouterr().out
    assert rc == 0 and "A = beat-sync" in out and "B = ground-truth" in out
    loud = next(x for x in out.splitlines() if x.strip().startswith("loudness-lufs"))
    assert "*" not in loud  # descriptive: never starred
    assert "* = the 95% CI of the difference excludes 0" in out
    rc = main(["compare", "nope", "ground-truth", "--results", str(demo_like)])
    assert rc == 2 and "unknown run 'nope'" in capsys.readouterr().err


def test_model_name_selects_the_newest_complete_run(demo_like):
    from vm_eval.results import resolve_runs
    from vm_eval.store.run import RunStore
    from vm_eval.store.schema import RunMeta, read_meta, write_meta

    store = RunStore(demo_like)
    old = store.find("06")  # vidmusician-tiny-random's run
    newer = old.dir.parent / "zz0000000000"
    newer.mkdir()
    meta = read_meta(old.meta_path).as_dict()
    write_meta(newer / "run.json", RunMeta.model_validate({**meta, "run_id": "zz0000000000",
                                                           "created": "2026-02-01T00:00:00+00:00"}))
    partial = old.dir.parent / "zy0000000000"
    partial.mkdir()
    write_meta(partial / "run.json", RunMeta.model_validate({**meta, "run_id": "zy0000000000", "status": "partial",
                                                             "created": "2026-03-01T00:00:00+00:00"}))
    (run,) = resolve_runs(["vidmusician-tiny-random"], store)
    assert run.dir == newer  # newest complete, not the newer partial one
    assert [r.dir for r in resolve_runs([str(old.dir), "zy"], store)] == [old.dir, partial]


def test_progress_is_plain_lines_off_a_terminal(capsys):
    from vm_eval.progress import LineProgress, progress_bar

    bar = progress_bar(range(20), desc="score", unit="clip")
    assert isinstance(bar, LineProgress)  # pytest's captured stderr is not a terminal
    assert sum(1 for _ in bar) == 20
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert 2 <= len(lines) <= 11 and lines[-1].startswith("score: 20/20 clip (100%)")
    quiet = progress_bar(total=5, desc="x", enabled=False)
    quiet.update(5)
    quiet.close()
    assert capsys.readouterr().err == ""
