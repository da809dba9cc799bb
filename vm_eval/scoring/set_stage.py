"""Set-level scoring (FAD and kin): generated clips' features against a reference set's statistics.

The reference set is the split's own reference music by default, or another manifest's clips
(`--reference-set MANIFEST[:SPLIT]`); either way it is recorded with the score. Reference statistics are cached by
the reference clips' content keys plus the metric identity, so a new system scored against the same reference
set never recomputes them. A set score is reused while the generated audio and the reference set are unchanged.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from vm_eval.progress import progress_bar

from metrics.base import input_kind

from vm_eval.data.manifest import Clip, Manifest, load_manifest
from vm_eval.fsutil import json_sha256
from vm_eval.scoring.inputs import FeatureProvider
from vm_eval.scoring.resolve import BoundMetric
from vm_eval.store.feature_cache import ExtractorId
from vm_eval.store.journal import Journal
from vm_eval.store.run import Run
from vm_eval.store.status import Status



@dataclass
class ReferenceSet:
    name: str  # "<manifest>:<split>" as recorded
    manifest: Manifest
    clips: list[Clip]  # those with reference music

    @classmethod
    def default(cls, manifest: Manifest, split: str) -> "ReferenceSet":
        clips = [c for c in manifest.split(split) if c.reference is not None]
        return cls(f"{manifest.name}:{split}", manifest, clips)

    @classmethod
    def parse(cls, spec: str) -> "ReferenceSet":
        """MANIFEST[:SPLIT]; without a split every clip of the manifest that has reference music."""
        path, _, split = spec.rpartition(":") if ":" in spec and not Path(spec).exists() else (spec, "", "")
        m = load_manifest(path)
        clips = m.split(split) if split else sorted(m.clips, key=lambda c: c.id)
        return cls(f"{m.path}:{split or '*'}", m, [c for c in clips if c.reference is not None])

    def describe(self, provider: FeatureProvider) -> dict:
        keys = [provider.source_key(c, "reference", self.manifest) for c in self.clips]
        return {"name": self.name, "manifest": str(self.manifest.path), "n": len(self.clips),
                "content_sha256": json_sha256(sorted(keys))}


def sets_journal(run: Run) -> Journal:
    return run.sets


def score_sets(run: Run, gen: dict[str, dict], selected: list[Clip], metrics: list[BoundMetric],
               provider: FeatureProvider, reference: ReferenceSet, seed: int, progress: bool) -> dict[str, dict]:
    """One record per set metric (by key); recomputed only when its inputs changed."""
    journal = sets_journal(run)
    records = {k[0]: v for k, v in journal.latest("metric_key").items()}
    done = [c for c in selected if gen.get(c.id, {}).get("status") == Status.DONE]
    set_metrics = [m for m in metrics if m.is_set]
    ref_desc = reference.describe(provider) if any("reference" in m.inputs for m in set_metrics) else None
    for m in set_metrics:
        uses_ref = "reference" in m.inputs
        gen_keys = [k for k in m.inputs if input_kind(k) != "reference"]
        inputs_sha = json_sha256({"gen": sorted(provider.fingerprint(c, gen_keys) for c in done),
                                  "ref": ref_desc if uses_ref else None, "seed": seed})
        prior = records.get(m.key)
        if prior is not None and prior.get("inputs_sha") == inputs_sha:
            continue
        rec = {"metric": m.name, "metric_key": m.key, "inputs_sha": inputs_sha,
               "reference_set": ref_desc if uses_ref else None}
        t0 = time.perf_counter()
        try:
            if len(done) < 2 or (uses_ref and len(reference.clips) < 2):
                raise ValueError(f"needs at least 2 generated and 2 reference clips (have {len(done)} and "
                                 f"{len(reference.clips)})")
            stats = None
            if uses_ref:
                ref_ext = m.inputs["reference"]
                stats_id = ExtractorId(f"refstats-{m.name}", 1, {"metric_key": m.key})

                def ref_stats():
                    feats = [provider.features(c, "reference", ref_ext, reference.manifest)
                             for c in progress_bar(reference.clips, desc=f"{m.name} reference", enabled=progress)]
                    return m.metric.reference_statistics(feats)

                stats = provider.cache.get_or_compute(stats_id, ref_desc["content_sha256"], ref_stats)
            gen_feats = {c.id: {k: provider.features(c, k, m.inputs[k]) for k in gen_keys}
                         for c in progress_bar(done, desc=f"{m.name} generated", enabled=progress)}
            score = m.metric.score_set(gen_feats, stats, seed)
            rec.update(status=Status.DONE, **asdict(score))
        except Exception as e:
            rec.update(status=Status.FAILED, reason=f"{type(e).__name__}: {e}")
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        journal.append(rec)
        records[m.key] = rec
    return records
