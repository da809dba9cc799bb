"""Everything the leaderboard shows, read once from a results folder into tidy tables (no Streamlit here).

Reads only what commands stored: each run's run.json (identity, status, counts, aggregates, provenance) and
scores.parquet (per-clip scores), the dataset manifests the runs name (clip category and real / AI-generated
source; a manifest that moved leaves its clips "unknown"), ablation groups (results/ablations/*/) and registered
listening-study summaries (results/studies/*.json).

Metric columns are metric identities: a (metric name, identity key) pair, so two backbones or versions of one
metric are two columns, never mixed; a name with one identity in the folder keeps its plain name as label.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vm_eval.store.run import RunStore
from vm_eval.store.schema import RunMetaDamaged
from vm_eval.store.status import Status

RUN_COLUMNS = ["run_id", "label", "model", "family", "trained", "checkpoint", "dataset", "split", "status", "clips",
               "done", "failed", "skipped", "pending", "created", "path", "extra", "skipped_metrics",
               "gen_skips"]
AGG_COLUMNS = ["run_id", "column", "name", "key", "backbone", "units", "higher_is_better", "kind", "standard", "mean",
               "lo", "hi", "n", "missing", "failed_clips", "skip_reasons", "paired_null"]
CATEGORIES = ("promo", "commercial", "compilation", "other")
SOURCES = ("real", "ai-generated")


@dataclass
class Results:
    """The loaded results folder. ``runs``: one row per run (RUN_COLUMNS). ``columns``: one row per metric
    identity (column id, name, key, label, backbone, units, higher_is_better, kind, standard). ``aggregates``:
    stored aggregates per (run_id, column). ``scores``: per-clip scores (run_id, clip_id, column, value).
    ``clips``: (dataset, clip_id) -> category, source, video, start, end, caption."""

    root: Path
    runs: pd.DataFrame
    columns: pd.DataFrame
    aggregates: pd.DataFrame
    scores: pd.DataFrame
    clips: pd.DataFrame
    provenance: dict[str, dict] = field(default_factory=dict)
    ablations: list[dict] = field(default_factory=list)
    studies: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # unreadable files, missing manifests (shown, never fatal)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)  # this load (caches of derived tables key on it)


def column_id(name: str, key: str | None) -> str:
    return f"{name}@{key or 'nokey'}"  # the full key: a prefix could merge two identities


def _checkpoint(meta: dict) -> str:
    cks = meta.get("checkpoints") or []
    if not cks:
        return "-"
    first = cks[0]
    if isinstance(first, dict):
        text = f"{first.get('name') or first.get('role') or 'checkpoint'} {str(first.get('sha256', ''))[:8]}"
    else:
        text = str(first)
    return text + (f" (+{len(cks) - 1})" if len(cks) > 1 else "")


def _backbone(agg: dict) -> str:
    b = agg.get("backbone")
    if not b:
        return ""
    if isinstance(b, dict):
        return f"{b.get('file') or b.get('name', '?')} {str(b.get('sha256', ''))[:8]}".strip()
    return str(b)


def _manifest_clips(paths: set[str], problems: list[str]) -> pd.DataFrame:
    from vm_eval.data.manifest import ManifestError, load_manifest

    rows = []
    for p in sorted(paths):
        try:
            m = load_manifest(p)
        except (ManifestError, OSError) as e:
            problems.append(f"manifest {p} unreadable ({str(e).splitlines()[0]}): its clips show as category "
                            "'unknown'")
            continue
        for c in m.clips:
            rows.append({"dataset": m.name, "clip_id": c.id, "split": c.split, "category": c.category,
                         "source": c.source,
                         "video": str(m.resolve(c.video)), "start": c.start, "end": c.end, "caption": c.caption})
    cols = ["dataset", "clip_id", "split", "category", "source", "video", "start", "end", "caption"]
    return pd.DataFrame(rows, columns=cols).drop_duplicates(["dataset", "clip_id"])


def load_results(root: str | Path) -> Results:
    """Read the results folder (see the module docstring). Never raises for one bad run: it is listed in
    ``problems`` and left out."""
    from studies.results import list_studies
    from vm_eval.ablate.groups import list_groups
    from vm_eval.summary.records import generation_skip_reasons

    root = Path(root)
    problems: list[str] = []
    runs, aggs, score_frames, provenance, manifests = [], [], [], {}, set()
    for run in RunStore(root).runs():
        try:
            meta = run.meta()
            status = run.live_status(meta)
        except RunMetaDamaged as e:
            problems.append(e.report())
            continue
        rid = meta.get("run_id", run.dir.name)
        info = meta.get("model_info", {})
        counts = run.counts(meta, status)
        runs.append({"run_id": rid, "label": info.get("name") or meta.get("model"), "model": meta.get("model"),
                     "family": info.get("family", "unknown"), "trained": bool(info.get("trained", True)),
                     "checkpoint": _checkpoint(meta), "dataset": meta.get("dataset"), "split": meta.get("split"),
                     "status": status.value, "clips": counts.get("clips", meta.get("n_clips", 0)),
                     "done": counts.get("done", 0), "failed": counts.get("failed", 0) + counts.get("score_failed", 0),
                     "skipped": counts.get("skipped", 0), "pending": counts.get("pending", 0),
                     "created": meta.get("created"), "path": str(run.dir), "extra": info.get("extra") or {},
                     "skipped_metrics": meta.get("skipped_metrics") or {},
                     "gen_skips": generation_skip_reasons(run) if counts.get("skipped", 0) else {}})
        provenance[rid] = {k: meta.get(k) for k in ("identity", "code", "packages", "environment", "checkpoints",
                                                     "metrics", "resampler", "last_command", "seed", "created",
                                                     "updated", "timings")}
        if (meta.get("last_command") or {}).get("manifest"):
            manifests.add(meta["last_command"]["manifest"])
        keys = {}
        for name, a in meta.get("aggregates", {}).items():
            cid = column_id(name, a.get("key"))
            keys[(name, a.get("key"))] = cid
            aggs.append({"run_id": rid, "column": cid, "name": name, "key": a.get("key"),
                         "backbone": _backbone(a), "units": a.get("units"),
                         "higher_is_better": a.get("higher_is_better"), "kind": a.get("kind"),
                         "standard": a.get("standard", True), "mean": a.get("mean"), "lo": a.get("lo"),
                         "hi": a.get("hi"), "n": a.get("n", 0), "missing": a.get("missing", 0),
                         "failed_clips": a.get("failed", 0), "skip_reasons": a.get("skip_reasons") or {},
                         "paired_null": a.get("paired_null")})
        table = run.dir / "scores.parquet"
        if table.is_file():
            try:
                s = pd.read_parquet(table, columns=["clip_id", "metric", "metric_key", "status", "value"])
            except Exception as e:  # noqa: BLE001 - a half-written or foreign file must not take the app down
                problems.append(f"{table}: unreadable ({type(e).__name__}); per-clip views leave this run out")
                continue
            s = s[s["status"] == Status.DONE.value]
            col = [keys.get((m, k)) for m, k in zip(s["metric"], s["metric_key"])]
            s = pd.DataFrame({"run_id": rid, "clip_id": s["clip_id"].to_numpy(), "column": col,
                              "value": pd.to_numeric(s["value"], errors="coerce").to_numpy(np.float64)})
            score_frames.append(s[s["column"].notna()])
    runs_df = pd.DataFrame(runs, columns=RUN_COLUMNS)
    agg_df = pd.DataFrame(aggs, columns=AGG_COLUMNS)
    columns = _columns(agg_df)
    scores = (pd.concat(score_frames, ignore_index=True) if score_frames
              else pd.DataFrame(columns=["run_id", "clip_id", "column", "value"]))
    for c in ("run_id", "clip_id", "column"):
        scores[c] = scores[c].astype("category")
    clips = _manifest_clips(manifests, problems)
    studies = list_studies(root)
    problems += [f"study entry {s['file']} unreadable ({s['error']})" for s in studies if "error" in s]
    return Results(root, runs_df, columns, agg_df, scores, clips, provenance,
                   [g for g in list_groups(root) if g.get("report")], [s for s in studies if "error" not in s],
                   problems)


def folder_stamp(root: str | Path) -> tuple:
    """A cheap fingerprint of what load_results reads: per kind of file (run.json, registered study summaries,
    ablation states and reports) its count and newest mtime (ns). Taken on every rerun (a few globs, no reads),
    so a run finished or a study analysed after the app started shows without a reload."""
    root = Path(root)
    out = []
    for pattern in ("*/*/*/*/run.json", "studies/*.json", "ablations/*/ablation.json", "ablations/*/report.json"):
        mtimes = []
        for p in root.glob(pattern):
            try:
                mtimes.append(p.stat().st_mtime_ns)
            except OSError:  # removed between the glob and the stat
                continue
        out.append((len(mtimes), max(mtimes, default=0)))
    return tuple(out)


def is_null_subscore(name: str) -> bool:
    """'m:vs-shift', 'm:vs-other': a score's paired difference against a null, not a metric of its own."""
    return ":vs-" in name


def _columns(agg: pd.DataFrame) -> pd.DataFrame:
    """One row per metric identity; the label is the name, plus the backbone (or key) when the name has several."""
    cols = agg.drop_duplicates("column")[["column", "name", "key", "backbone", "units", "higher_is_better", "kind",
                                           "standard"]].copy()
    cols["base"] = cols["name"].str.split(":", n=1).str[0]  # the metric a sub-score belongs to (columns group by it)
    cols["null"] = cols["name"].map(is_null_subscore).astype(bool)
    many = cols["name"].map(cols["name"].value_counts()) > 1
    suffix = np.where(cols["backbone"].astype(bool), cols["backbone"], cols["key"].fillna("").str[:8])
    cols["label"] = np.where(many, cols["name"] + " [" + suffix + "]", cols["name"])
    arrow = cols["higher_is_better"].map({True: " ↑", False: " ↓"}).fillna("")
    cols["header"] = cols["label"] + arrow
    return cols.sort_values(["base", "name", "label"]).reset_index(drop=True)


def clip_table(res: Results) -> pd.DataFrame:
    """Per-clip scores with the clip's category and source (unknown where the manifest is not readable)."""
    runs = res.runs.set_index("run_id")["dataset"]
    s = res.scores.copy()
    s["dataset"] = s["run_id"].map(runs).astype(str)
    meta = res.clips[["dataset", "clip_id", "category", "source"]]
    out = s.merge(meta, on=["dataset", "clip_id"], how="left")
    out["category"] = out["category"].fillna("unknown")
    out["source"] = out["source"].fillna("unknown")
    return out

