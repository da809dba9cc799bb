"""`vidmusician` in the model registry: a trained VidMusician checkpoint generating music for each clip's video.

Which checkpoint (first hit wins): ``checkpoint=PATH`` (a ``checkpoint.safetensors`` or the training folder
holding it); ``$VM_EVAL_WEIGHTS/vidmusician/`` (``checkpoint.safetensors``, else its newest ``*.safetensors``); the
newest ``<results>/train/*/checkpoint.safetensors`` written by ``vm-eval train``. None of them: the run fails at once
naming both places and the train command. How it was chosen is kept in ``info.extra["checkpoint_choice"]``;
``identify`` (what :func:`vm_eval.models.identity.describe` calls) also says it on stderr unless checkpoint= named it.

Per clip: CLIP conditions of the clip's span (cached by video content, see ``vm_eval.train.prepare``) -> sampling
with the clip's own seed (classifier-free guidance, top-k / top-p, a sliding window past the model's 30 s) ->
EnCodec decode, trimmed to the clip's duration at 32 kHz.
"""
from __future__ import annotations

import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from vm_eval import paths
from vm_eval.fsutil import file_sha256
from vm_eval.models.api import ClipInput, ModelInfo
from vm_eval.models.identity import identified_by
from vm_eval.store.feature_cache import FeatureCache
from vm_eval.errors import UserFileNotFound

CHECKPOINT = "checkpoint.safetensors"
RANDOM_WEIGHTS = "random-weights"
TRAIN_DIR = "train"
DEMO_RUN = "demo-tiny"  # <results>/train/demo-tiny: what `vm-eval demo` trains for vidmusician-tiny-random
TRAIN_HINT = "vm-eval train --preset paper --data MANIFEST --stage both"


@dataclass(frozen=True)
class CheckpointChoice:
    """The checkpoint file a model uses and how it was chosen."""

    path: Path
    how: str  # "explicit" | "VM_EVAL_WEIGHTS" | "VM_EVAL_WEIGHTS (newest of N)" | "newest of results/train (N found)"
    why: str = ""  # one line for the user; empty when checkpoint= named it

    def report(self, label: str) -> None:
        """Say on stderr which checkpoint was chosen and why (nothing for an explicit one)."""
        if self.why:
            print(f"{label}: {self.why}", file=sys.stderr)


def _newest(paths_: list[Path]) -> tuple[Path | None, int]:
    """(newest file by modification time, number of files)."""
    files = [p for p in paths_ if p.is_file()]
    return (max(files, key=lambda p: p.stat().st_mtime_ns) if files else None), len(files)


def _modified(p: Path) -> str:
    return datetime.fromtimestamp(p.stat().st_mtime).isoformat(sep=" ", timespec="seconds")


def choose_checkpoint(checkpoint: str | Path | CheckpointChoice | None = None,
                      results: str | Path | None = None) -> CheckpointChoice:
    """The checkpoint file to use and how it was chosen (search order in the module docstring). Prints nothing:
    :meth:`VidMusicianModel.identify` reports the choice once per command."""
    if isinstance(checkpoint, CheckpointChoice):
        return checkpoint
    if checkpoint:
        p = Path(checkpoint).expanduser()
        p = p / CHECKPOINT if p.is_dir() else p
        if not p.is_file():
            raise UserFileNotFound(f"VidMusician checkpoint {p} not found (checkpoint= takes a {CHECKPOINT} or the "
                                   f"folder `vm-eval train` wrote)")
        return CheckpointChoice(p, "explicit")
    unnamed = "no checkpoint= given; using"
    weights_root = os.environ.get("VM_EVAL_WEIGHTS")
    places = []
    if weights_root:
        folder = Path(weights_root).expanduser() / "vidmusician"
        places.append(f"{folder}/")
        if (folder / CHECKPOINT).is_file():
            return CheckpointChoice(folder / CHECKPOINT, "VM_EVAL_WEIGHTS",
                                    f"{unnamed} $VM_EVAL_WEIGHTS/vidmusician/{CHECKPOINT}: {folder / CHECKPOINT}")
        found, n = _newest(sorted(folder.glob("*.safetensors"))) if folder.is_dir() else (None, 0)
        if found:
            return CheckpointChoice(found, f"VM_EVAL_WEIGHTS (newest of {n})",
                                    f"{unnamed} the newest of {n} *.safetensors in $VM_EVAL_WEIGHTS/vidmusician/: "
                                    f"{found} (modified {_modified(found)})")
    else:
        places.append("$VM_EVAL_WEIGHTS/vidmusician/ (VM_EVAL_WEIGHTS is not set)")
    train_root = paths.results_dir(results) / TRAIN_DIR
    places.append(f"{train_root}/*/{CHECKPOINT}")
    found, n = _newest(sorted(train_root.glob(f"*/{CHECKPOINT}"))) if train_root.is_dir() else (None, 0)
    if found:
        return CheckpointChoice(found, f"newest of results/train ({n} found)",
                                f"{unnamed} the newest of {n} checkpoint(s) under {train_root}: {found} "
                                f"(modified {_modified(found)})")
    raise UserFileNotFound(f"no VidMusician checkpoint: looked in {' and '.join(places)}. Train one with "
                           f"`{TRAIN_HINT}`, or pass --model-args checkpoint=PATH")


def find_checkpoint(checkpoint: str | Path | None = None, results: str | Path | None = None) -> Path:
    """The checkpoint file to use (see the module docstring for the search order)."""
    return choose_checkpoint(checkpoint, results).path


def final_stage(stages: list[str]) -> str:
    """The stage a finished training leaves the model in: rhythm active after stage 2 or joint training."""
    return "joint" if "joint" in stages else ("2" if "2" in stages else "1")


def _configure(ck, cfg: float | None, top_k: int | None, top_p: float | None, temperature: float | None):
    """(config with the generation overrides, training stages, seed of the random components) of a checkpoint."""
    overrides = {f"generation.{k}": v for k, v in (("cfg_coef", cfg), ("top_k", top_k), ("top_p", top_p),
                                                   ("temperature", temperature)) if v is not None}
    config = ck.config.with_overrides(overrides) if overrides else ck.config
    return config, [str(s) for s in ck.extra.get("stages", ["1"])], int(ck.extra.get("weights_seed", 0))


def _info(label: str, choice: CheckpointChoice, config, stages: list[str], sample_rate: int,
          trained: bool) -> ModelInfo:
    return ModelInfo(
        name=label, family="vidmusician", sample_rate=sample_rate, max_duration_s=None, trained=trained,
        extra={"preset": config.name, "stages": stages, "checkpoint": str(choice.path),
               "checkpoint_choice": choice.how, "generation": config.to_dict()["generation"]},
    )


def _checkpoint_list(path: Path, identities: dict) -> list[dict]:
    """The checkpoint file, then each frozen part by role: the model's checkpoints()."""
    own = {"name": "vidmusician", "path": str(path), "sha256": file_sha256(path)}
    parts = [{"name": f"{role}:{i['name']}", "path": i["path"], "sha256": i["sha256"]}
             for role, i in sorted(identities.items())]
    return [own, *parts]


class VidMusicianModel:
    """Model-contract adapter. Keyword arguments override the checkpoint's generation config:
    ``cfg`` (guidance coefficient), ``top_k``, ``top_p``, ``temperature``, ``stride_s`` (sliding-window step, s);
    ``label`` names the model in tables (ablation variants use it)."""

    def __init__(self, checkpoint: str | Path | CheckpointChoice | None = None, cfg: float | None = None,
                 top_k: int | None = None, top_p: float | None = None, temperature: float | None = None,
                 stride_s: float | None = None, device: str | None = None, label: str = "vidmusician",
                 results: str | Path | None = None):
        import torch

        from vidmusician.backbone import default_device
        from vidmusician.checkpoint import load_into, read_checkpoint
        from vidmusician.model import VidMusician
        from vm_eval.train.components import resolve_components

        choice = choose_checkpoint(checkpoint, results)
        self.path = choice.path
        ck = read_checkpoint(self.path)
        self.config, stages, seed = _configure(ck, cfg, top_k, top_p, temperature)
        self.stride_s = stride_s
        self.device = default_device(device)
        self.components = resolve_components(self.config, self.path.parent / RANDOM_WEIGHTS, seed=seed,
                                             create=False, device=str(self.device))
        model = VidMusician(self.config, stage=final_stage(stages), lm=self.components.backbone.lm,
                            t5=self.components.t5)
        load_into(model, ck, self.components.identities)
        self.model = model.to(self.device).eval()
        self.compression = self.components.backbone.compression_model.to(self.device).eval()
        self.sample_rate = int(self.compression.sample_rate)
        self._torch = torch
        self.info = _info(label, choice, self.config, stages, self.sample_rate, self.components.pretrained)

    @classmethod
    def identify(cls, checkpoint: str | Path | CheckpointChoice | None = None, cfg: float | None = None,
                 top_k: int | None = None, top_p: float | None = None, temperature: float | None = None,
                 label: str = "vidmusician", results: str | Path | None = None,
                 **runtime) -> tuple[ModelInfo, list[dict]]:
        """(info, checkpoints()) of the model these arguments build, from the checkpoint's header and the frozen
        parts' files (hashed, never loaded; no module is built). Refuses frozen parts other than the checkpoint's
        as loading would, and reports on stderr how the checkpoint was chosen. ``runtime``: stride_s and device,
        which identify nothing."""
        from vidmusician.checkpoint import check_identities, read_checkpoint_metadata
        from vm_eval.models.identity import encodec_sample_rate
        from vm_eval.registry import check_kwargs
        from vm_eval.train.components import file_identities, locate_components, pretrained

        check_kwargs(cls, runtime, f"model {label!r}")  # what the constructor would refuse
        choice = choose_checkpoint(checkpoint, results)
        ck = read_checkpoint_metadata(choice.path)
        config, stages, seed = _configure(ck, cfg, top_k, top_p, temperature)
        root = choice.path.parent / RANDOM_WEIGHTS
        files = locate_components(config, root, seed)
        identities = file_identities(files, root)
        check_identities(ck.identities, identities, what="checkpoint")
        choice.report(label)
        rate = encodec_sample_rate(files["encodec"].path)
        info = _info(label, choice, config, stages, rate, pretrained(identities))
        return info, _checkpoint_list(choice.path, identities)

    def checkpoints(self) -> list[dict]:
        return _checkpoint_list(self.path, self.components.identities)

    # ------------------------------------------------------------------------------------------------ generation
    def _conditions(self, clip: ClipInput):
        from vidmusician.rhythm import to_token_rate
        from vm_eval.train.prepare import visual_features

        cfg = self.config
        cache = FeatureCache(clip.cache_root / "features")
        vf = visual_features(self.components.visual, clip.video_path, clip.clip.start, clip.clip.end, cache,
                             cfg.semantic.fps, cfg.rhythm.fps)
        torch = self._torch
        d = to_token_rate(torch.from_numpy(vf.rhythm(cfg.rhythm.source)), fps=vf.rhythm_fps,
                          duration_s=clip.duration_s, rate_hz=float(cfg.rhythm.token_rate_hz))
        return torch.from_numpy(vf.cls), d

    def generate(self, batch: list[ClipInput]) -> list:
        from vidmusician.generate import decode_audio, generate_long

        out: dict[str, object] = {}
        by_duration: dict[float, list[ClipInput]] = defaultdict(list)
        for clip in batch:  # one sampling call per duration: every row of a window has the same length
            by_duration[round(clip.duration_s, 6)].append(clip)
        for duration, clips in by_duration.items():
            conds = [self._conditions(c) for c in clips]
            codes = generate_long(self.model, [c[0] for c in conds], [c[1] for c in conds], duration,
                                  [c.seed for c in clips], self.config.generation, cls_fps=self.config.semantic.fps,
                                  token_rate=self.config.rhythm.token_rate_hz, stride_s=self.stride_s)
            n = int(round(duration * self.sample_rate))
            with self._torch.inference_mode():
                wav = decode_audio(self.compression, codes.to(self.device), n)
            for clip, w in zip(clips, wav.float().cpu().numpy()):
                out[clip.id] = (np.ascontiguousarray(w, dtype=np.float32), self.sample_rate)
        return [out[c.id] for c in batch]


def _tiny_random_args(kwargs: dict) -> dict:
    """VidMusicianModel's arguments for vidmusician-tiny-random: the demo's training folder, its label."""
    folder = paths.results_dir(kwargs.get("results")) / TRAIN_DIR / DEMO_RUN
    if not (folder / CHECKPOINT).is_file():
        raise UserFileNotFound(f"vidmusician-tiny-random needs {folder / CHECKPOINT}: `vm-eval demo` trains it, or "
                               f"run `vm-eval train --preset tiny --data demo --out {folder}`")
    how = f"vidmusician-tiny-random's folder (results/{TRAIN_DIR}/{DEMO_RUN})"
    return dict(checkpoint=CheckpointChoice(folder / CHECKPOINT, how), label="vidmusician-tiny-random", **kwargs)


def _identify_tiny_random(**kwargs) -> tuple[ModelInfo, list[dict]]:
    return VidMusicianModel.identify(**_tiny_random_args(kwargs))


@identified_by(_identify_tiny_random)
def tiny_random(**kwargs) -> VidMusicianModel:
    """The demo's VidMusician: the `tiny` preset briefly trained on the demo's train split, random backbone."""
    return VidMusicianModel(**_tiny_random_args(kwargs))
