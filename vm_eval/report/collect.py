"""What a report shows, gathered from the results folder: summaries per dataset/split, per-category and
real vs AI-generated breakdowns, listening-study tables and provenance. No HTML here (see render.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vm_eval.summary import RunRecord, Summary, add_study, headline_metrics, summarize

BREAKDOWN_AXES = (("category", ("promo", "commercial", "compilation", "other")), ("source", ("real", "ai-generated")))


@dataclass
class Breakdown:
    """Per-clip metric `column_id` of a summary by clip group: {run_id: {group: (mean, lo, hi, n)}}."""

    column_id: str
    axis: str  # "category" or "source"
    groups: list[str]
    values: dict[str, dict[str, tuple[float | None, float | None, float | None, int]]]


@dataclass
class Section:
    """One dataset/split: its summary, forest-plot columns and breakdowns."""

    dataset: str
    split: str
    summary: Summary
    breakdowns: list[Breakdown] = field(default_factory=list)


@dataclass
class ReportData:
    results: Path
    sections: list[Section]
    study: dict | None  # the study summary shown (analysis/summary.json shape), with "source" (its path)
    provenance: list[dict]  # one per run: label, run_id, code, packages, checkpoints, metric backbones
    metric_docs: dict[str, str]  # metric name -> what it measures (registry summary)


def _clip_groups(run_dir: Path, manifest: str | None) -> dict[str, dict[str, str]]:
    """{clip id: {"category": ..., "source": ...}} from the run's manifest ({} when it cannot be read)."""
    from vm_eval.data.manifest import ManifestError, load_manifest

    if not manifest:
        return {}
    try:
        m = load_manifest(manifest)
    except (ManifestError, OSError):
        return {}
    return {c.id: {"category": c.category, "source": c.source} for c in m.clips}


def breakdowns(summary: Summary, clips: dict[str, dict[str, str]], seed: int = 0) -> list[Breakdown]:
    """Breakdowns of every per-clip column by category and by source, over each run's own clips in the group."""
    from metrics.stats import bootstrap_mean

    out = []
    rows = summary.all_rows
    for col in summary.columns:
        if col.kind != "clip":
            continue
        for axis, order in BREAKDOWN_AXES:
            present = [g for g in order if any(c.get(axis) == g for c in clips.values())]
            if len(present) < 2:
                continue
            values: dict[str, dict] = {}
            for row in rows:
                got = row.record.clip_scores.get(col.name)
                a = row.record.aggregates.get(col.name)
                if got is None or a is None or f"{col.name}@{a.key or 'nokey'}" != col.id:
                    continue
                ids, vals = got
                labels = np.array([clips.get(i, {}).get(axis, "unknown") for i in ids])
                per = {}
                for g in present:
                    e = bootstrap_mean(vals[labels == g], seed=seed)
                    clean = lambda x: None if x is None or np.isnan(x) else float(x)  # noqa: E731
                    per[g] = (clean(e.mean), clean(e.lo), clean(e.hi), int(e.n))
                values[row.record.run_id] = per
            if values:
                out.append(Breakdown(col.id, axis, present, values))
    return out


def _provenance(run, record: RunRecord) -> dict:
    meta = run.meta()
    def text(b: dict) -> str:
        return f"{b.get('file') or b.get('name')} sha256 {str(b.get('sha256', ''))[:16]}"

    backbones = {}
    for name, ident in (meta.get("metrics") or {}).items():
        if not isinstance(ident, dict):
            continue
        if ident.get("backbone"):
            backbones[name] = text(ident["backbone"])
        for k, inp in (ident.get("inputs") or {}).items():  # e.g. a FAD's embedding extractor
            if isinstance(inp, dict) and inp.get("backbone"):
                backbones[f"{name} ({k})"] = text(inp["backbone"])
    return {"label": record.label, "run_id": record.run_id, "status": record.status, "code": meta.get("code") or {},
            "packages": meta.get("packages") or {}, "checkpoints": meta.get("checkpoints") or [],
            "backbones": backbones, "environment": meta.get("environment") or {}, "created": meta.get("created"),
            "seed": meta.get("seed")}


def find_study(results: Path, run_ids: set[str], study_dir: Path | None) -> dict | None:
    """The study to show: `study_dir`'s analysis/summary.json, else the newest registered study naming one of
    the runs."""
    import json

    from studies.results import list_studies

    if study_dir is not None:
        p = Path(study_dir)
        f = p / "analysis" / "summary.json" if p.is_dir() else p
        if not f.is_file():
            from vm_eval.errors import UserFileNotFound

            raise UserFileNotFound(f"no study analysis at {f}: run `vm-eval study analyze {p}` first")
        return {"summary": json.loads(f.read_text()), "source": str(f)}
    entries = [s for s in list_studies(results) if "error" not in s
               and set(((s["summary"].get("study") or {}).get("systems") or {}).values()) & run_ids]
    if not entries:
        return None
    e = max(entries, key=lambda s: str(s.get("registered", "")))
    return {"summary": e["summary"], "source": e["file"]}


def collect(results: Path, runs: list | None = None, metrics: list[str] | None = None,
            study_dir: Path | None = None) -> ReportData:
    """Everything the report shows for `runs` (default: every stored run) of the results folder."""
    from vm_eval.registries import METRICS
    from vm_eval.store.run import RunStore
    from vm_eval.store.schema import RunMetaDamaged

    runs = runs if runs is not None else RunStore(results).runs()
    records, by_id = [], {}
    for r in runs:
        try:
            rec = RunRecord.from_run(r)
        except RunMetaDamaged:
            continue
        records.append(rec)
        by_id[rec.run_id] = r
    study = find_study(results, {r.run_id for r in records}, study_dir)
    if study is not None:
        records = add_study(records, study)
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for rec in records:
        groups.setdefault((rec.dataset, rec.split), []).append(rec)
    sections = []
    for (dataset, split), recs in sorted(groups.items()):
        s = summarize(recs, metrics or headline_metrics(recs))
        clips: dict[str, dict[str, str]] = {}
        for rec in recs:
            run = by_id[rec.run_id]
            clips.update(_clip_groups(run.dir, (run.meta().get("last_command") or {}).get("manifest")))
        sections.append(Section(dataset, split, s, breakdowns(s, clips)))
    docs = {}
    for sec in sections:
        for c in sec.summary.columns:
            try:
                docs[c.name] = METRICS.get(c.name).summary
            except Exception:  # noqa: BLE001 - preference:* and plugin metrics have no registry entry here
                docs[c.name] = "listening-test preference: Bradley-Terry log-strength" if c.family == "human" else ""
    prov = [_provenance(by_id[r.run_id], r) for r in records]
    return ReportData(results, sections, study, prov, docs)
