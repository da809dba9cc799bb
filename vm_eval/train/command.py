"""`vm-eval train`: prepare (cached) EnCodec tokens and CLIP features of a split, then train VidMusician.

Output folder (default ``<results>/train/<preset>-<config hash>``; the same command resumes there):
``checkpoint.safetensors`` (trainable weights + config + identities of every frozen part, written only when all
requested stages are done), ``train.json`` (summary), ``state-<stage>.pt`` (resume state), ``random-weights/``
(seeded random backbone / T5 / CLIP in upstream layouts, when the preset uses them).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from vm_eval import paths
from vm_eval.fsutil import json_sha256
from vm_eval.errors import BadArgument
from vm_eval.progress import progress_bar

WEIGHTS_SEED = 0  # seed of random frozen parts (tiny preset); recorded in the checkpoint


@dataclass
class TrainRequest:
    preset: str = "tiny"
    data: str = "demo"  # manifest path or dataset name under the data folder
    split: str = "train"
    stage: str | None = None  # default: the config's train.stage ("both")
    out: Path | None = None
    steps: int | None = None  # per stage
    overrides: dict = field(default_factory=dict)
    init_from: Path | None = None  # stage-1 checkpoint to start a stage-2-only training from
    results: Path | None = None
    data_dir: Path | None = None
    cache: Path | None = None
    device: str | None = None
    progress: bool = True


def default_out(req: TrainRequest, config, manifest_sha: str) -> Path:
    key = json_sha256({"config": config.to_dict(), "data": manifest_sha, "split": req.split, "stage": req.stage,
                       "steps": req.steps, "init_from": str(req.init_from) if req.init_from else None})
    return paths.results_dir(req.results) / "train" / f"{req.preset}-{key[:10]}"


def run_training(req: TrainRequest):
    """Prepare the data and train; returns (vidmusician.train.TrainResult, output folder)."""
    from vidmusician.config import preset
    from vidmusician.model import VidMusician
    from vidmusician.train import train
    from vm_eval.data import resolve_dataset
    from vm_eval.store.feature_cache import FeatureCache
    from vm_eval.train.components import resolve_components
    from vm_eval.train.prepare import training_examples

    config = preset(req.preset)
    if req.overrides:
        config = config.with_overrides(req.overrides)
    manifest = resolve_dataset(req.data, paths.data_dir(req.data_dir))
    clips = manifest.split(req.split)
    if not clips:
        raise BadArgument(f"split {req.split!r} of {manifest.path} has no clips")
    out = Path(req.out) if req.out else default_out(req, config, manifest.content_hash(clips))
    out.mkdir(parents=True, exist_ok=True)
    print(f"training VidMusician ({req.preset}) on {manifest.name}/{req.split} ({len(clips)} clips) -> {out}",
          file=sys.stderr)
    comps = resolve_components(config, out / "random-weights", seed=WEIGHTS_SEED, create=True, device=req.device)
    if not comps.pretrained:
        print("note: random backbone weights (mechanics only; the music will be noise)", file=sys.stderr)
    cache = FeatureCache(paths.cache_dir(paths.results_dir(req.results), req.cache) / "features")
    t0 = time.perf_counter()
    examples, skipped = training_examples(manifest, clips, comps, config, cache, req.progress)
    prep_s = time.perf_counter() - t0
    for cid, why in sorted(skipped.items()):
        print(f"  skipped {cid}: {why}", file=sys.stderr)
    if not examples:
        raise BadArgument(f"no clip of {manifest.name}/{req.split} has usable reference music")
    print(f"prepared {len(examples)} clips in {prep_s:.1f} s (cache hits {cache.hits}, misses {cache.misses})",
          file=sys.stderr)

    model = VidMusician(config, stage=req.stage, lm=comps.backbone.lm, t5=comps.t5)
    if req.init_from:
        from vidmusician.checkpoint import load_into, read_checkpoint

        load_into(model, read_checkpoint(Path(req.init_from)), comps.identities)
    data_info = {"manifest": str(manifest.path), "manifest_sha256": manifest.content_hash(clips), "split": req.split,
                 "clips": len(examples), "skipped": skipped, "prepare_s": round(prep_s, 3),
                 "weights_seed": WEIGHTS_SEED}
    result = train(model, examples, out, comps.identities, stage=req.stage, steps=req.steps, device=req.device,
                   progress=progress_bar if req.progress else False, extra=data_info)
    return result, out
