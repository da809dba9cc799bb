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
record and that loading checks. ``file_identities(locate_components(...))`` gives those identities from the
files alone (hashed, nothing loaded), for a model's identity before it is built. Nothing here downloads.
"""
from __future__ import annotations

import typing as tp
from dataclasses import dataclass
from pathlib import Path

from vm_eval import weights
from vm_eval.fsutil import file_sha256
from vm_eval.errors import BadArgument, UserFileNotFound

RANDOM = ("random", "none")
CLIP_TAGS = {("ViT-B-32", "laion2b_s34b_b79k"): "clip-vit-b-32"}
T5_WEIGHTS = "model.safetensors"  # save_pretrained's one-shard weight file


@dataclass
class Components:
    backbone: tp.Any  # vidmusician.backbone.Backbone
    t5: tp.Any  # T5EncoderModel, or a T5Config when T5 is trained from scratch
    visual: tp.Any  # vidmusician.visual.VisualEncoder
    identities: dict  # role -> {name, sha256, path[, random]}

    @property
    def pretrained(self) -> bool:
        """True only when the backbone has published weights (random ones make music-less noise)."""
        return pretrained(self.identities)


def pretrained(identities: tp.Mapping[str, dict]) -> bool:
    """Whether identities (role -> identity) name a backbone with published weights."""
    return not identities["backbone"].get("random", False)


@dataclass(frozen=True)
class ComponentFile:
    """The weight file of one frozen part: the name identities give it, where it is, whether its weights are random."""

    name: str
    path: Path
    random: bool = False

    def identity(self, random_root: Path | None) -> dict:
        """{name, sha256, path[, random]}; a random file's path is relative to ``random_root`` (the training folder
        holding it may move)."""
        if not self.path.is_file():
            raise UserFileNotFound(f"{self.name}: weight file {self.path} not found")
        relative = self.random and random_root is not None
        return {"name": self.name, "sha256": file_sha256(self.path),
                "path": str(self.path.relative_to(random_root)) if relative else str(self.path),
                **({"random": True} if self.random else {})}


@dataclass(frozen=True)
class _Source:
    """Where one frozen part comes from (nothing read yet)."""

    name: str
    where: Path  # a folder (backbone, T5, random CLIP), or CLIP's checkpoint file or folder
    random: bool
    seed: int  # of a random build


def _sources(config, root: Path | None, seed: int) -> dict[str, _Source]:
    """role -> source of every frozen part of ``config``; T5 is absent when it is trained from scratch. Seeds: the
    backbone ``seed``, T5 ``seed + 1``, CLIP ``seed + 2``."""
    out = {"backbone": _backbone_source(config, root, seed)}
    t5 = _t5_source(config, root, seed + 1)
    if t5 is not None:
        out["t5"] = t5
    out["clip"] = _clip_source(config, root, seed + 2)
    return out


def _weight_files(role: str, src: _Source) -> dict[str, ComponentFile]:
    """Identity role -> file of one source (the backbone gives two: the LM and EnCodec)."""
    from vidmusician.backbone import COMPRESSION_FILE, LM_FILE
    from vidmusician.visual import CHECKPOINT_FILE

    if role == "backbone":
        paths_ = {"backbone": src.where / LM_FILE, "encodec": src.where / COMPRESSION_FILE}
    elif role == "t5":
        paths_ = {"t5": src.where / T5_WEIGHTS}
    else:  # the file VisualEncoder loads: the checkpoint itself, or CHECKPOINT_FILE in its folder
        paths_ = {"clip": src.where / CHECKPOINT_FILE if src.random or src.where.is_dir() else src.where}
    return {r: ComponentFile(src.name, p, src.random) for r, p in paths_.items()}


def _absent(role: str, src: _Source) -> bool:
    return not all(f.path.is_file() for f in _weight_files(role, src).values())


def _backbone_source(config, root: Path | None, seed: int) -> _Source:
    bb = config.backbone
    known = f"musicgen-{bb.scale}"
    if bb.checkpoint_dir and bb.checkpoint_dir not in RANDOM:
        return _Source(Path(bb.checkpoint_dir).name, Path(bb.checkpoint_dir), False, seed)
    if not bb.checkpoint_dir and known in weights.KNOWN:
        return _Source(known, weights.require(known), False, seed)
    name = f"musicgen-{bb.scale}-random-s{seed}"
    return _Source(name, _random_folder(root, name), True, seed)


def _t5_source(config, root: Path | None, seed: int) -> _Source | None:
    sem = config.semantic
    if sem.t5_init == "scratch":  # every T5 weight is trained and stored in the checkpoint
        return None
    spec = sem.t5
    if spec.name in weights.KNOWN:
        return _Source(spec.name, weights.require(spec.name), False, seed)
    if Path(spec.name).expanduser().is_dir():
        return _Source(Path(spec.name).name, Path(spec.name).expanduser(), False, seed)
    name = f"{spec.name}-random-s{seed}"
    return _Source(name, _random_folder(root, name), True, seed)


def _clip_source(config, root: Path | None, seed: int) -> _Source:
    from vidmusician.visual import CHECKPOINT_FILE

    sem = config.semantic
    tag = sem.clip_pretrained
    if tag in RANDOM:
        name = f"{sem.clip_model}-random-s{seed}"
        return _Source(name, _random_folder(root, name), True, seed)
    if Path(tag).expanduser().exists():
        return _Source(Path(tag).stem, Path(tag).expanduser(), False, seed)
    if (sem.clip_model, tag) in CLIP_TAGS:
        name = CLIP_TAGS[(sem.clip_model, tag)]
        return _Source(name, weights.require(name), False, seed)
    raise UserFileNotFound(f"no local weights for CLIP {sem.clip_model} / {tag!r}: set semantic.clip_pretrained "
                           f"to the path of its {CHECKPOINT_FILE} (known tags: {sorted(CLIP_TAGS)})")


def _backbone(config, src: _Source, create: bool):
    from vidmusician.backbone import LM_FILE, load_backbone, save_backbone

    if src.random and _absent("backbone", src):
        _need_create(create, src.where)
        save_backbone(load_backbone(config.backbone.scale, seed=src.seed), src.where)
    backbone = load_backbone(src.where)
    want, got = config.backbone.spec, backbone.scale
    if (want.dim, want.num_layers, want.num_heads) != (got.dim, got.num_layers, got.num_heads):
        raise BadArgument(f"{src.where / LM_FILE} holds a {got.dim}x{got.num_layers} LM ({got.num_heads} heads) but "
                         f"the config asks for MusicGen-{want.name} ({want.dim}x{want.num_layers}, {want.num_heads} "
                         f"heads); set backbone.scale to match the checkpoint")
    return backbone


def _t5(config, src: _Source | None, create: bool):
    from vidmusician.model import t5_config_from_spec
    from vidmusician.semantic import load_t5_encoder

    if src is None:
        return t5_config_from_spec(config.semantic.t5)
    if src.random and _absent("t5", src):
        import torch
        from transformers import T5EncoderModel

        _need_create(create, src.where)
        torch.manual_seed(src.seed)
        T5EncoderModel(t5_config_from_spec(config.semantic.t5)).save_pretrained(src.where)
    model = load_t5_encoder(str(src.where))
    if _absent("t5", src):
        raise UserFileNotFound(f"T5 folder {src.where} has no {T5_WEIGHTS} (save_pretrained layout expected)")
    return model


def _clip(config, src: _Source, create: bool, device: str | None):
    from vidmusician.visual import VisualEncoder, save_random_tower

    sem = config.semantic
    if src.random and _absent("clip", src):
        _need_create(create, src.where)
        save_random_tower(sem.clip_model, src.where, seed=src.seed)
    visual = VisualEncoder(src.where, model=sem.clip_model, device=device)
    if visual.embed_dim != sem.clip_dim:
        raise BadArgument(f"CLIP {sem.clip_model} gives {visual.embed_dim}-d features but semantic.clip_dim is "
                         f"{sem.clip_dim}")
    return visual


def _random_folder(root: Path | None, name: str) -> Path:
    if root is None:
        raise ValueError(f"{name}: random weights need a folder to live in (random_root)")
    return Path(root) / name


def _need_create(create: bool, folder: Path) -> None:
    if not create:
        raise UserFileNotFound(f"random weights expected in {folder} are missing (the training output that "
                               f"created them was moved or pruned)")


def file_identities(files: tp.Mapping[str, ComponentFile], random_root: str | Path | None = None) -> dict:
    """role -> {name, sha256, path[, random]} of the given weight files: what ``Components.identities`` holds."""
    root = Path(random_root) if random_root is not None else None
    return {role: f.identity(root) for role, f in files.items()}


def _files(sources: dict[str, _Source]) -> dict[str, ComponentFile]:
    return {role: f for r, src in sources.items() for role, f in _weight_files(r, src).items()}


def locate_components(config, random_root: str | Path | None = None, seed: int = 0) -> dict[str, ComponentFile]:
    """Identity role (backbone, encodec, t5, clip) -> weight file of every frozen part of ``config``, found exactly
    as :func:`resolve_components` finds them, without reading any weights; random parts must already exist.
    ``file_identities`` of the result = ``resolve_components(...).identities``."""
    sources = _sources(config, Path(random_root) if random_root is not None else None, seed)
    for role, src in sources.items():
        if src.random and _absent(role, src):
            _need_create(False, src.where)
    return _files(sources)


def resolve_components(config, random_root: str | Path | None = None, seed: int = 0, create: bool = True,
                       device: str | None = None) -> Components:
    """Load (or, for random components with ``create``, first write) every frozen part of ``config``."""
    root = Path(random_root) if random_root is not None else None
    sources = _sources(config, root, seed)
    backbone = _backbone(config, sources["backbone"], create)
    t5 = _t5(config, sources.get("t5"), create)
    visual = _clip(config, sources["clip"], create, device)
    return Components(backbone, t5, visual, file_identities(_files(sources), root))
