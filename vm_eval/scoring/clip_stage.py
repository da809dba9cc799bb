"""Per-clip scoring: one record per (clip, metric identity), journalled as soon as it is computed.

A record is current while its metric key and its inputs' fingerprint (content keys of the generated audio, the
reference span, the video span, the donor's audio) are unchanged; anything else is rescored. A metric that
returns sub-scores ({"": f, "vs-shift": d}) stores them in one record; aggregates expand them to `name:suffix`.
An optional input the clip lacks (metrics.base.optional_inputs: the donor of a one-clip split) is left out of the
fingerprint and of the metric's features; the record keeps the main value and names the sub-scores it fed under
"skipped_subscores" ({suffix: reason}).
"""
from __future__ import annotations

import math
import time
import traceback

from vm_eval.progress import progress_bar

from metrics.base import ClipContext, DoesNotApply, MetricError
from vm_eval.data.manifest import Clip
from vm_eval.executors.base import Unit, WorkerSpec
from vm_eval.executors.local import LocalExecutor
from vm_eval.media import Audio, resample
from vm_eval.models.api import clip_seed
from vm_eval.scoring.inputs import FeatureProvider, extractor_id
from vm_eval.scoring.resolve import BoundMetric
from vm_eval.store.feature_cache import FeatureCache
from vm_eval.store.run import Run
from vm_eval.store.status import Status

MIN_UNITS_PER_WORKER = 4
FEATURES = "__features__"  # marks a feature-extraction payload (never a clip id: ids start with a letter or digit)


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


def _compute(m: BoundMetric, clip: Clip, provider: FeatureProvider, ctx: ClipContext) -> tuple[object, dict]:
    """(the metric's result, {optional input key the clip lacks: why})."""
    if m.inputs:
        present, absent = provider.content_keys(clip, m.inputs, m.optional)
        feats = {k: provider.features(clip, k, m.inputs[k]) for k in present}
        return m.metric.score_features(feats, ctx), absent
    audio = _prepared(provider.generated_audio(clip.id), m)
    if m.info.needs_reference:
        ref = _prepared(provider.reference_audio(clip), m)
        ctx = ClipContext(**{**ctx.__dict__, "reference": ref.samples, "reference_sr": ref.sample_rate})
    return m.metric.score(audio.samples, audio.sample_rate, ctx), {}


TRACEBACK_LINES = 20  # a failed record keeps the end of its traceback: where it was raised, at a bounded size


def traceback_tail(error: BaseException | None = None, lines: int = TRACEBACK_LINES) -> str:
    """The last `lines` lines of the traceback of `error` (default: the exception being handled)."""
    text = traceback.format_exc() if error is None else "".join(traceback.format_exception(error))
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def score_clip(clip: Clip, metrics: list[BoundMetric], provider: FeatureProvider, seed: int,
               fingerprints: dict[str, str | None], reasons: dict[str, str]) -> list[dict]:
    """Score records of one clip for `metrics` (their inputs' fingerprints and not-applicable reasons given)."""
    ctx = ClipContext(clip.id, clip.duration, clip.category, clip.source, clip.caption, seed=clip_seed(seed, clip.id))
    out = []
    for m in metrics:
        rec = {"clip_id": clip.id, "metric": m.name, "metric_key": m.key, "inputs_sha": fingerprints[m.key],
               "audio_sha256": provider.gen[clip.id]["audio_sha256"]}
        t0 = time.perf_counter()
        if m.key in reasons:  # e.g. no reference music: not applicable to this clip
            rec.update(status=Status.SKIPPED, reason=reasons[m.key])
        else:
            try:
                result, absent = _compute(m, clip, provider, ctx)
                value, subs = _values(result)
                skipped = {suffix: why for k, why in absent.items() for suffix in m.optional[k]}
                if set(subs) & set(skipped):  # a value computed without its input would be stored as if it had it
                    raise MetricError(f"returned sub-score(s) {sorted(set(subs) & set(skipped))} without their "
                                      f"input(s) {sorted(absent)}")
                rec.update(status=Status.DONE, value=value, **({"values": subs} if subs else {}),
                           **({"skipped_subscores": skipped} if skipped else {}))
            except DoesNotApply as e:
                rec.update(status=Status.SKIPPED, reason=str(e))
            except Exception as e:  # one clip's failure is recorded with where it came from; the run goes on
                rec.update(status=Status.FAILED, reason=f"{type(e).__name__}: {e}", traceback=traceback_tail())
        rec["seconds"] = round(time.perf_counter() - t0, 4)
        out.append(rec)
    return out


def score_clips(run: Run, selected: list[Clip], gen: dict[str, dict], metrics: list[BoundMetric],
                provider: FeatureProvider, seed: int, progress: bool, executor=None,
                worker: WorkerSpec | None = None) -> dict[tuple, dict]:
    """Score every selected clip with output on every per-clip metric it lacks a current record for.

    One unit of work per clip. Without an executor (or with the in-process local one) the clips are scored here
    with `metrics` and `provider`; otherwise on the executor's workers, built from `worker` (see
    :func:`scoring_worker`). This process alone appends to the journal, so records are the same either way."""
    scores = run.scores.latest("clip_id", "metric_key")
    clip_metrics = [m for m in metrics if not m.is_set]
    by_id = {c.id: c for c in selected}
    units = []
    for clip in (c for c in selected if gen.get(c.id, {}).get("status") == Status.DONE):
        fps, reasons, todo = {}, {}, []
        for m in clip_metrics:
            fp, why = fingerprint(provider, clip, m)
            prior = scores.get((clip.id, m.key))
            if prior is not None and prior.get("inputs_sha") == fp:
                continue
            fps[m.key] = fp
            if why is not None:
                reasons[m.key] = why
            todo.append(m.key)
        if todo:
            units.append(Unit(clip.id, (clip.id, todo, fps, reasons)))
    payloads = {u.key: u.payload for u in units}
    bar = progress_bar(total=len(units), desc="score", unit="clip", enabled=progress)
    # Spawning workers costs seconds (imports, metric backbones): when the executor would score these units here
    # anyway (too few for its workers: see WorkerSpec.min_units), this process scores them with the metrics it
    # already built (same records either way).
    if executor is None or executor.in_process(worker, len(units)):
        by_key = {m.key: m for m in clip_metrics}
        outcomes = LocalExecutor(1).map(WorkerSpec(lambda: _unit_scorer(by_id, by_key, provider, seed)), units)
        remote = False
    else:
        extract_features(executor, worker, feature_units(units, by_id, clip_metrics, provider), progress,
                         provider.cache)
        outcomes = executor.map(worker, units)
        remote = True
    for o in outcomes:
        if o.ok:
            records = _count_cache(o.value, provider.cache) if remote else o.value
        else:  # the worker died on this clip more often than retried: every metric of the clip failed
            _, todo, _, _ = payloads[o.key]
            names = {m.key: m.name for m in clip_metrics}
            # no inputs fingerprint: a dead worker is no verdict on the clip, the next identical command retries it
            records = [{"clip_id": o.key, "metric": names[k], "metric_key": k, "inputs_sha": None,
                        "audio_sha256": gen[o.key]["audio_sha256"], "status": Status.FAILED, "reason": o.error,
                        "seconds": 0.0} for k in todo]
        for rec in records:
            run.scores.append(rec)
            scores[(rec["clip_id"], rec["metric_key"])] = rec
        bar.update(1)
    bar.close()
    return scores


def feature_units(units: list[Unit], by_id: dict[str, Clip], metrics: list[BoundMetric],
                  provider: FeatureProvider) -> list[Unit]:
    """One unit per input file (a clip's generated audio, reference span, video span) whose features some metric
    still needs and the cache lacks: decoded once for all its extractors, and once even when several clips read
    it (a clip's audio is also another clip's null). An optional input the clip lacks (no donor) has no unit."""
    by_key = {m.key: m for m in metrics}
    wanted: dict[str, tuple[str, dict]] = {}  # content key -> (a clip reading it, cache file -> (metric, input))
    for u in units:
        clip_id, keys, _, reasons = u.payload
        for k in (k for k in keys if k not in reasons):  # a reason: the clip lacks a required input
            m = by_key[k]
            for inp, content in provider.content_keys(by_id[clip_id], m.inputs, m.optional)[0].items():
                target = provider.cache.path(extractor_id(m.inputs[inp]), content)
                if not target.is_file():  # one (metric, input) per extractor: metrics sharing one share its file
                    wanted.setdefault(content, (clip_id, {}))[1].setdefault(str(target), (k, inp))
    return [Unit(content, (FEATURES, clip_id, list(pairs.values()))) for content, (clip_id, pairs) in wanted.items()]


def extract_features(executor, worker: WorkerSpec, units: list[Unit], progress: bool, cache: FeatureCache) -> None:
    """Fill the shared feature cache through the executor (failures are left to the scoring units, which
    recompute and record them per clip and metric); the workers' cache hits and misses are added to `cache`'s."""
    bar = progress_bar(total=len(units), desc="features", unit="file", enabled=progress and bool(units))
    for o in executor.map(worker, units):
        if o.ok:
            _count_cache(o.value, cache)
        bar.update(1)
    bar.close()


def _count_cache(value: tuple, cache: FeatureCache):
    """A worker's (result, (hits, misses)) -> result, its feature-cache counts added to the driver's `cache`."""
    result, (hits, misses) = value
    cache.hits += hits
    cache.misses += misses
    return result


def scoring_worker(run_dir: str, manifest_path: str, gen: dict[str, dict], cache_dir: str,
                   donors: dict[str, str], metric_names: list[str], seed: int):
    """Build, in a worker process or Ray actor, what scoring one clip needs (metrics with their backbones, the
    manifest, a feature provider on the shared cache) once; returns the per-unit callable of score_clips."""
    from vm_eval.data.manifest import load_manifest
    from vm_eval.scoring.resolve import resolve_metrics

    metrics, _ = resolve_metrics(metric_names)
    by_key = {m.key: m for m in metrics}
    manifest = load_manifest(manifest_path)
    provider = FeatureProvider(Run(run_dir), manifest, gen, FeatureCache(cache_dir), donors)
    scorer = _unit_scorer(manifest, by_key, provider, seed)

    def unit(payload):
        if payload[0] == FEATURES:  # a feature_units unit: compute into the shared cache
            _, clip_id, pairs = payload
            for key, inp in pairs:
                provider.features(manifest[clip_id], inp, by_key[key].inputs[inp])
            return len(pairs)
        return scorer(payload)

    def score(payload):
        """The unit's result with this unit's feature-cache (hits, misses): the driver records the run's totals."""
        hits, misses = provider.cache.hits, provider.cache.misses
        result = unit(payload)
        return result, (provider.cache.hits - hits, provider.cache.misses - misses)

    return score


def _unit_scorer(clips, by_key: dict[str, BoundMetric], provider: FeatureProvider, seed: int):
    """The callable scoring one clip unit (clip id, metric keys, fingerprints, reasons); `clips[id]` -> Clip."""
    def score(payload) -> list[dict]:
        clip_id, keys, fps, reasons = payload
        missing = [k for k in keys if k not in by_key]
        if missing:
            raise RuntimeError(f"metric identities {missing} differ in this worker (another code or package "
                               "version than the driver's?)")
        return score_clip(clips[clip_id], [by_key[k] for k in keys], provider, seed, fps, reasons)

    return score


def fingerprint(provider: FeatureProvider, clip: Clip, m: BoundMetric) -> tuple[str | None, str | None]:
    """(fingerprint of the metric's inputs for this clip, None) or (None, why the clip has no such input)."""
    try:
        return provider.fingerprint(clip, input_keys(m), m.optional), None
    except DoesNotApply as e:
        return None, str(e)
