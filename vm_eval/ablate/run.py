"""`vm-eval ablate`: train every variant of a grid, run each on the same clips with the same seeds, score them,
and report paired differences against the reference variant.

One ablation group = one folder ``<results>/ablations/<grid>-<preset>-<hash>/``:
``ablation.json`` (grid, preset, data, seeds, signatures, per-variant status, checkpoint and run), the variants'
training folders ``variants/<name>/`` and ``report.json`` / ``report.csv``. The runs themselves live in the
normal run store, so `vm-eval results` and the leaderboard see them. Everything resumes: a trained variant is
not retrained (its training folder says so), a complete run is not regenerated, and the inputs every variant
trains on (EnCodec tokens, CLIP features) come from the shared content-keyed cache, computed once for all.
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from vm_eval import paths
from vm_eval.ablate.groups import ABLATIONS_DIR
from vm_eval.fsutil import atomic_write_json, json_sha256
from vm_eval.store.status import RunStatus


@dataclass
class AblateRequest:
    grid: Path | None = None  # default: the paper's Table 3
    preset: str = "tiny"
    data: str = "demo"
    split: str = "test"
    train_split: str = "train"
    variants: list[str] | None = None
    steps: int | None = None  # per stage; default: the preset's
    metrics: list[str] | None = None
    seed: int = 0
    limit: int | None = None
    results: Path | None = None
    data_dir: Path | None = None
    device: str | None = None
    jobs: int | None = None  # variants at once after the reference (default: see default_jobs)
    progress: bool = True
    executor: str = "local"  # local: worker processes; ray: actors on a Ray cluster (one GPU each when it has GPUs)
    ray_address: str | None = None


@dataclass
class AblationOutcome:
    folder: Path
    report: dict
    table: str
    order: list[str]
    timings: dict = field(default_factory=dict)
    failed: int = 0


def group_folder(req: AblateRequest, grid, manifest_sha: str) -> Path:
    key = json_sha256({"grid": grid.to_dict(), "preset": req.preset, "data": manifest_sha, "split": req.split,
                       "train_split": req.train_split, "steps": req.steps, "seed": req.seed,
                       "metrics": req.metrics, "limit": req.limit})
    return paths.results_dir(req.results) / ABLATIONS_DIR / f"{grid.name}-{req.preset}-{key[:10]}"


def run_ablation(req: AblateRequest) -> AblationOutcome:
    from vm_eval.ablate.grid import check_signatures, load_grid
    from vm_eval.ablate.report import build_report, format_report
    from vm_eval.data import resolve_dataset
    from vm_eval.store.run import RunStore

    full = load_grid(req.grid)
    grid = full.select(req.variants)
    signatures = check_signatures(full, req.preset)  # before any training: a wrong grid costs nothing
    manifest = resolve_dataset(req.data, paths.data_dir(req.data_dir))
    # keyed by the whole grid, not the selection: running more variants later adds them to the same group
    folder = group_folder(req, full, manifest.content_hash(manifest.split(req.split)))
    state_path = folder / "ablation.json"
    state = {"grid": full.to_dict(), "grid_file": str(grid.path), "preset": req.preset, "data": str(manifest.path),
             "split": req.split, "train_split": req.train_split, "seed": req.seed, "steps": req.steps,
             "metrics": req.metrics, "limit": req.limit, "signatures": signatures,
             "status": RunStatus.RUNNING.value, "variants": {}}
    if state_path.is_file():
        import json

        state["variants"] = json.loads(state_path.read_text()).get("variants", {})
    # the reference first (alone: it also fills the shared input cache), then the others, `jobs` at a time
    order = [grid.reference] + [n for n in grid.names if n != grid.reference]
    jobs = default_jobs(req, len(order) - 1)
    print(f"ablation {grid.name} ({len(order)} variants, preset {req.preset}, {jobs} at a time) -> {folder}",
          file=sys.stderr)
    results: dict[str, dict] = {}

    def record(name: str, res: dict) -> None:
        results[name] = res
        state["variants"][name] = res["entry"]
        atomic_write_json(state_path, state)  # after every variant: an interruption loses at most the running ones

    rest = order[1:]
    with _cpu_threads(1 if _on_cpu(req) else None):  # one thread everywhere: results never depend on --jobs
        record(grid.reference, run_variant(req, grid.reference, folder))
        if jobs <= 1 and req.executor == "local":
            for name in rest:
                record(name, run_variant(req, name, folder))
        else:
            from vm_eval.executors import Resources, Unit, WorkerSpec, get_executor

            executor = get_executor(req.executor, jobs if req.executor == "local" or req.jobs else None,
                                    req.ray_address, max_attempts=1)  # a variant that kills its worker is not rerun
            gpus = 1 if req.executor == "ray" and not _on_cpu(req) and executor.gpus() >= 1 else 0
            spec = WorkerSpec(variant_worker, (replace(req, progress=False), folder), Resources(1, gpus), "variant")
            try:
                for o in executor.map(spec, [Unit(n, n) for n in rest]):
                    if not o.ok:
                        raise RuntimeError(f"ablation variant {o.key} failed: {o.error}")
                    record(o.key, o.value)
            finally:
                executor.close()
    store = RunStore(paths.results_dir(req.results))
    runs = {name: store.find(results[name]["entry"]["run"]) for name in order}
    timings = {name: results[name]["entry"]["timings"] for name in order}
    failed = sum(results[name]["failed"] for name in order)
    report = build_report(runs, grid.reference, {v.name: v.label for v in grid.variants}, seed=req.seed)
    atomic_write_json(folder / "report.json", report)
    _write_csv(folder / "report.csv", report)
    done = all(v.get("run_status") == RunStatus.COMPLETE for v in state["variants"].values())
    state["status"] = (RunStatus.COMPLETE if done else RunStatus.PARTIAL).value
    atomic_write_json(state_path, state)
    return AblationOutcome(folder, report, format_report(report, order), order, timings, failed)


def _on_cpu(req: AblateRequest) -> bool:
    import torch

    return (req.device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cpu"


def default_jobs(req: AblateRequest, n_variants: int) -> int:
    """Variants trained and run at once after the reference: one on a GPU machine (one model at a time fills
    it), every core on a CPU-only machine (tiny models use one core each: decoding is Python-bound)."""
    import os

    if req.jobs is not None:
        return max(1, int(req.jobs))
    return max(1, min(os.cpu_count() or 1, n_variants)) if _on_cpu(req) else 1


def variant_worker(req: AblateRequest, folder: Path):
    """Executor worker: trains and runs variants (one unit = one variant name), single-threaded on CPU."""
    if _on_cpu(req):
        _single_threaded()
    return lambda name: run_variant(req, name, folder)


def _single_threaded() -> None:
    """Worker initialiser. On CPU, float reductions depend on the thread count and a changed logit can change a
    sampled token, so every process of an ablation computes with one thread."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)


@contextlib.contextmanager
def _cpu_threads(n: int | None):
    """torch and BLAS limited to ``n`` threads inside the block (None: unchanged); restored afterwards."""
    if n is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)


def run_variant(req: AblateRequest, name: str, folder: Path) -> dict:
    """Train (or reuse) one variant and run it on the split; returns its ablation.json entry and failure count."""
    from vm_eval.ablate.grid import load_grid
    from vm_eval.runner import RunConfig, execute
    from vm_eval.train.command import TrainRequest, run_training

    grid = load_grid(req.grid)
    variant = grid.get(name)
    print(f"== {name}: {variant.label} {variant.overrides or ''}", file=sys.stderr)
    t0 = time.perf_counter()
    train_dir = folder / "variants" / name
    result, _ = run_training(TrainRequest(
        preset=req.preset, data=req.data, split=req.train_split, overrides=variant.overrides, out=train_dir,
        steps=req.steps, results=req.results, data_dir=req.data_dir, device=req.device, progress=req.progress))
    t1 = time.perf_counter()
    outcome = execute(RunConfig(
        model="vidmusician", dataset=req.data, split=req.split, results=req.results, data=req.data_dir,
        model_args={"checkpoint": str(train_dir), "label": f"vidmusician/{grid.name}/{name}"},
        metrics=req.metrics, seed=req.seed, limit=req.limit, progress=req.progress))
    t2 = time.perf_counter()
    entry = {"label": variant.label, "overrides": variant.overrides, "checkpoint": str(result.checkpoint),
             "run_id": outcome.run.dir.name, "run": str(outcome.run.dir), "run_status": outcome.status.value,
             "losses": {s: [v[0], v[-1]] for s, v in result.losses.items() if v},
             "timings": {"train_s": round(t1 - t0, 2), "run_s": round(t2 - t1, 2)}}
    return {"entry": entry, "failed": outcome.failed}


def _write_csv(path: Path, report: dict) -> None:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["variant", "metric", "mean_diff", "lo", "hi", "n", "p", "p_holm", "significant"])
    for v, d in sorted(report["differences"].items()):
        for m, e in sorted(d.items()):
            w.writerow([v, m, e["mean"], e["lo"], e["hi"], e["n"], e["p"], e.get("p_holm", ""),
                        e.get("significant", "")])
    from vm_eval.fsutil import atomic_write_text

    atomic_write_text(path, buf.getvalue())
