"""Results folders for the leaderboard tests and benchmark.

`make_results`: three real demo runs (seven test clips: every category, real and AI-generated; cheap metrics incl.
a sub-score and a set metric; one untrained model with a failed clip), one ablation group report and one analysed
listening study registered beside them. `write_synthetic`: many runs x many clips written in the run store's
format (run.json + scores.parquet + a manifest), for scale and for cases real runs here cannot make (two
backbones of one metric)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vm_eval.runner import RunConfig, execute

MODELS = ("ground-truth", "random-retrieval", "test-noise")
METRICS = ["duration-error", "loudness-lufs", "test-rms", "test-av", "test-set-rms"]
FAILING_CLIP = "demo-002"


def make_results(data_dir: Path, results: Path) -> dict:
    import testsystems  # noqa: F401  registers test-noise and the test metrics

    args = {"test-noise": {"fail_on": FAILING_CLIP}}
    runs = {m: execute(RunConfig(model=m, split="test", dataset="demo", data=data_dir, results=results,
                                 metrics=METRICS, limit=7, model_args=args.get(m, {}), progress=False)).run
            for m in MODELS}
    _ablation(results, runs)
    _study(results, runs)
    return runs


def _ablation(results: Path, runs: dict) -> None:
    """An ablation group as `vm-eval ablate` stores it, with a report made by the real report builder."""
    from vm_eval.ablate.report import build_report

    folder = results / "ablations" / "lb-test-tiny-0000"
    folder.mkdir(parents=True)
    variants = {"full": runs["ground-truth"], "no-rhythm": runs["test-noise"], "no-video": runs["random-retrieval"]}
    report = build_report(variants, "full", {v: v for v in variants})
    (folder / "ablation.json").write_text(json.dumps({"grid": {"name": "lb-test"}, "preset": "tiny",
                                                      "status": "complete", "variants": list(variants)}))
    (folder / "report.json").write_text(json.dumps(report, default=str))


def _study(results: Path, runs: dict) -> None:
    """A study summary from the real analysis of synthetic votes (test-noise > ground-truth > random-retrieval)."""
    from studies.analysis import AnalysisConfig, report
    from studies.results import register

    rng = np.random.default_rng(0)
    strength = {"test-noise": 1.0, "ground-truth": 0.0, "random-retrieval": -1.0}
    votes = []
    systems = list(strength)
    for r in range(8):
        for t in range(12):
            a, b = rng.choice(systems, 2, replace=False)
            p = 1 / (1 + np.exp(strength[b] - strength[a]))
            votes.append({"rater_id": f"r{r}", "trial_id": f"t{r}-{t}", "clip_id": f"demo-{t % 6:03d}",
                          "question": "overall", "answer": "A" if rng.random() < p else "B", "system_a": a,
                          "system_b": b, "is_catch": False, "catch_expected": None})
    rep = report(votes, AnalysisConfig(resamples=100, splits=20, exclusion={"enabled": False}))
    summary = {**rep.summary, "study": {"dir": str(results / "pilot-study"), "manifest_sha256": "0" * 64,
                                        "systems": {m: runs[m].dir.name for m in MODELS}}}
    register(results, results.parent / "pilot-study", summary)


def write_synthetic(results: Path, runs: int, clips: int, seed: int = 0, metrics: int = 8) -> None:
    """`runs` runs of `clips` clips each on one synthetic dataset, `metrics` per-clip metrics (the first one in
    two backbone versions: two identities under one name), stored as the runner stores them."""
    import pandas as pd

    from vm_eval.data.manifest import Clip, save_manifest
    from vm_eval.store.schema import RunMeta, write_meta

    rng = np.random.default_rng(seed)
    cats = ["promo", "commercial", "compilation", "other"]
    ids = [f"syn-{i:05d}" for i in range(clips)]
    manifest = save_manifest(results.parent / "synthetic-data" / "manifest.jsonl", [
        Clip(id=c, video=f"videos/{c}.mp4", start=0.0, end=10.0, split="test", category=cats[i % 4],
             source="ai-generated" if i % 5 == 0 else "real") for i, c in enumerate(ids)])
    names = [("metric-0", "backbone-a"), ("metric-0", "backbone-b")] + [(f"metric-{k}", None) for k in range(1, metrics)]
    for r in range(runs):
        run_id = f"20260101-000000-synth{r:03d}"
        d = results / "synthetic" / "test" / f"model-{r % 7}" / run_id
        d.mkdir(parents=True)
        values = rng.normal(r / runs, 1.0, size=(len(names), clips))
        aggregates, rows = {}, []
        for k, (name, backbone) in enumerate(names):
            key = f"{name}-{backbone or 'plain'}-key"
            if backbone == "backbone-b" and r % 2 == 0:
                continue  # half the runs scored metric-0 with backbone a, half with b: never one column
            if backbone == "backbone-a" and r % 2 == 1:
                continue
            v = values[k]
            aggregates[name] = {"mean": float(v.mean()), "lo": float(v.mean() - 0.1), "hi": float(v.mean() + 0.1),
                                 "n": clips, "missing": 0, "failed": 0, "key": key, "units": "", "kind": "clip",
                                 "higher_is_better": True, "standard": True,
                                 "backbone": {"name": backbone, "sha256": "ab" * 32} if backbone else None}
            rows.append(pd.DataFrame({"clip_id": ids, "metric": name, "metric_key": key, "status": "done",
                                      "value": v}))
        meta = {"run_id": run_id, "model": f"model-{r % 7}", "dataset": "synthetic", "split": "test",
                "status": "complete", "seed": 0, "model_info": {"name": f"model-{r % 7}", "family": "baseline",
                                                                  "trained": True},
                "counts": {"clips": clips, "done": clips, "failed": 0, "skipped": 0, "pending": 0},
                "aggregates": aggregates, "last_command": {"manifest": str(manifest)}, "checkpoints": [],
                "identity": {"dataset": "synthetic", "split": "test", "model": f"model-{r % 7}", "seed": 0}}
        write_meta(d / "run.json", RunMeta.model_validate(meta))  # the run store's schema, as the runner writes it
        pd.concat(rows, ignore_index=True).to_parquet(d / "scores.parquet", index=False)
