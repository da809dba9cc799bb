"""`vidmusician` in the model registry: a trained VidMusician checkpoint generating music for each clip's video.

Which checkpoint (first hit wins): ``checkpoint=PATH`` (a ``checkpoint.safetensors`` or the training folder
holding it); ``$VM_EVAL_WEIGHTS/vidmusician/`` (``checkpoint.safetensors``, else its newest ``*.safetensors``); the
newest ``<results>/train/*/checkpoint.safetensors`` written by ``vm-eval train``. None of them: the run fails at once
naming both places and the train command.

Per clip: CLIP conditions of the clip's span (cached by video content, see ``vm_eval.train.prepare``) -> sampling
with the clip's own seed (classifier-free guidance, top-k / top-p, a sliding window past the model's 30 s) ->
EnCodec decode, trimmed to the clip's duration at 32 kHz.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from vm_eval import paths
from vm_eval.fsutil import file_sha256
from vm_eval.models.api import ClipInput, ModelInfo
from vm_eval.store.feature_cache import FeatureCache

CHECKPOINT = "checkpoint.safetensors"
RANDOM_WEIGHTS = "random-weights"
TRAIN_DIR = "train"
DEMO_RUN = "demo-tiny"  # <results>/train/demo-tiny: what `vm-eval demo` trains for vidmusician-tiny-random
TRAIN_HINT = "vm-eval train --preset paper --data MANIFEST --stage both"


def _newest(paths_: list[Path]) -> Path | None:
    files = [p for p in paths_ if p.is_file()]
    return max(files, key=lambda p: p.stat().st_mtime_ns) if files else None


def find_checkpoint(checkpoint: str | Path | None = None, results: str | Path | None = None) -> Path:
    """The checkpoint file to use (see the module docstring for the search order)."""
    if checkpoint:
        p = Path(checkpoint).expanduser()
        p = p / CHECKPOINT if p.is_dir() else p
        if not p.is_file():
            raise FileNotFoundError(f"VidMusician checkpoint {p} not found (checkpoint= takes a {CHECKPOINT} or the "
                                    f"folder `vm-eval train` wrote)")
        return p
    weights_root = os.environ.get("VM_EVAL_WEIGHTS")
    places = []
    if weights_root:
        folder = Path(weights_root).expanduser() / "vidmusician"
        places.append(f"{folder}/")
        if (folder / CHECKPOINT).is_file():
            return folder / CHECKPOINT
        found = _newest(sorted(folder.glob("*.safetensors"))) if folder.is_dir() else None
        if found:
            return found
    else:
        places.append("$VM_EVAL_WEIGHTS/vidmusician/ (VM_EVAL_WEIGHTS is not set)")
    train_root = paths.results_dir(results) / TRAIN_DIR
    places.append(f"{train_root}/*/{CHECKPOINT}")
    found = _newest(sorted(train_root.glob(f"*/{CHECKPOINT}"))) if train_root.is_dir() else None
    if found:
        return found
    raise FileNotFoundError(f"no VidMusician checkpoint: looked in {' and '.join(places)}. Train one with "
                            f"`{TRAIN_HINT}`, or pass --model-args checkpoint=PATH")


def final_stage(stages: list[str]) -> str:
    """The stage a finished training leaves the model in: rhythm active after stage 2 or joint training."""
    return "joint" if "joint" in stages else ("2" if "2" in stages else "1")


class VidMusicianModel:
    """Model-contract adapter. Keyword arguments override the checkpoint's generation config:
    ``cfg`` (guidance coefficient), ``top_k``, ``top_p``, ``temperature``, ``stride_s`` (sliding-window step, s);
    ``label`` names the model in tables (ablation variants use it)."""

    def __init__(self, checkpoint: str | Path | None = None, cfg: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, temperature: float | None = None, stride_s: float | None = None,
                 device: str | None = None, label: str = "vidmusician", results: str | Path | None = None):
        import torch

        from vidmusician.backbone import default_device
        from vidmusician.checkpoint import load_into, read_checkpoint
        from vidmusician.model import VidMusician
        from vm_eval.train.components import resolve_components

        self.path = find_checkpoint(checkpoint, results)
        ck = read_checkpoint(self.path)
        overrides = {f"generation.{k}": v for k, v in (("cfg_coef", cfg), ("top_k", top_k), ("top_p", top_p),
                                                       ("temperature", temperature)) if v is not None}
        self.config = ck.config.with_overrides(overrides) if overrides else ck.config
        self.stride_s = stride_s
        self.device = default_device(device)
        self.components = resolve_components(self.config, self.path.parent / RANDOM_WEIGHTS,
                                             seed=int(ck.extra.get("weights_seed", 0)), create=False,
                                             device=str(self.device))
        stages = [str(s) for s in ck.extra.get("stages", ["1"])]
        model = VidMusician(self.config, stage=final_stage(stages), lm=self.components.backbone.lm,
                            t5=self.components.t5)
        load_into(model, ck, self.components.identities)
        self.model = model.to(self.device).eval()
        self.compression = self.components.backbone.compression_model.to(self.device).eval()
        self.sample_rate = int(self.compression.sample_rate)
        self._torch = torch
        self.info = ModelInfo(
            name=label, family="vidmusician", sample_rate=self.sample_rate, max_duration_s=None,
            trained=self.components.pretrained,
            extra={"preset": self.config.name, "stages": stages, "checkpoint": str(self.path),
                   "generation": self.config.to_dict()["generation"]},
        )

    def checkpoints(self) -> list[dict]:
        own = {"name": "vidmusician", "path": str(self.path), "sha256": file_sha256(self.path)}
        parts = [{"name": f"{role}:{i['name']}", "path": i["path"], "sha256": i["sha256"]}
                 for role, i in sorted(self.components.identities.items())]
        return [own, *parts]

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


def tiny_random(**kwargs) -> VidMusicianModel:
    """The demo's VidMusician: the `tiny` preset briefly trained on the demo's train split, random backbone."""
    results = kwargs.pop("results", None)
    folder = paths.results_dir(results) / TRAIN_DIR / DEMO_RUN
    if not (folder / CHECKPOINT).is_file():
        raise FileNotFoundError(f"vidmusician-tiny-random needs {folder / CHECKPOINT}: `vm-eval demo` trains it, or "
                                f"run `vm-eval train --preset tiny --data demo --out {folder}`")
    return VidMusicianModel(checkpoint=folder, label="vidmusician-tiny-random", results=results, **kwargs)
