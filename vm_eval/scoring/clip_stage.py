"""Per-clip scoring: one record per (clip, metric identity), journalled as soon as it is computed.

A record is current while its metric key and its inputs' fingerprint (content keys of the generated audio, the
reference span, the video span, the donor's audio) are unchanged; anything else is rescored. A metric that
returns sub-scores ({"": f, "vs-shift": d}) stores them in one record; aggregates expand them to `name:suffix`.
"""
from __future__ import annotations

import math
import time

from tqdm import tqdm

from metrics.base import ClipContext, MetricError
from vm_eval.data.manifest import Clip
from vm_eval.media import Audio, resample
from vm_eval.models.api import clip_seed
from vm_eval.scoring.inputs import FeatureProvider
from vm_eval.scoring.resolve import BoundMetric
from vm_eval.store.run import Run

DONE, FAILED, SKIPPED = "done", "failed", "skipped"


def input_keys(m: BoundMetric) -> list[str]:
    if m.inputs:
        return sorted(m.inputs)
    return ["audio", "reference"] if m.info.needs_reference else ["audio"]


def _prepared(audio: Audio, m: BoundMetric) -> Audio:
    a = audio.mono() if m.info.mono else audio
    return resample(a, m.info.sample_rate) if m.info.sample_rate else a


def _values(result) -> tuple[float, dict[str, float]]:
    if isinstance(result, dict):
        if "" not in result:
            raise MetricError("sub-scores must include the main value under the key ''")
        values = {k: float(v) for k, v in result.items()}
    else:
        values = {"": float(result)}
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        raise MetricError(f"non-finite value(s) {bad}")
    return values.pop(""), values


def _compute(m: BoundMetric, clip: Clip, provider: FeatureProvider, ctx: ClipContext):
    if m.inputs:
        feats = {k: provider.features(clip, k, ext) for k, ext in m.inputs.items()}
        return m.metric.score_features(feats, ctx)
    audio = _prepared(provider.generated_audio(clip.id), m)
    if m.info.needs_reference:
        ref = _prepared(provider.reference_audio(clip), m)
        ctx = ClipContext(**{**ctx.__dict__, "reference": ref.samples, "reference_sr": ref.sample_rate})
    return m.metric.score(audio.samples, audio.sample_rate, ctx)


def score_clips(run: Run, selected: list[Clip], gen: dict[str, dict], metrics: list[BoundMetric],
                provider: FeatureProvider, seed: int, progress: bool) -> dict[tuple, dict]:
    """Score every selected clip with output on every per-clip metric it lacks a current record for."""
    scores = run.scores.latest("clip_id", "metric_key")
    clip_metrics = [m for m in metrics if not m.is_set]
    done = [c for c in selected if gen.get(c.id, {}).get("status") == DONE]
    for clip in tqdm(done, desc="score", unit="clip", disable=not progress, leave=False, dynamic_ncols=True):
        ctx = ClipContext(clip.id, clip.duration, clip.category, clip.source, clip.caption, seed=clip_seed(seed, clip.id))
        for m in clip_metrics:
            fp, why = fingerprint(provider, clip, m)
            prior = scores.get((clip.id, m.key))
            if prior is not None and prior.get("inputs_sha") == fp:
                continue
            rec = {"clip_id": clip.id, "metric": m.name, "metric_key": m.key, "inputs_sha": fp,
                   "audio_sha256": gen[clip.id]["audio_sha256"]}
            t0 = time.perf_counter()
            if why is not None:  # e.g. no reference music: not applicable to this clip
                rec.update(status=SKIPPED, reason=why)
            else:
                try:
                    value, subs = _values(_compute(m, clip, provider, ctx))
                    rec.update(status=DONE, value=value, **({"values": subs} if subs else {}))
                except LookupError as e:
                    rec.update(status=SKIPPED, reason=str(e))
                except Exception as e:  # one clip's failure is recorded; the run goes on
                    rec.update(status=FAILED, reason=f"{type(e).__name__}: {e}")
            rec["seconds"] = round(time.perf_counter() - t0, 4)
            run.scores.append(rec)
            scores[(clip.id, m.key)] = rec
    return scores


def fingerprint(provider: FeatureProvider, clip: Clip, m: BoundMetric) -> tuple[str | None, str | None]:
    """(fingerprint of the metric's inputs for this clip, None) or (None, why the clip has no such input)."""
    try:
        return provider.fingerprint(clip, input_keys(m)), None
    except LookupError as e:
        return None, str(e)
