"""`vm-eval study create`: turn stored runs into a ready-to-serve pairwise listening study.

Steps: resolve the runs (id, unique id prefix, run folder, or a model name with exactly one stored run on the
dataset/split) -> keep the clips every run has audio for -> find (or run, they need no weights) the ground-truth
and anchor runs that catch trials need (:data:`studies.config.CATCH_ANCHORS`) -> build the balanced design
(:mod:`studies.design`) -> one stimulus per (clip, system) the design shows: the run's music fitted to the clip,
loudness-normalised (BS.1770-4, :mod:`studies.stimuli`) and muxed with the clip's silent video, named by its
content key so that file names reveal no system, in one audio format (:data:`studies.stimuli.FORMAT`), written in
a seeded random order and all given one file time, so that neither the files nor their write order tell the
systems apart.

STUDY_DIR is written in the order :mod:`studies.layout` lists it (stimuli, study.yaml, design.json, stimuli.json,
systems.json, and manifest.json last), so an interrupted create never looks complete; readers check completion
with :func:`studies.layout.verify_study`, which lives there so that they need not import this module.
"""
from __future__ import annotations

import json
import os
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from studies.config import CATCH_ANCHORS, GROUND_TRUTH, STUDY_FILE, StudyConfig, StudyConfigError, parse_config
from studies.design import Design, design_for_config, design_report
from studies.layout import COMPLETE_FILE, FORMAT_VERSION, STIMULI_DIR, STUDY_FILES, files_hash
from studies.stimuli import StimulusError, make_stimulus, stimulus_key
from vm_eval import paths
from vm_eval.fsutil import atomic_write_json, file_sha256, json_sha256
from vm_eval.store.run import Run, RunStore
from vm_eval.store.status import Status
from vm_eval.errors import UserError

ANCHOR_METRICS = ["duration-error"]  # the cheapest metric: auto-run anchor runs only need their audio


class StudyCreateError(UserError, ValueError):
    """The study cannot be created as asked (unknown or ambiguous run, mixed splits, no usable clips, ...)."""


@dataclass
class CreateRequest:
    """What `vm-eval study create` was asked. Options left None come from `config` (a study.yaml), else from
    :class:`~studies.config.StudyConfig`'s defaults; `runs` empty means the config's ``systems``."""

    runs: Sequence[str]
    out: Path
    split: str | None = None
    config: Path | None = None
    results: Path | None = None
    data: Path | None = None
    raters: int | None = None
    trials_per_rater: int | None = None
    catch_rate: float | None = None
    allow_ties: bool | None = None
    min_listen_s: float | None = None
    seed: int | None = None
    force: bool = False
    progress: bool = True
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr))


@dataclass
class CreateResult:
    out: Path
    config: StudyConfig
    design: Design
    systems: dict[str, dict]
    stimuli: list[dict]
    clips: list[str]
    dropped: dict[str, str]  # clip id -> why it is not in the study
    anchors_run: list[str]  # catch systems this call generated
    summary: dict[str, Any]

    @property
    def n_cached(self) -> int:
        return sum(1 for s in self.stimuli if s["cached"])


# -- runs ---------------------------------------------------------------------------------------------------------
def _describe(run: Run) -> str:
    m = run.meta()
    return (f"{run.dir.name} (model {m.get('model')}, {m.get('dataset')}/{m.get('split')}, seed {m.get('seed')}, "
            f"{run.status}, {m.get('counts', {}).get('done', '?')} clips done) at {run.dir}")


def resolve_runs(refs: Sequence[str], store: RunStore, split: str | None = None) -> list[Run]:
    """Runs for `refs` by the selectors of `vm-eval compare` (vm_eval.results.resolve_runs: run id, unique id
    prefix, run folder, or a model name = its newest complete run on the split). All must share dataset and
    split. Raises :class:`StudyCreateError` naming the problem and, for ambiguity, the candidates."""
    from vm_eval.results import resolve_runs as resolve

    runs = resolve(list(refs), store, split, error=StudyCreateError)
    split = split or (runs[0].meta().get("split") if runs else None)
    keys = {(r.meta().get("dataset"), r.meta().get("split")) for r in runs}
    if len(keys) > 1 or (split and any(r.meta().get("split") != split for r in runs)):
        raise StudyCreateError("the runs must share one dataset and split" + (f" ({split})" if split else "")
                               + ", but:\n" + "\n".join(f"  {_describe(r)}" for r in runs))
    hashes = {r.meta().get("identity", {}).get("manifest_sha256") for r in runs}
    if len(hashes) > 1:
        raise StudyCreateError("the runs were made on different contents of the dataset split (manifest hashes "
                               "differ); re-run them on the current data:\n" + "\n".join(f"  {_describe(r)}" for r in runs))
    dirs = [r.dir.resolve() for r in runs]
    if len(set(dirs)) != len(dirs):
        raise StudyCreateError("the same run is given more than once: "
                               + ", ".join(sorted({r.dir.name for r, d in zip(runs, dirs) if dirs.count(d) > 1})))
    return runs


def system_labels(runs: Sequence[Run]) -> list[str]:
    """The runs' model names; a model used by several runs gets ``<model>@<run id prefix>`` for each."""
    models = [r.meta().get("model") or r.dir.parent.name for r in runs]
    return [m if models.count(m) == 1 else f"{m}@{r.dir.name[:8]}" for m, r in zip(models, runs)]


def done_audio(run: Run) -> tuple[dict[str, Path], dict[str, str]]:
    """({clip id: audio file} of clips with usable audio, {clip id: why not} of the others the run journalled)."""
    ok, why = {}, {}
    for (clip_id,), rec in run.generation.latest("clip_id").items():
        path = run.dir / rec.get("audio", f"audio/{clip_id}.wav")
        if rec.get("status") != Status.DONE:
            why[clip_id] = f"{rec.get('status')}: {rec.get('reason', '')}".rstrip(": ")
        elif not path.is_file():
            why[clip_id] = "audio file missing"
        elif rec.get("silent"):
            why[clip_id] = "silent output (loudness undefined)"
        else:
            ok[clip_id] = path
    return ok, why


# -- configuration ------------------------------------------------------------------------------------------------
def build_config(req: CreateRequest, labels: list[str], split: str) -> StudyConfig:
    """The config file's options (if any), overridden by the request's, with `systems` = the labels."""
    data: dict[str, Any] = {}
    if req.config is not None:
        p = Path(req.config)
        p = p / STUDY_FILE if p.is_dir() else p
        if not p.is_file():
            raise StudyConfigError(["file not found"], p)
        try:
            loaded = json.loads(p.read_text()) if p.suffix.lower() == ".json" else yaml.safe_load(p.read_text())
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise StudyConfigError([f"cannot parse: {e}"], p) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise StudyConfigError([f"expected a mapping of options, got {type(loaded).__name__}"], p)
        data = dict(loaded or {})
    for name in ("raters", "trials_per_rater", "catch_rate", "allow_ties", "min_listen_s", "seed"):
        if getattr(req, name) is not None:
            data[name] = getattr(req, name)
    data["systems"], data["split"] = labels, split
    return parse_config(data, source=req.config)


def config_runs(req: CreateRequest) -> list[str]:
    """Run references: the request's, else the config file's ``systems``."""
    if req.runs:
        return list(req.runs)
    if req.config is not None:
        p = Path(req.config)
        p = p / STUDY_FILE if p.is_dir() else p
        loaded = yaml.safe_load(p.read_text()) if p.is_file() else None
        if isinstance(loaded, dict) and isinstance(loaded.get("systems"), list):
            return [str(s) for s in loaded["systems"]]
    raise StudyCreateError("no runs given: pass --runs RUN_A RUN_B ... (or `systems:` in the --config file)")


# -- catch systems ------------------------------------------------------------------------------------------------
def _covering(candidates: list[Run], clips: list[str]) -> Run | None:
    """The candidate that journalled (done or skipped) every study clip; most clips done first, then newest."""
    best, best_key = None, None
    for r in candidates:
        recs = {k[0]: v for k, v in r.generation.latest("clip_id").items()}
        if not all(recs.get(c, {}).get("status") in (Status.DONE, Status.SKIPPED) for c in clips):
            continue
        key = (sum(recs[c]["status"] == Status.DONE for c in clips), r.meta().get("updated", ""))
        if best_key is None or key > best_key:
            best, best_key = r, key
    return best


def catch_runs(names: list[str], compared: dict[str, Run], store: RunStore, reference: Run, clips: list[str],
               split_clips: list[str], progress: bool, log: Callable[[str], None]) -> tuple[dict[str, Run], list[str]]:
    """A run per catch system (ground truth, anchors): a compared run of that label, else a stored run of that
    model on the same data covering the study clips, else one generated now (no weights needed)."""
    from vm_eval.runner import RunConfig, execute

    meta = reference.meta()
    ident = meta.get("identity", {})
    out, generated = {}, []
    for name in names:
        if name in compared:
            out[name] = compared[name]
            continue
        cands = [r for r in store.runs() if r.meta().get("model") == name
                 and r.meta().get("identity", {}).get("dataset") == ident.get("dataset")
                 and r.meta().get("split") == meta.get("split")
                 and r.meta().get("identity", {}).get("manifest_sha256") == ident.get("manifest_sha256")]
        hit = _covering(cands, clips)
        if hit is not None:
            out[name] = hit
            continue
        cmd = meta.get("last_command") or meta.get("config") or {}
        data = cmd.get("data") if cmd.get("data") and Path(cmd["data"]).is_dir() else None
        limit = max(split_clips.index(c) for c in clips) + 1
        log(f"catch trials need {name} audio on {meta.get('dataset')}/{meta.get('split')}: no stored run covers the "
            f"study's clips, running it now (first {limit} clips, metrics {','.join(ANCHOR_METRICS)})")
        try:
            outcome = execute(RunConfig(model=name, split=meta.get("split"), dataset=cmd.get("dataset") or
                                        meta.get("dataset"), data=data, results=store.root, metrics=ANCHOR_METRICS,
                                        limit=limit, progress=progress))
        except (ImportError, RuntimeError, LookupError, ValueError, OSError) as e:
            raise StudyCreateError(f"cannot run {name} for catch trials: {type(e).__name__}: {e}\n"
                                   "  (use --catch-rate 0 for a study without catch trials)") from None
        log(f"  {name}: run {outcome.run.dir} ({outcome.counts.get('done', 0)} clips done)")
        out[name] = outcome.run
        generated.append(name)
    return out, generated


# -- the study folder ---------------------------------------------------------------------------------------------
def _prepare_out(out: Path, force: bool) -> None:
    if (out / COMPLETE_FILE).exists():
        if not force:
            raise StudyCreateError(f"{out} already holds a complete study; use --force to re-create it (stimuli "
                                   "are reused), or choose another --out")
        (out / COMPLETE_FILE).unlink()  # from here on the folder no longer looks complete
    elif out.is_dir() and any(out.iterdir()) and not any((out / n).exists() for n in (*STUDY_FILES, STIMULI_DIR)):
        raise StudyCreateError(f"{out} exists, is not empty and is not a study folder; choose a new or empty --out")
    out.mkdir(parents=True, exist_ok=True)


def _loudness_range(stimuli: list[dict]) -> dict[str, float]:
    lufs = [s["loudness"]["output_lufs"] for s in stimuli]
    peaks = [s["loudness"]["output_true_peak_dbtp"] for s in stimuli]
    return {"min_lufs": round(min(lufs), 2), "max_lufs": round(max(lufs), 2), "max_true_peak_dbtp": round(max(peaks), 2),
            "peak_limited": sum(bool(s["loudness"]["peak_limited"]) for s in stimuli)}


def create_study(req: CreateRequest) -> CreateResult:
    """Create the study folder `req.out` (see the module docstring); returns what was written and a summary."""
    from vm_eval.data import resolve_dataset
    from vm_eval.data.manifest import load_manifest
    from vm_eval.progress import progress_bar
    from vm_eval.media import load_audio
    from vm_eval.models.api import ClipInput

    store = RunStore(paths.results_dir(req.results))
    out = Path(req.out)
    if (out / COMPLETE_FILE).exists() and not req.force:
        _prepare_out(out, False)  # refuse before any work
    runs = resolve_runs(config_runs(req), store, req.split)
    labels = system_labels(runs)
    ref_meta = runs[0].meta()
    config = build_config(req, labels, ref_meta["split"])

    # the dataset: the manifest the runs were made on (checked by content hash), else the named dataset
    cmd = ref_meta.get("last_command") or ref_meta.get("config") or {}
    mpath = Path(cmd.get("manifest", ""))
    manifest = load_manifest(mpath) if cmd.get("manifest") and mpath.is_file() else \
        resolve_dataset(cmd.get("dataset") or ref_meta["dataset"], paths.data_dir(req.data or cmd.get("data")))
    split_clips = [c.id for c in manifest.split(config.split)]
    if manifest.content_hash(manifest.split(config.split)) != ref_meta.get("identity", {}).get("manifest_sha256"):
        raise StudyCreateError(f"the dataset at {manifest.path} has changed since the runs were made (its content "
                               "hash differs from the runs'); re-run them on the current data")

    # clips: those every run has audio for
    compared = dict(zip(labels, runs))
    audio: dict[str, dict[str, Path]] = {}
    dropped: dict[str, str] = {}
    for label, run in compared.items():
        ok, why = done_audio(run)
        audio[label] = ok
        for c in split_clips:
            if c not in ok and c not in dropped:
                dropped[c] = f"{label}: {why.get(c, 'not generated')}"
    clips = [c for c in split_clips if c not in dropped]
    if dropped:
        req.log(f"{len(dropped)} of {len(split_clips)} clips dropped (not every run has audio for them):")
        groups: dict[str, list[str]] = {}
        for c, why in dropped.items():
            groups.setdefault(why, []).append(c)
        for why, cs in groups.items():
            req.log(f"  {len(cs)} ({', '.join(cs[:5])}{', ...' if len(cs) > 5 else ''}): {why}")
    if not clips:
        raise StudyCreateError(f"no clip of {ref_meta['dataset']}/{config.split} has audio from every run; "
                               "nothing to compare")

    # catch systems and the clips each catch kind can use
    kinds = config.catch_kinds if config.catch_rate > 0 else []
    needed = [GROUND_TRUTH, *(CATCH_ANCHORS[k] for k in kinds)] if kinds else []
    catch, generated = catch_runs(needed, compared, store, runs[0], clips, split_clips, req.progress, req.log)
    for name, run in catch.items():
        audio.setdefault(name, done_audio(run)[0])
    catch_clips = {k: [c for c in clips if c in audio[GROUND_TRUTH] and c in audio[CATCH_ANCHORS[k]]] for k in kinds}

    design = design_for_config(config, clips, catch_clips if kinds else None)
    report = design_report(design)
    system_runs = {**compared, **{n: r for n, r in catch.items() if n not in compared}}

    # stimuli
    _prepare_out(out, req.force)
    stim_dir = out / STIMULI_DIR
    cache = paths.cache_dir(store.root)
    pairs = sorted({(t.clip_id, s) for t in design.all_trials() for s in (t.system_left, t.system_right)})
    # written in a random order (seeded, so a create is reproducible): the write order (file times, a server's
    # Last-Modified) would otherwise follow the systems' names
    random.Random(f"stimuli-order|{config.seed}").shuffle(pairs)
    videos: dict[str, Path] = {}
    stimuli = []
    for clip_id, label in progress_bar(pairs, desc="stimuli", unit="stimulus", enabled=req.progress):
        if clip_id not in videos:
            videos[clip_id] = ClipInput(manifest[clip_id], manifest, 0, cache / "media").silent_video()
        music = load_audio(audio[label][clip_id])
        key = stimulus_key(videos[clip_id], music, config.loudness_lufs, config.true_peak_dbtp)
        try:
            rec = make_stimulus(videos[clip_id], music, stim_dir / f"{key}.mp4", target_lufs=config.loudness_lufs,
                                ceiling_dbtp=config.true_peak_dbtp, cache_dir=cache / "stimuli")
        except StimulusError as e:
            raise StudyCreateError(f"{label} on clip {clip_id}: {e}") from None
        stimuli.append({"key": key, "file": f"{STIMULI_DIR}/{key}.mp4", "sha256": file_sha256(rec.path),
                        "clip_id": clip_id, "system": label, "run_id": system_runs[label].dir.name,
                        "duration_s": rec.duration_s, "sample_rate": rec.sample_rate,
                        "loudness": asdict(rec.loudness), "cached": rec.cached})
    stimuli.sort(key=lambda s: (s["clip_id"], s["key"]))  # stimuli.json lists them in no system order
    when = min((stim_dir / f"{s['key']}.mp4").stat().st_mtime_ns for s in stimuli)
    for s in stimuli:  # one file time for all, so not even the file system keeps the write order
        os.utime(stim_dir / f"{s['key']}.mp4", ns=(when, when))
    key_of = {(s["clip_id"], s["system"]): s["key"] for s in stimuli}
    same = [t for t in design.all_trials()
            if key_of[(t.clip_id, t.system_left)] == key_of[(t.clip_id, t.system_right)]]
    if same:  # e.g. two retrieval systems that drew the same donor: raters would hear one file twice
        req.log(f"warning: {len(same)} trial(s) play the same music on both sides (identical stimuli), e.g. clip "
                f"{same[0].clip_id}: {same[0].system_left} vs {same[0].system_right}")
    keep = {s["key"] for s in stimuli}
    for f in stim_dir.glob("*.mp4*"):  # stimuli of an earlier version of this study
        if f.name.split(".")[0] not in keep:
            f.unlink()

    systems = {}
    for label, run in system_runs.items():
        m = run.meta()
        systems[label] = {"run_id": run.dir.name, "run_path": str(run.dir.resolve()), "model": m.get("model"),
                          "model_args": m.get("identity", {}).get("model_args", {}), "seed": m.get("seed"),
                          "model_info": m.get("model_info", {}), "checkpoints": m.get("checkpoints", []),
                          "dataset": m.get("dataset"), "split": m.get("split"),
                          "role": "compared" if label in compared else "catch"}

    from studies.config import save_config

    save_config(config, out / STUDY_FILE)
    atomic_write_json(out / "design.json", design.to_json())
    atomic_write_json(out / "stimuli.json", {"version": FORMAT_VERSION, "stimuli": stimuli})
    atomic_write_json(out / "systems.json", systems)
    files = files_hash(out)
    summary = {
        "systems": {lb: systems[lb]["run_id"] for lb in labels}, "catch_systems": sorted(set(system_runs) - set(labels)),
        "dataset": ref_meta.get("dataset"), "split": config.split, "clips": len(clips), "dropped_clips": len(dropped),
        "trials": report.n_trials, "catch_trials": report.n_catch, "catch_by_kind": report.catch_counts,
        "balance": report.summary(), "stimuli": len(stimuli), "stimuli_reused": sum(s["cached"] for s in stimuli),
        "loudness": _loudness_range(stimuli), "anchors_run": generated, "identical_trials": len(same),
    }
    atomic_write_json(out / COMPLETE_FILE, {"version": FORMAT_VERSION, "files": files,
                                            "content_sha256": json_sha256(files), "summary": summary})
    return CreateResult(out, config, design, systems, stimuli, clips, dropped, generated, summary)


def format_summary(result: CreateResult) -> str:
    """The lines `vm-eval study create` prints."""
    s = result.summary
    lines = [f"study {result.out}: {s['dataset']}/{s['split']}, complete ({COMPLETE_FILE} written)",
             "systems: " + ", ".join(f"{lb} ({rid})" for lb, rid in s["systems"].items())]
    if s["catch_systems"]:
        lines.append("catch systems: " + ", ".join(f"{n} ({result.systems[n]['run_id']})" for n in s["catch_systems"])
                     + (f"; generated now: {', '.join(s['anchors_run'])}" if s["anchors_run"] else ""))
    lines.append(f"clips: {s['clips']} used, {s['dropped_clips']} dropped")
    c = result.config
    lines.append(f"trials: {s['trials']} ({c.raters} raters x {c.trials_per_rater}), catch trials: {s['catch_trials']}"
                 + (f" ({', '.join(f'{k} {v}' for k, v in sorted(s['catch_by_kind'].items()))})" if s["catch_trials"] else ""))
    b = s["balance"]
    lines.append("balance (max - min counts; 0 or 1 is balanced): " + ", ".join(
        f"{k} {b[k]}" for k in ("cell_spread", "pair_spread", "clip_spread", "side_imbalance", "rater_pair_spread",
                                "rater_clip_spread", "rater_repeats")) + f"; cells {b['cells']}")
    lo = s["loudness"]
    lines.append(f"stimuli: {s['stimuli']} ({s['stimuli_reused']} reused from cache), loudness {lo['min_lufs']} to "
                 f"{lo['max_lufs']} LUFS, true peak <= {lo['max_true_peak_dbtp']} dBTP, {lo['peak_limited']} peak-limited")
    return "\n".join(lines)

