"""The frozen parts VidMusician is built on (MusicGen backbone, T5 encoder, CLIP tower), found or materialised.

Where each comes from, by the model config:
- backbone: ``backbone.checkpoint_dir`` (a folder with upstream's ``state_dict.bin`` + ``compression_state_dict.bin``;
  ``"random"`` for random weights), else the known checkpoint ``musicgen-<scale>`` (``vm-eval weights``); scales
  without a published checkpoint (``tiny``, ``xsmall``) are random.
- T5: ``semantic.t5.name`` is a known checkpoint (``t5-base``) or a local folder (``save_pretrained`` layout);
  anything else is a random encoder of that size. ``t5_init="scratch"`` needs no T5 weights at all.
- CLIP: ``semantic.clip_pretrained`` is a local file/folder, ``none``/``random``, or an open_clip tag; ViT-B-32
  with the LAION-2B tag is the known checkpoint ``clip-vit-b-32``.

Random components are written once, seeded, in upstream's file layouts under ``random_root`` and then loaded
through the same code as real weights, so every component has a file identity (name + sha256) that checkpoints
record and that loading checks. Nothing here downloads.
"""
from __future__ import annotations

import typing as tp
from dataclasses import dataclass
from pathlib import Path

from vm_eval import weights
from vm_eval.fsutil import file_sha256

RANDOM = ("random", "none")
CLIP_TAGS = {("ViT-B-32", "laion2b_s34b_b79k"): "clip-vit-b-32"}


@dataclass
class Components:
    backbone: tp.Any  # vidmusician.backbone.Backbone
    t5: tp.Any  # T5EncoderModel, or a T5Config when T5 is trained from scratch
    visual: tp.Any  # vidmusician.visual.VisualEncoder
    identities: dict  # role -> {name, sha256, path[, random]}

    @property
    def pretrained(self) -> bool:
        """True only when the backbone has published weights (random ones make music-less noise)."""
        return not self.identities["backbone"].get("random", False)


def _ident(name: str, path: Path, sha: str, random: bool, root: Path | None) -> dict:
    rel = str(path.relative_to(root)) if random and root is not None else str(path)
    return {"name": name, "sha256": sha, "path": rel, **({"random": True} if random else {})}


def _backbone(config, random_root: Path | None, seed: int, create: bool):
    from vidmusician.backbone import COMPRESSION_FILE, LM_FILE, load_backbone, save_backbone

    bb = config.backbone
    known = f"musicgen-{bb.scale}"
    if bb.checkpoint_dir and bb.checkpoint_dir not in RANDOM:
        folder, name, random = Path(bb.checkpoint_dir), Path(bb.checkpoint_dir).name, False
    elif not bb.checkpoint_dir and known in weights.KNOWN:
        folder, name, random = weights.require(known), known, False
    else:
        name, random = f"musicgen-{bb.scale}-random-s{seed}", True
        folder = _random_folder(random_root, name)
        if not (folder / LM_FILE).is_file() or not (folder / COMPRESSION_FILE).is_file():
            _need_create(create, folder)
            save_backbone(load_backbone(bb.scale, seed=seed), folder)
    backbone = load_backbone(folder)
    want, got = bb.spec, backbone.scale
    if (want.dim, want.num_layers, want.num_heads) != (got.dim, got.num_layers, got.num_heads):
        raise ValueError(f"{folder / LM_FILE} holds a {got.dim}x{got.num_layers} LM ({got.num_heads} heads) but the "
                         f"config asks for MusicGen-{want.name} ({want.dim}x{want.num_layers}, {want.num_heads} heads); "
                         f"set backbone.scale to match the checkpoint")
    ids = {"backbone": _ident(name, folder / LM_FILE, file_sha256(folder / LM_FILE), random, random_root),
           "encodec": _ident(name, folder / COMPRESSION_FILE, file_sha256(folder / COMPRESSION_FILE), random,
                             random_root)}
    return backbone, ids


def _t5(config, random_root: Path | None, seed: int, create: bool):
    from vidmusician.model import t5_config_from_spec
    from vidmusician.semantic import load_t5_encoder

    sem = config.semantic
    if sem.t5_init == "scratch":  # every T5 weight is trained and stored in the checkpoint
        return t5_config_from_spec(sem.t5), {}
    spec = sem.t5
    if spec.name in weights.KNOWN:
        folder, name, random = weights.require(spec.name), spec.name, False
    elif Path(spec.name).expanduser().is_dir():
        folder, name, random = Path(spec.name).expanduser(), Path(spec.name).name, False
    else:
        import torch
        from transformers import T5EncoderModel

        name, random = f"{spec.name}-random-s{seed}", True
        folder = _random_folder(random_root, name)
        if not (folder / "model.safetensors").is_file():
            _need_create(create, folder)
            torch.manual_seed(seed)
            T5EncoderModel(t5_config_from_spec(spec)).save_pretrained(folder)
    model = load_t5_encoder(str(folder))
    weight_file = folder / "model.safetensors"
    if not weight_file.is_file():
        raise FileNotFoundError(f"T5 folder {folder} has no model.safetensors (save_pretrained layout expected)")
    return model, {"t5": _ident(name, weight_file, file_sha256(weight_file), random, random_root)}


def _clip(config, random_root: Path | None, seed: int, create: bool, device: str | None):
    from vidmusician.visual import CHECKPOINT_FILE, VisualEncoder, save_random_tower

    sem = config.semantic
    tag = sem.clip_pretrained
    if tag in RANDOM:
        name, random = f"{sem.clip_model}-random-s{seed}", True
        path = _random_folder(random_root, name) / CHECKPOINT_FILE
        if not path.is_file():
            _need_create(create, path.parent)
            save_random_tower(sem.clip_model, path, seed=seed)
    elif Path(tag).expanduser().exists():
        path, name, random = Path(tag).expanduser(), Path(tag).stem, False
    elif (sem.clip_model, tag) in CLIP_TAGS:
        name, random = CLIP_TAGS[(sem.clip_model, tag)], False
        path = weights.require(name)
    else:
        raise FileNotFoundError(f"no local weights for CLIP {sem.clip_model} / {tag!r}: set semantic.clip_pretrained "
                                f"to the path of its {CHECKPOINT_FILE} (known tags: {sorted(CLIP_TAGS)})")
    visual = VisualEncoder(path, model=sem.clip_model, device=device)
    if visual.embed_dim != sem.clip_dim:
        raise ValueError(f"CLIP {sem.clip_model} gives {visual.embed_dim}-d features but semantic.clip_dim is "
                         f"{sem.clip_dim}")
    return visual, {"clip": _ident(name, visual.path, file_sha256(visual.path), random, random_root)}


def _random_folder(root: Path | None, name: str) -> Path:
    if root is None:
        raise ValueError(f"{name}: random weights need a folder to live in (random_root)")
    return Path(root) / name


def _need_create(create: bool, folder: Path) -> None:
    if not create:
        raise FileNotFoundError(f"random weights expected in {folder} are missing (the training output that "
                                f"created them was moved or pruned)")


def resolve_components(config, random_root: str | Path | None = None, seed: int = 0, create: bool = True,
                       device: str | None = None) -> Components:
    """Load (or, for random components with ``create``, first write) every frozen part of ``config``."""
    root = Path(random_root) if random_root is not None else None
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one-shard T5 files: its bars would only clutter our own progress output
    backbone, ids = _backbone(config, root, seed, create)
    t5, t5_ids = _t5(config, root, seed + 1, create)
    visual, clip_ids = _clip(config, root, seed + 2, create, device)
    return Components(backbone, t5, visual, {**ids, **t5_ids, **clip_ids})

