"""`vm-eval run`: generate music for every clip of a split, score it, aggregate, store. Resumable at any point.

Flow: manifest -> model.generate per batch -> audio/<clip>.wav + generation journal -> scoring (vm_eval.scoring)
-> aggregates with bootstrap CIs -> run.json. Each finished clip is journalled before the next starts, so a run
killed at any moment resumes on the next identical command without redoing finished clips.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from vm_eval import paths
from vm_eval.data import resolve_dataset
from vm_eval.errors import UserError
from vm_eval.fsutil import file_sha256
from vm_eval.media import audio_stats, write_wav
from vm_eval.models.api import ClipInput, NotApplicable, as_audio
from vm_eval.registries import MODELS
from vm_eval.store import provenance
from vm_eval.executors import Executor, Resources, Unit, WorkerSpec, get_executor
from vm_eval.scoring.clip_stage import MIN_UNITS_PER_WORKER, scoring_worker, traceback_tail
from vm_eval.scoring.inputs import FeatureProvider, donor_ids
from vm_eval.scoring.set_stage import ReferenceSet
from vm_eval.store.feature_cache import FeatureCache
from vm_eval.store.run import Run, RunSpec, RunStore
from vm_eval.store.schema import Timings
from vm_eval.store.status import RunStatus, Status


@dataclass
class RunConfig:
    model: str
    split: str = "test"
    dataset: str = "demo"
    model_args: dict = field(default_factory=dict)
    metrics: list[str] | None = None  # None: every metric that can run here
    results: Path | None = None
    data: Path | None = None
    cache: Path | None = None
    seed: int = 0
    limit: int | None = None
    batch_size: int = 1
    rescore: bool = False
    reference_set: str | None = None  # MANIFEST[:SPLIT] for set metrics; default: the split's own reference music
    progress: bool = True
    executor: str = "local"  # where units of work run (vm_eval.executors); never part of the run's identity
    workers: int | None = None  # local: processes (default 1 here; the CLI uses every core); ray: actors
    ray_address: str | None = None


@dataclass
class RunOutcome:
    run: Run
    status: str
    counts: dict
    aggregates: dict
    skipped_metrics: dict

    @property
    def failed(self) -> int:
        return self.counts.get(Status.FAILED, 0) + self.counts.get("score_failed", 0)


def _progress(total: int, desc: str, enabled: bool):
    from vm_eval.progress import progress_bar

    return progress_bar(total=total, desc=desc, unit="clip", enabled=enabled)


def _finished(rec: dict | None, run: Run) -> bool:
    """A clip needs no more generation if done (with its audio intact) or skipped by design."""
    if rec is None:
        return False
    if rec["status"] == Status.SKIPPED:
        return True
    if rec["status"] != Status.DONE:
        return False  # failed clips are retried by the next identical command
    p = run.audio_path(rec["clip_id"])
    return p.is_file() and p.stat().st_size == rec.get("bytes")


# An output whose length is off its clip's span by more than max(0.1 s, 1 % of the span) is flagged too_long or
# too_short (and scored all the same): 0.1 s absorbs codec frames and container rounding (BGM909's 30 s clips
# report 30.04 s), 1 % the same on long spans. An output below 16 kHz holds nothing above half its rate (4 kHz at
# 8 kHz: half the band VGGish sees at 16 kHz, less of PaSST's 32 and CLAP's 48), so it is flagged low_sample_rate.
LENGTH_TOLERANCE_S = 0.1
LENGTH_TOLERANCE_FRACTION = 0.01
LOW_SAMPLE_RATE_HZ = 16000


def length_tolerance_s(span_s: float) -> float:
    """How far (s) an output's length may be from its clip's span of `span_s` seconds before it is flagged."""
    return max(LENGTH_TOLERANCE_S, LENGTH_TOLERANCE_FRACTION * span_s)


def _record_output(run: Run, clip: ClipInput, out, seconds: float) -> dict:
    """The generation record of one clip's output; the audio is stored as given, flags only describe it. An output
    may carry `record_fields` (e.g. dir:'s source file and match), kept in the record beneath the runner's own."""
    rec = {"clip_id": clip.id, "seed": clip.seed, "seconds": round(seconds, 4)}
    if isinstance(out, NotApplicable):
        return {**rec, "status": Status.SKIPPED, "reason": str(out)}
    if isinstance(out, RemoteFailure):
        tb = {"traceback": out.traceback} if out.traceback else {}
        return {**rec, "status": Status.FAILED, "reason": str(out), **tb}
    try:
        audio = as_audio(out)
        if audio.num_samples == 0:
            raise ValueError("model returned zero samples")
        if not np.all(np.isfinite(audio.samples)):
            raise ValueError("model returned NaN or infinite samples")
    except (TypeError, ValueError) as e:
        return {**rec, "status": Status.FAILED, "reason": str(e)}
    path = write_wav(run.audio_path(clip.id), audio)
    st = audio_stats(audio)
    off_s, tol_s = audio.duration_s - clip.duration_s, length_tolerance_s(clip.duration_s)
    return {
        **getattr(out, "record_fields", {}), **rec, "status": Status.DONE, "audio": str(path.relative_to(run.dir)),
        "audio_sha256": file_sha256(path),
        "bytes": path.stat().st_size, "sample_rate": audio.sample_rate, "channels": audio.channels,
        "duration_s": round(audio.duration_s, 6), "peak_dbfs": round(st.peak_dbfs, 3) if math.isfinite(st.peak_dbfs) else None,
        "rms_dbfs": round(st.rms_dbfs, 3) if math.isfinite(st.rms_dbfs) else None, "silent": st.silent,
        "clipped": st.clipped, "too_long": off_s > tol_s, "too_short": off_s < -tol_s,
        "low_sample_rate": audio.sample_rate < LOW_SAMPLE_RATE_HZ,
    }


def generate_stage(run: Run, label: str, selected: list[ClipInput], batch_size: int, progress: bool,
                   executor: Executor, worker: WorkerSpec) -> dict[str, dict]:
    """Generate every selected clip not yet finished; returns the latest generation record per clip id.

    One unit of work per batch of clips, run by `executor` on workers built from `worker`
    (:func:`generation_worker`, which loads the model once): on this machine one model in this process (the spec is
    `single`), on a Ray cluster one per actor. Outputs come back to this process, which alone writes the audio
    files and the journal. Nothing is loaded when every clip is already finished."""
    records = {k[0]: v for k, v in run.generation.latest("clip_id").items()}
    todo = [c for c in selected if not _finished(records.get(c.id), run)]
    batches = [todo[i : i + max(1, batch_size)] for i in range(0, len(todo), max(1, batch_size))]
    units = [Unit(b[0].id, [c.id for c in b]) for b in batches]
    by_id = {c.id: c for c in todo}
    bar = _progress(len(todo), f"generate {label}", progress)
    payloads = {u.key: u.payload for u in units}
    for o in executor.map(worker, units):
        ids = payloads[o.key]
        results = o.value if o.ok else [(RemoteFailure(o.error), 0.0)] * len(ids)
        for cid, (out, seconds) in zip(ids, results):
            rec = _record_output(run, by_id[cid], out, seconds)
            run.generation.append(rec)
            records[cid] = rec
        bar.update(len(ids))
    bar.close()
    return records


class RemoteFailure(Exception):
    """A failure reported by a worker, already formatted as the record's reason; `traceback` is the end of the
    model's own traceback, as a failed metric's record keeps (None when the worker itself died)."""

    def __init__(self, reason: str, traceback: str | None = None):
        super().__init__(reason)
        self.traceback = traceback

    def __reduce__(self):  # crosses from a worker process to the driver with its traceback
        return (RemoteFailure, (str(self), self.traceback))


def _generate_batch(model, batch: list[ClipInput]) -> list[tuple[object, float]]:
    """(output or failure, seconds per clip) for each clip of a batch; failures as picklable values (a model's
    own exception may carry state that cannot cross to the driver)."""
    t0 = time.perf_counter()
    try:
        outs = list(model.generate(batch))
        if len(outs) != len(batch):
            raise RuntimeError(f"model returned {len(outs)} outputs for {len(batch)} clips")
    except Exception as e:  # the whole batch failed; KeyboardInterrupt propagates
        outs = [e] * len(batch)
    per_clip = (time.perf_counter() - t0) / len(batch)
    out, failures = [], {}
    for o in outs:
        if isinstance(o, NotApplicable):
            o = NotApplicable(str(o))  # plain, whatever subclass or state it carried
        elif isinstance(o, BaseException):
            if id(o) not in failures:  # a batch's one exception is formatted once
                # Only a raised exception has frames; one a model returned for a clip says all in its message.
                tb = traceback_tail(o) if o.__traceback__ else None
                failures[id(o)] = RemoteFailure(f"{type(o).__name__}: {o}", tb)
            o = failures[id(o)]
        out.append((o, per_clip))
    return out


def generation_worker(model: str, model_args: dict, context: dict, manifest_path: str, split: str, seed: int,
                      media_cache: str, checkpoint_paths: list | None = None):
    """Build, on a worker, the model (loaded once) and the split's clip inputs; returns the per-unit callable of
    generate_stage (a unit = a batch of clip ids). `checkpoint_paths`: the (name, path) of each checkpoint the run
    is named after; a model that loaded others (an implicit "newest checkpoint" that changed since) is refused."""
    from vm_eval.data.manifest import load_manifest

    manifest = load_manifest(manifest_path)
    pool = [ClipInput(c, manifest, seed, Path(media_cache)) for c in manifest.split(split)]
    built = MODELS.create(model, **model_args, **context)
    if checkpoint_paths is not None:
        loaded = _checkpoint_paths(built.checkpoints())
        if loaded != checkpoint_paths:
            raise UserError(f"{model} loaded checkpoints {loaded}, not {checkpoint_paths} that this run was "
                               "opened with (did a newer checkpoint appear meanwhile?); run the command again")
    return _batch_runner(built, pool)


def _checkpoint_paths(checkpoints) -> list:
    return [[c.get("name"), c.get("path")] for c in checkpoints]


def _batch_runner(model, pool: list[ClipInput]):
    """unit payload (clip ids) -> _generate_batch results; the model's `prepare(pool)` runs before the first."""
    by_id = {c.id: c for c in pool}
    prepared = []

    def run(ids: list[str]):
        if not prepared and hasattr(model, "prepare"):
            model.prepare(pool)
            prepared.append(True)
        return _generate_batch(model, [by_id[i] for i in ids])

    return run


class _StageClock:
    """Wall time per stage, added to the run's stored timings as each stage ends (also when a command is
    interrupted), so timings sum over every command that worked on the run."""

    def __init__(self, run: Run, stored: dict | None):
        self.run, self.timings = run, Timings.model_validate(stored or {})
        self.stage: str | None = None
        self.t0 = 0.0
        self.last: dict[str, float] = {}

    def start(self, stage: str | None) -> None:
        now = time.perf_counter()
        if self.stage is not None:
            elapsed = now - self.t0
            self.last[self.stage] = elapsed
            setattr(self.timings, self.stage, round(getattr(self.timings, self.stage) + elapsed, 3))
            self.run.update(timings=self.timings.as_dict())
        self.stage, self.t0 = stage, now


def execute(cfg: RunConfig, log=None) -> RunOutcome:
    """Generate and score a split (see the module docstring); `log` takes one-line notices (default stderr)."""
    from vm_eval import scoring
    from vm_eval.models.identity import describe

    results = paths.results_dir(cfg.results)
    manifest = resolve_dataset(cfg.dataset, paths.data_dir(cfg.data))
    clips = manifest.split(cfg.split)
    # models trained by this suite look for their checkpoints under the run's results folder (not part of identity)
    extra = MODELS.get(cfg.model).extra
    context = {"results": results} if extra.get("needs_training") or extra.get("uses_results") else {}
    ident = describe(cfg.model, cfg.model_args, context)  # loads no weights: the model is built where it runs
    checkpoints = tuple(ident.checkpoints)
    spec = RunSpec(
        dataset=manifest.name, split=cfg.split, model=cfg.model, model_args=cfg.model_args, seed=cfg.seed,
        manifest_sha256=manifest.content_hash(clips), checkpoints=checkpoints,
    )
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    config["manifest"] = str(manifest.path)
    run = RunStore(results).open(spec, config, log)
    cache = paths.cache_dir(results, cfg.cache)
    with run.lock():
        run.repair_journals(log)
        meta = run.meta()
        run.update(
            status=RunStatus.RUNNING, dataset=manifest.name, split=cfg.split, model=cfg.model,
            model_info=asdict(ident.info), seed=cfg.seed, checkpoints=list(checkpoints),
            n_clips=len(clips), code=provenance.code_version(), packages=provenance.package_versions(),
            environment=provenance.environment(), last_command=config, updated=provenance.now(),
            created=meta.get("created") or provenance.now(),
        )
        pool = [ClipInput(c, manifest, cfg.seed, cache / "media") for c in clips]
        selected = pool[: cfg.limit] if cfg.limit else pool
        clock = _StageClock(run, meta.get("timings"))
        try:
            metrics, skipped_metrics = scoring.resolve_metrics(cfg.metrics)  # before generating: fail early
            executor = get_executor(cfg.executor, cfg.workers, cfg.ray_address)
            gen_worker = WorkerSpec(generation_worker, (cfg.model, cfg.model_args, context, str(manifest.path),
                                                        cfg.split, cfg.seed, str(cache / "media"),
                                                        _checkpoint_paths(checkpoints)),
                                    Resources(cpus=1, gpus=1 if extra.get("gpu") and executor.gpus() else 0),
                                    name="generate", single=True)
            if ident.model is not None and executor.in_process(gen_worker, len(selected)):
                # describe() had to build the model to learn its identity: generate with that one, not a second
                gen_worker = replace(gen_worker, factory=_batch_runner, args=(ident.model, pool))
            clock.start("generation_s")
            gen = generate_stage(run, ident.info.name, selected, cfg.batch_size, cfg.progress, executor, gen_worker)
            clock.start("scoring_s")
            if cfg.rescore:
                run.scores.reset()
                run.sets.reset()
            provider = FeatureProvider(run, manifest, gen, FeatureCache(cache / "features"),
                                       donor_ids(clips, gen, cfg.seed))
            chosen = [c.clip for c in selected]
            worker = WorkerSpec(scoring_worker, (str(run.dir), str(manifest.path), gen, str(cache / "features"),
                                                 provider.donors, [m.name for m in metrics], cfg.seed),
                                Resources(cpus=1), name="score", min_units=MIN_UNITS_PER_WORKER)
            try:
                scores = scoring.score_clips(run, chosen, gen, metrics, provider, cfg.seed, cfg.progress,
                                             executor, worker)
            finally:
                executor.close()
            reference = (ReferenceSet.parse(cfg.reference_set) if cfg.reference_set
                         else ReferenceSet.default(manifest, cfg.split))
            sets = scoring.score_sets(run, gen, chosen, metrics, provider, reference, cfg.seed, cfg.progress)
            clock.start(None)
        except KeyboardInterrupt:
            clock.start(None)
            run.update(status=RunStatus.INTERRUPTED, updated=provenance.now())
            raise
        timings = {**clock.timings.as_dict(), "last_scoring_s": round(clock.last.get("scoring_s", 0.0), 3),
                   "feature_cache": {"hits": provider.cache.hits, "misses": provider.cache.misses}}
        summary = scoring.summarise(run, clips, gen, scores, sets, metrics, provider)
        complete = summary["counts"]["pending"] == 0 and summary["counts"]["unscored"] == 0
        status = RunStatus.COMPLETE if complete else RunStatus.PARTIAL
        run.update(
            status=status, counts=summary["counts"], aggregates=summary["aggregates"], metrics=summary["metrics"],
            skipped_metrics=skipped_metrics, timings=timings, resampler=scoring.RESAMPLER, updated=provenance.now(),
            executor=executor.describe(),
        )
        return RunOutcome(run, status, summary["counts"], summary["aggregates"], skipped_metrics)
