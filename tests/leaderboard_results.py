"""Results folders for the leaderboard tests and benchmark.

`make_results`: five real demo runs (seven test clips: every category, real and AI-generated; cheap metrics incl.
a sub-score, a set metric and the FAD stand-in): two references (ground truth, random retrieval), one untrained model
with a failed clip, and two trained systems scored from folders of outputs (`dir:`), one of which has no output
for the two AI-generated clips (so n differs between ranked systems); one ablation group report and one analysed
listening study registered beside them. `write_synthetic`: many runs x many clips written in the run store's
format (run.json + scores.parquet + a manifest), for scale and for cases real runs here cannot make (two
backbones of one metric)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vm_eval.runner import RunConfig, execute

MODELS = ("ground-truth", "random-retrieval", "test-noise")  # the runs the ablation and the study use
SYSTEMS = ("sys-noisy-truth", "sys-tones")  # trained, non-reference: the ranked rows of the summary
METRICS = ["duration-error", "loudness-lufs", "test-rms", "test-av", "test-set-rms", "fad-logmel-nonstandard"]
FAILING_CLIP = "demo-002"


_SHARED: dict[str, tuple[Path, dict]] = {}


def shared_results(data_dir: Path, tmp_path_factory) -> tuple[Path, dict]:
    """make_results once per test session (the AppTest and browser modules read the same folder; neither writes
    results): (results folder, runs)."""
    key = str(data_dir)
    if key not in _SHARED:
        results = tmp_path_factory.mktemp("lb") / "results"
        _SHARED[key] = (results, make_results(data_dir, results))
    return _SHARED[key]


def make_results(data_dir: Path, results: Path) -> dict:
    """Runs by model name (the two output folders by their SYSTEMS name)."""
    import testsystems  # noqa: F401  registers test-noise and the test metrics

    args = {"test-noise": {"fail_on": FAILING_CLIP}}

    def run(model: str):
        return execute(RunConfig(model=model, split="test", dataset="demo", data=data_dir, results=results,
                                 metrics=METRICS, limit=7, model_args=args.get(model, {}), progress=False)).run

    runs = {m: run(m) for m in MODELS}
    for name, folder in _output_folders(data_dir, results.parent / "outputs", runs["ground-truth"]).items():
        runs[name] = run(f"dir:{folder}")
    _ablation(results, runs)
    _study(results, runs)
    return runs


def _output_folders(data_dir: Path, out: Path, truth) -> dict[str, Path]:
    """Two systems' outputs as published systems ship them (<clip id>.wav): the reference music plus noise (only the
    clips that have reference music), and seeded tones as long as each test clip (every clip)."""
    from vm_eval.data.manifest import load_manifest
    from vm_eval.media import load_audio
    from vm_eval.media.audio import Audio, write_wav

    rng = np.random.default_rng(1)
    folders = {name: out / name for name in SYSTEMS}
    for f in folders.values():
        f.mkdir(parents=True, exist_ok=True)
    clips = [c for c in load_manifest(data_dir / "demo").clips if c.split == "test"]
    sr = 16000
    for k, c in enumerate(clips):
        t = np.arange(int(round((c.end - c.start) * sr))) / sr
        write_wav(folders["sys-tones"] / f"{c.id}.wav",
                  Audio((0.2 * np.sin(2 * np.pi * (220 + 40 * k) * t)).astype(np.float32), sr))
        gt = truth.dir / "audio" / f"{c.id}.wav"
        if gt.is_file():
            a = load_audio(gt)
            noisy = a.samples + 0.05 * rng.standard_normal(a.samples.shape).astype(np.float32)
            write_wav(folders["sys-noisy-truth"] / f"{c.id}.wav", Audio(noisy, a.sample_rate))
    return folders


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


def register_synthetic_study(results: Path, study_dir: Path, strength: dict[str, float],
                             run_names: dict[str, str]) -> None:
    """A study summary from the real analysis of seeded synthetic votes, 8 raters x 12 trials, P(a beats b) from
    Bradley-Terry log-strengths `strength`, registered in `results` as the study at `study_dir` whose systems are
    the runs `run_names` (system -> run folder name)."""
    from studies.analysis import AnalysisConfig, report
    from studies.results import register

    rng = np.random.default_rng(0)
    systems = list(strength)
    votes = []
    for r in range(8):
        for t in range(12):
            a, b = rng.choice(systems, 2, replace=False)
            p = 1 / (1 + np.exp(strength[b] - strength[a]))
            votes.append({"rater_id": f"r{r}", "trial_id": f"t{r}-{t}", "clip_id": f"demo-{t % 6:03d}",
                          "question": "overall", "answer": "A" if rng.random() < p else "B", "system_a": a,
                          "system_b": b, "is_catch": False, "catch_expected": None})
    rep = report(votes, AnalysisConfig(resamples=100, splits=20, exclusion={"enabled": False}))
    summary = {**rep.summary, "study": {"dir": str(study_dir), "manifest_sha256": "0" * 64, "systems": run_names}}
    register(results, study_dir, summary)


def _study(results: Path, runs: dict) -> None:
    """The study of the shared results: test-noise > ground-truth > random-retrieval."""
    register_synthetic_study(results, results.parent / "pilot-study",
                             {"test-noise": 1.0, "ground-truth": 0.0, "random-retrieval": -1.0},
                             {m: runs[m].dir.name for m in MODELS})


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
