"""Aggregates of a run: per-clip metrics (and their sub-scores) as means with bootstrap CIs, set metrics as stored.

Aggregates use the clips that have a current score, sorted by clip id; n and the missing count (clips of the split
without a value) sit beside each one, and `skipped` with `skip_reasons` ({reason: clips}): a skipped record counts
for the metric and each of its sub-scores, a sub-score left out alone (the "vs-other" null of a clip without a
donor) for that sub-score. The parquet tables are rewritten here, atomically.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from metrics.stats import bootstrap_mean
from vm_eval.data.manifest import Clip
from vm_eval.scoring.clip_stage import fingerprint
from vm_eval.scoring.inputs import FeatureProvider
from vm_eval.scoring.resolve import BoundMetric
from vm_eval.store.run import Run
from vm_eval.store.status import Status



def _describe(m: BoundMetric) -> dict:
    return {"key": m.key, "units": m.info.units, "higher_is_better": m.info.higher_is_better,
            "version": m.info.version, "kind": m.info.kind, "standard": m.info.standard,
            "backbone": m.info.backbone}


# per-clip flags of a generation record (vm_eval.runner._record_output), counted over done clips in run.json
OUTPUT_FLAGS = ("silent", "clipped", "too_long", "too_short", "low_sample_rate")


def summarise(run: Run, clips: list[Clip], gen: dict[str, dict], scores: dict[tuple, dict], sets: dict[str, dict],
              metrics: list[BoundMetric], provider: FeatureProvider) -> dict:
    """Counts, aggregates and metric identities for run.json; writes clips.parquet and scores.parquet."""
    ids = [c.id for c in clips]
    by_id = {c.id: c for c in clips}
    status = [gen.get(cid, {}).get("status") for cid in ids]
    done_ids = [cid for cid, s in zip(ids, status) if s == Status.DONE]
    matched = [gen[c]["match"] for c in done_ids if gen[c].get("match")]  # how dir: found each clip's file
    counts = {
        "clips": len(ids), **{st.value: status.count(st) for st in Status},
        "pending": sum(s is None for s in status),
        **{flag: sum(bool(gen[c].get(flag)) for c in done_ids) for flag in OUTPUT_FLAGS},
        **{f"matched_{m.replace(' ', '_')}": matched.count(m) for m in sorted(set(matched))},
        "unscored": 0, "score_failed": 0,
    }
    aggregates: dict[str, dict] = {}
    current: list[dict] = []
    for m in [m for m in metrics if not m.is_set]:
        values: dict[str, list[float]] = {"": []}
        skips: dict[str, Counter] = {"": Counter()}  # suffix -> {reason: clips}; "": whole records, every suffix
        n_failed = 0
        for cid in done_ids:
            rec = scores.get((cid, m.key))
            if rec is None or rec.get("inputs_sha") != fingerprint(provider, by_id[cid], m)[0]:
                counts["unscored"] += 1
                continue
            current.append(rec)
            if rec["status"] == Status.DONE:
                values[""].append(rec["value"])
                for k, v in rec.get("values", {}).items():
                    values.setdefault(k, []).append(v)
                for k, why in rec.get("skipped_subscores", {}).items():  # e.g. vs-other without a donor
                    values.setdefault(k, [])
                    skips.setdefault(k, Counter())[why] += 1
            elif rec["status"] == Status.FAILED:
                n_failed += 1
            else:
                skips[""][str(rec.get("reason"))] += 1
        counts["score_failed"] += n_failed
        for suffix, vals in values.items():
            est = bootstrap_mean(np.asarray(vals, dtype=np.float64), seed=0)
            name = f"{m.name}:{suffix}" if suffix else m.name
            desc = _describe(m)
            if suffix:  # sub-scores are paired differences: positive means the main value beats its null
                desc.update(units=m.info.units, higher_is_better=m.info.higher_is_better, paired_null=suffix)
            why = skips[""] + skips.get(suffix, Counter()) if suffix else skips[""]
            aggregates[name] = {**est.as_dict(), "missing": len(ids) - est.n, "failed": n_failed,
                                "skipped": sum(why.values()), "skip_reasons": dict(sorted(why.items())), **desc}
    for m in [m for m in metrics if m.is_set]:
        rec = sets.get(m.key)
        if rec is None:
            counts["unscored"] += 1
            continue
        if rec["status"] != Status.DONE:
            counts["score_failed"] += 1
            aggregates[m.name] = {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0,
                                  "missing": len(ids), "failed": 1, "reason": rec.get("reason"), **_describe(m)}
            continue
        aggregates[m.name] = {"mean": rec["value"], "lo": rec["lo"], "hi": rec["hi"], "n": rec["n"],
                              "confidence": 0.95, "failed": 0, **_describe(m),
                              "missing": len(ids) - rec["n"], "n_reference": rec["n_reference"],
                              "reference_set": rec["reference_set"], "extra": rec.get("extra", {})}
        for cid, v in sorted(rec.get("per_clip", {}).items()):
            current.append({"clip_id": cid, "metric": f"{m.name}:per-clip", "metric_key": m.key,
                            "status": Status.DONE, "value": v})
    table = []
    for r in current:
        row = {k: v for k, v in r.items() if k not in ("values", "skipped_subscores")}
        table.append(row)
        for k, v in r.get("values", {}).items():
            table.append({**row, "metric": f"{r['metric']}:{k}", "value": v})
        for k, why in r.get("skipped_subscores", {}).items():
            table.append({**row, "metric": f"{r['metric']}:{k}", "value": None, "status": Status.SKIPPED,
                          "reason": why})
    run.write_table("clips", [gen[c] for c in ids if c in gen])
    run.write_table("scores", table)
    return {"counts": counts, "aggregates": aggregates, "metrics": {m.name: m.identity() for m in metrics}}
