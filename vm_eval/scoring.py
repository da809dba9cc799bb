"""Scoring and aggregation of a run: per-clip metric records, then means with bootstrap CIs.

Each score record carries the metric's identity key and the scored audio's sha256; a record counts only while
both match, so a new metric version, a new backbone or regenerated audio is rescored and never mixed in.
Aggregates use the clips that have a score, sorted by clip id; n and the missing count sit beside each one.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from metrics.base import ClipContext, MetricError, MetricInfo
from metrics.stats import bootstrap_mean
from vm_eval.data.manifest import Clip, Manifest
from vm_eval.media import RESAMPLER, Audio, load_audio, resample
from vm_eval.registries import METRICS
from vm_eval.store.feature_cache import ExtractorId, FeatureCache
from vm_eval.store.run import Run

DONE, FAILED, SKIPPED = "done", "failed", "skipped"


@dataclass
class BoundMetric:
    name: str
    metric: object
    info: MetricInfo
    key: str


def resolve_metrics(names: list[str] | None) -> tuple[list[BoundMetric], dict[str, str]]:
    """The metrics to run and, for those that cannot run here, the reason. None = all that can run."""
    chosen, skipped = [], {}
    entries = METRICS.entries() if names is None else [METRICS.get(n) for n in names]
    for entry in entries:
        ok, why = entry.availability()
        if not ok:
            if names is not None:
                raise RuntimeError(f"metric {entry.name} cannot run here: {why}")
            skipped[entry.name] = why
            continue
        try:
            metric = entry.load()()
        except Exception as e:  # a backbone that fails to load (weights missing...) skips only this metric
            if names is not None:
                raise
            skipped[entry.name] = f"{type(e).__name__}: {e}"
            continue
        chosen.append(BoundMetric(entry.name, metric, metric.info, metric.info.key(RESAMPLER)))
    return chosen, skipped


def _prepared(audio: Audio, info: MetricInfo, memo: dict) -> Audio:
    key = (info.sample_rate, info.mono)
    if key not in memo:
        a = audio.mono() if info.mono else audio
        memo[key] = resample(a, info.sample_rate) if info.sample_rate else a
    return memo[key]


def _score_one(m: BoundMetric, audio: Audio, ctx: ClipContext, sha: str, cache: FeatureCache) -> float:
    """A metric with `extract`/`score_features` has its per-audio features cached by content hash."""
    if hasattr(m.metric, "extract"):
        ext = ExtractorId(m.info.name, m.info.version, {**m.info.params, "sr": audio.sample_rate, "mono": m.info.mono,
                                                        "resampler": RESAMPLER})
        feats = cache.get_or_compute(ext, sha, lambda: m.metric.extract(audio.samples, audio.sample_rate))
        return float(m.metric.score_features(feats, ctx))
    return float(m.metric.score(audio.samples, audio.sample_rate, ctx))


def score_stage(run: Run, manifest: Manifest, clips: list[Clip], gen: dict[str, dict], metrics: list[BoundMetric],
                cache_root, progress: bool) -> dict[tuple, dict]:
    """Score every generated clip with every metric it lacks a current score for."""
    from tqdm import tqdm

    cache = FeatureCache(cache_root)
    scores = run.scores.latest("clip_id", "metric_key")

    def current(cid: str, m: BoundMetric) -> bool:
        rec = scores.get((cid, m.key))
        return rec is not None and rec.get("audio_sha256") == gen[cid].get("audio_sha256")

    todo = [c for c in clips if gen.get(c.id, {}).get("status") == DONE and not all(current(c.id, m) for m in metrics)]
    for clip in tqdm(todo, desc="score", unit="clip", disable=not progress, leave=False, dynamic_ncols=True):
        rec = gen[clip.id]
        audio = load_audio(run.dir / rec["audio"])
        ref_path = manifest.resolve(clip.reference)
        reference = None
        memo_gen: dict = {}
        memo_ref: dict = {}
        for m in metrics:
            if current(clip.id, m):
                continue
            out = {"clip_id": clip.id, "metric": m.name, "metric_key": m.key, "audio_sha256": rec["audio_sha256"]}
            t0 = time.perf_counter()
            try:
                a = _prepared(audio, m.info, memo_gen)
                ctx_ref = None
                if m.info.needs_reference:
                    if ref_path is None:
                        raise LookupError("clip has no reference music")
                    if reference is None:
                        reference = load_audio(ref_path, start_s=clip.start, end_s=clip.end)
                    ctx_ref = _prepared(reference, m.info, memo_ref)
                ctx = ClipContext(clip.id, clip.duration, clip.category, clip.source, clip.caption,
                                  ctx_ref.samples if ctx_ref else None, ctx_ref.sample_rate if ctx_ref else None)
                value = _score_one(m, a, ctx, rec["audio_sha256"], cache)
                if not math.isfinite(value):
                    raise MetricError(f"non-finite value {value}")
                out.update(status=DONE, value=value)
            except LookupError as e:
                out.update(status=SKIPPED, reason=str(e))
            except Exception as e:  # one clip's failure is recorded; the run goes on
                out.update(status=FAILED, reason=f"{type(e).__name__}: {e}")
            out["seconds"] = round(time.perf_counter() - t0, 4)
            run.scores.append(out)
            scores[(clip.id, m.key)] = out
    return scores


def summarise(run: Run, clips: list[Clip], gen: dict[str, dict], scores: dict[tuple, dict],
              metrics: list[BoundMetric]) -> dict:
    """Counts, per-metric aggregates (mean, 95% bootstrap CI, n, missing), and the parquet tables."""
    ids = [c.id for c in clips]
    status = [gen.get(cid, {}).get("status") for cid in ids]
    done_ids = [cid for cid, s in zip(ids, status) if s == DONE]
    counts = {
        "clips": len(ids), DONE: status.count(DONE), FAILED: status.count(FAILED), SKIPPED: status.count(SKIPPED),
        "pending": sum(s is None for s in status),
        "silent": sum(bool(gen[c].get("silent")) for c in done_ids),
        "clipped": sum(bool(gen[c].get("clipped")) for c in done_ids),
        "unscored": 0, "score_failed": 0,
    }
    aggregates, current = {}, []
    for m in metrics:
        vals, n_failed, n_skipped = [], 0, 0
        for cid in done_ids:
            rec = scores.get((cid, m.key))
            if rec is None or rec.get("audio_sha256") != gen[cid].get("audio_sha256"):
                counts["unscored"] += 1
                continue
            current.append(rec)
            if rec["status"] == DONE:
                vals.append(rec["value"])
            elif rec["status"] == FAILED:
                n_failed += 1
            else:
                n_skipped += 1
        counts["score_failed"] += n_failed
        est = bootstrap_mean(np.asarray(vals, dtype=np.float64), seed=0)
        aggregates[m.name] = {**est.as_dict(), "missing": len(ids) - est.n, "failed": n_failed, "skipped": n_skipped,
                              "key": m.key, "units": m.info.units, "higher_is_better": m.info.higher_is_better,
                              "version": m.info.version}
    run.write_table("clips", [gen[c] for c in ids if c in gen])
    run.write_table("scores", current)
    return {
        "counts": counts, "aggregates": aggregates,
        "metrics": {m.name: {**m.info.identity(RESAMPLER), "key": m.key, "description": m.info.description}
                    for m in metrics},
    }
