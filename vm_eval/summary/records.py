"""What the summary reads: one record per run (identity, role, aggregates, per-clip scores), from the run store.

Records are plain dataclasses so that the terminal table, the HTML report and the leaderboard build them from what
each already loaded. A run's per-clip scores are kept only where their metric identity key is the one its
aggregate carries (a re-scored metric's stale rows never mix in).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

# Reference systems' roles: what a reader compares real systems against. Never ranked.
ROLES = {"ground-truth": "ceiling", "random-retrieval": "chance", "beat-sync": "rhythm-only bound",
         "anchor-beat-shift": "anchor (rhythm)", "anchor-other-category": "anchor (content)"}
ROLE_ORDER = ("ceiling", "chance", "rhythm-only bound", "anchor (rhythm)", "anchor (content)", "reference")
PREFERENCE = "preference"  # aggregates "preference:<question>" come from a listening study


def _num(x) -> float | None:
    """A stored number or None (NaN and missing alike)."""
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


@dataclass(frozen=True)
class MetricAgg:
    """One stored aggregate of one run: mean with its 95% CI over ``n`` clips (run.json "aggregates"[name])."""

    mean: float | None
    lo: float | None
    hi: float | None
    n: int
    key: str | None
    units: str = ""
    higher_is_better: bool | None = None  # None: descriptive (e.g. loudness), never ranked or starred
    kind: str = "clip"  # "clip" (per-clip values exist), "set" (one value per run, FAD), "study" (preference)
    standard: bool = True  # False for stand-in backbones that exist so the demo runs offline
    missing: int = 0  # clips of the split without a value
    skip_reasons: dict[str, int] = field(default_factory=dict)  # {reason: clips}
    backbone: str = ""  # "name sha8" of the checkpoint behind the metric, "" without one
    paired_null: str | None = None  # "vs-shift" / "vs-other" for the null sub-scores "name:vs-shift"

    @classmethod
    def from_stored(cls, a: dict) -> MetricAgg:
        b = a.get("backbone")
        if isinstance(b, dict):
            b = f"{b.get('file') or b.get('name') or '?'} {str(b.get('sha256') or '')[:8]}".strip()
        return cls(mean=_num(a.get("mean")), lo=_num(a.get("lo")), hi=_num(a.get("hi")), n=int(a.get("n") or 0),
                   key=a.get("key"), units=a.get("units") or "", higher_is_better=a.get("higher_is_better"),
                   kind=a.get("kind") or "clip", standard=bool(a.get("standard", True)),
                   missing=int(a.get("missing") or 0), skip_reasons=dict(a.get("skip_reasons") or {}),
                   backbone=b or "", paired_null=a.get("paired_null"))


@dataclass(frozen=True)
class RunRecord:
    """One run as the summary sees it. ``clip_scores``: metric name -> (clip ids, values), empty when not loaded."""

    run_id: str
    label: str
    model: str
    family: str
    trained: bool  # False: untrained / random backbone: badged, never ranked, never "best"
    role: str | None  # reference role (ROLES) for family "reference", else None
    dataset: str
    split: str
    status: str
    aggregates: dict[str, MetricAgg]
    clip_scores: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    skipped_metrics: dict[str, str] = field(default_factory=dict)
    skip_reasons: dict[str, int] = field(default_factory=dict)  # why clips were skipped at generation: {reason: n}

    @property
    def is_reference(self) -> bool:
        return self.family == "reference"

    @property
    def ranked(self) -> bool:
        """Takes part in ranks and "best": a trained, non-reference system."""
        return self.trained and not self.is_reference

    @classmethod
    def from_summary(cls, row: dict, clip_scores: dict | None = None, model_info: dict | None = None) -> RunRecord:
        """From a `vm_eval.results.run_summary` row (the dict `vm-eval results --format json` prints)."""
        family = row.get("family") or (model_info or {}).get("family") or "unknown"
        model = row.get("model") or "?"
        return cls(run_id=row["run_id"], label=row.get("label") or model, model=model, family=family,
                   trained=bool(row.get("trained", True)),
                   role=reference_role(model, family, (model_info or {}).get("extra")),
                   dataset=str(row.get("dataset")), split=str(row.get("split")), status=str(row.get("status")),
                   aggregates={k: MetricAgg.from_stored(a) for k, a in (row.get("aggregates") or {}).items()},
                   clip_scores=clip_scores or {}, skipped_metrics=dict(row.get("skipped_metrics") or {}),
                   skip_reasons=dict(row.get("skip_reasons") or {}))

    @classmethod
    def from_run(cls, run, with_clips: bool = True) -> RunRecord:
        """From a stored run (vm_eval.store.run.Run); raises RunMetaDamaged for a damaged run.json."""
        from vm_eval.results import run_summary

        meta = run.meta()
        row = run_summary(run)
        info = meta.get("model_info") or {}
        row["family"] = info.get("family") or "unknown"
        row["skip_reasons"] = generation_skip_reasons(run)
        return cls.from_summary(row, run_clip_scores(run) if with_clips else None, info)


def reference_role(model: str, family: str, extra: dict | None = None) -> str | None:
    """The role of a reference system ("ceiling", "chance", ...); None for a system that is not a reference."""
    if family != "reference":
        return None
    if extra and extra.get("reference_role"):
        return str(extra["reference_role"])
    return ROLES.get(model, "reference")


def generation_skip_reasons(run) -> dict[str, int]:
    """{reason: clips} of the clips a run's model skipped by design, the clip id taken out of each reason
    ("clip demo-003 has no reference music" -> "has no reference music"; "no file named demo-003.*" -> "no file
    named <clip>.*")."""
    out: dict[str, int] = {}
    for rec in run.generation.latest("clip_id").values():
        if rec.get("status") == "skipped":
            why = str(rec.get("reason") or "skipped")
            cid = str(rec.get("clip_id"))
            prefix = f"clip {cid} "
            why = why[len(prefix):] if why.startswith(prefix) else why
            why = why.replace(cid, "<clip>")  # "no file named demo-003.* in DIR": one reason for every clip
            out[why] = out.get(why, 0) + 1
    return dict(sorted(out.items()))


def describe_skips(reasons: dict[str, int]) -> str:
    """"3 clips have no reference music; 1 clip ..." from {reason: clips}."""
    parts = []
    for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        if n != 1 and why.startswith("has "):
            why = "have " + why[4:]
        parts.append(f"{n} clip{'s' if n != 1 else ''} {why}")
    return "; ".join(parts)


def run_clip_scores(run) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{metric name: (clip ids, values)} of a run's current per-clip scores, null sub-scores ("m:vs-shift", from
    a record's "values") included: only records whose metric key is the one the run's aggregate carries."""
    from vm_eval.store.status import Status

    keys = {m: a.get("key") for m, a in (run.meta().get("aggregates") or {}).items()}
    per: dict[str, tuple[list, list]] = {}

    def add(metric: str, clip: str, value) -> None:
        v = _num(value)
        if v is not None:
            ids, vals = per.setdefault(metric, ([], []))
            ids.append(clip)
            vals.append(v)

    for rec in run.scores.latest("clip_id", "metric_key").values():
        if rec.get("status") != Status.DONE or keys.get(rec.get("metric")) != rec.get("metric_key"):
            continue
        add(rec["metric"], rec["clip_id"], rec.get("value"))
        for k, v in (rec.get("values") or {}).items():
            if keys.get(f"{rec['metric']}:{k}") == rec["metric_key"]:
                add(f"{rec['metric']}:{k}", rec["clip_id"], v)
    out = {}
    for m, (ids, vals) in per.items():
        order = np.argsort(np.asarray(ids, dtype=str), kind="stable")
        out[m] = (np.asarray(ids, dtype=str)[order], np.asarray(vals, dtype=np.float64)[order])
    return out


def load_records(results_dir: str | Path, with_clips: bool = True, runs: list | None = None):
    """(records, damaged): every stored run (or the given Run objects) as a RunRecord, and the RunMetaDamaged
    errors of runs left out."""
    from vm_eval.store.run import RunStore
    from vm_eval.store.schema import RunMetaDamaged

    records, damaged = [], []
    for r in runs if runs is not None else RunStore(results_dir).runs():
        try:
            records.append(RunRecord.from_run(r, with_clips))
        except RunMetaDamaged as e:
            damaged.append(e)
    return records, damaged


def add_study(records: list[RunRecord], entry: dict, question: str = "overall") -> list[RunRecord]:
    """Records with the study's Bradley-Terry strengths of `question` added as aggregate "preference:<question>".

    `entry` is a registered study (studies.results.list_studies) or {"summary": <analysis/summary.json>}. A system
    maps to a run through the study's own record of which run it used (summary["study"]["systems"]); only a study
    without that record is matched by label.
    Units: BT log-strength (mean 0 over the study's systems); n = the question's votes."""
    s = entry.get("summary", entry)
    qs = (s.get("questions") or {}).get(question)
    if not qs:
        return list(records)
    system_runs = (s.get("study") or {}).get("systems") or {}
    by_run = {}
    for r in qs.get("ranking", []):
        by_run[system_runs.get(r["system"], "")] = r
        by_run.setdefault("label:" + r["system"], r)
    name = f"{PREFERENCE}:{question}"
    key = f"study:{str((s.get('study') or {}).get('manifest_sha256', ''))[:16]}"  # one study version = one identity
    out = []
    for rec in records:
        hit = by_run.get(rec.run_id) if system_runs else (  # by label only when the study names no runs
            by_run.get("label:" + rec.label) or by_run.get("label:" + rec.model))
        if hit is None:
            out.append(rec)
            continue
        agg = MetricAgg(mean=_num(hit.get("strength")), lo=_num(hit.get("ci_lo")), hi=_num(hit.get("ci_hi")),
                        n=int(qs.get("votes") or 0), key=key,
                        units="BT log-strength", higher_is_better=True, kind="study")
        out.append(replace(rec, aggregates={**rec.aggregates, name: agg}))
    return out
