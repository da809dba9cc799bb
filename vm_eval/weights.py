"""Every pretrained checkpoint the suite knows, where it is looked for, and its identity (name + sha256).

Search order for checkpoint NAME (first hit wins):
  1. an explicit path: environment variable VM_EVAL_WEIGHT_<NAME> (upper case, '-' -> '_'), file or folder;
  2. the weights folder: $VM_EVAL_WEIGHTS/<name>/<file> (or $VM_EVAL_WEIGHTS/<file> for one-file checkpoints);
  3. the Hugging Face cache (hub checkpoints) or torch's hub cache (URL checkpoints), without network access.
Nothing here downloads: a missing checkpoint raises :class:`WeightsMissing` naming the file and how to get it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from vm_eval.errors import UserError


@dataclass(frozen=True)
class Checkpoint:
    name: str
    role: str  # what uses it
    files: tuple[str, ...]
    hub_id: str | None = None  # Hugging Face repo id
    url: str | None = None  # direct download of files[0]
    licence: str = ""


KNOWN: dict[str, Checkpoint] = {c.name: c for c in [
    Checkpoint("musicgen-small", "MusicGen backbone (LM + EnCodec 32 kHz)",
               ("state_dict.bin", "compression_state_dict.bin"), hub_id="facebook/musicgen-small", licence="CC-BY-NC-4.0"),
    Checkpoint("musicgen-medium", "MusicGen backbone (LM + EnCodec 32 kHz)",
               ("state_dict.bin", "compression_state_dict.bin"), hub_id="facebook/musicgen-medium", licence="CC-BY-NC-4.0"),
    Checkpoint("musicgen-large", "MusicGen backbone (LM + EnCodec 32 kHz)",
               ("state_dict.bin", "compression_state_dict.bin"), hub_id="facebook/musicgen-large", licence="CC-BY-NC-4.0"),
    Checkpoint("t5-base", "VidMusician semantic module (T5 encoder + LoRA)",
               ("config.json", "model.safetensors", "spiece.model"), hub_id="google-t5/t5-base", licence="Apache-2.0"),
    Checkpoint("clip-vit-b-32", "visual encoder (open_clip ViT-B-32, laion2b_s34b_b79k)",
               ("open_clip_pytorch_model.bin",), hub_id="laion/CLIP-ViT-B-32-laion2B-s34B-b79K", licence="MIT"),
    Checkpoint("clap-music", "metric backbone: LAION-CLAP music checkpoint",
               ("music_audioset_epoch_15_esc_90.14.pt",), hub_id="lukewys/laion_clap", licence="CC0-1.0"),
    Checkpoint("clap-630k-audioset", "metric backbone: LAION-CLAP general checkpoint",
               ("630k-audioset-best.pt",), hub_id="lukewys/laion_clap", licence="CC0-1.0"),
    Checkpoint("roberta-base-tokenizer", "CLAP text branch tokenizer (roberta-base BPE files)",
               ("vocab.json", "merges.txt"), hub_id="FacebookAI/roberta-base", licence="MIT"),
    Checkpoint("vggish", "metric backbone: VGGish (torchvggish port)", ("vggish-10086976.pth",),
               url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
               licence="Apache-2.0"),
    Checkpoint("passt", "metric backbone: PaSST AudioSet classifier (hear21passt)",
               ("passt-s-f128-p16-s10-ap.476-swa.pt",),
               url="https://github.com/kkoutini/PaSST/releases/download/v0.0.1-audioset/passt-s-f128-p16-s10-ap.476-swa.pt",
               licence="Apache-2.0"),
    Checkpoint("pann-cnn14", "metric backbone: PANN Cnn14 AudioSet classifier (32 kHz)", ("Cnn14_mAP=0.431.pth",),
               url="https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth", licence="MIT"),
    Checkpoint("encodec-24khz", "metric backbone: EnCodec 24 kHz encoder (continuous embeddings)",
               ("encodec_24khz-d7cc33bc.th",), url="https://dl.fbaipublicfiles.com/encodec/v0/encodec_24khz-d7cc33bc.th",
               licence="MIT"),
    Checkpoint("pann-cnn14-16k", "metric backbone: PANN Cnn14 (16 kHz)", ("Cnn14_16k_mAP=0.438.pth",),
               url="https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth", licence="MIT"),
]}


class WeightsMissing(UserError, FileNotFoundError):
    pass


@dataclass
class Location:
    name: str
    path: Path | None  # folder holding every file (or the file itself for one-file checkpoints)
    searched: list[str] = field(default_factory=list)
    via: str = ""


def env_var(name: str) -> str:
    return "VM_EVAL_WEIGHT_" + name.upper().replace("-", "_")


def _complete(folder: Path, files: tuple[str, ...]) -> bool:
    return all((folder / f).is_file() for f in files)


def locate(name: str) -> Location:
    """Find a known checkpoint on disk without touching the network."""
    ck = KNOWN[name]
    loc = Location(name, None)
    explicit = os.environ.get(env_var(name))
    if explicit:
        p = Path(explicit).expanduser()
        loc.searched.append(f"${env_var(name)}={p}")
        if p.is_file() and len(ck.files) == 1:
            loc.path, loc.via = p, "explicit path"
            return loc
        if p.is_dir() and _complete(p, ck.files):
            loc.path, loc.via = p, "explicit path"
            return loc
    root = os.environ.get("VM_EVAL_WEIGHTS")
    if root:
        r = Path(root).expanduser()
        loc.searched.append(f"$VM_EVAL_WEIGHTS/{name}/")
        if _complete(r / name, ck.files):
            loc.path, loc.via = r / name, "VM_EVAL_WEIGHTS"
            return loc
        if len(ck.files) == 1 and (r / ck.files[0]).is_file():
            loc.path, loc.via = r / ck.files[0], "VM_EVAL_WEIGHTS"
            return loc
    if ck.hub_id:
        loc.searched.append(f"Hugging Face cache ({ck.hub_id})")
        found = _hf_cached(ck.hub_id, ck.files)
        if found is not None:
            loc.path, loc.via = found, "hub cache"
            return loc
    if ck.url:
        hub_dir = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
        loc.searched.append(str(hub_dir))
        if (hub_dir / ck.files[0]).is_file():
            loc.path, loc.via = hub_dir / ck.files[0], "torch hub cache"
    return loc


def _hf_cached(repo_id: str, files: tuple[str, ...]) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    paths = [try_to_load_from_cache(repo_id, f) for f in files]
    if all(isinstance(p, str) for p in paths):
        return Path(paths[0]).parent
    return None


def how_to_get(name: str) -> str:
    ck = KNOWN[name]
    target = f"$VM_EVAL_WEIGHTS/{name}/"
    if ck.hub_id:
        return (f"huggingface-cli download {ck.hub_id} {' '.join(ck.files)} --local-dir {target} "
                f"(or set {env_var(name)} to a folder holding them)")
    return f"download {ck.url} into {target} (or set {env_var(name)} to the file)"


def require(name: str) -> Path:
    """Path of a present checkpoint, or :class:`WeightsMissing` naming the files, where we looked, how to get them."""
    loc = locate(name)
    if loc.path is None:
        ck = KNOWN[name]
        raise WeightsMissing(
            f"checkpoint {name!r} ({ck.role}) not found: need {', '.join(ck.files)}; looked in "
            f"{'; '.join(loc.searched) or 'nowhere (set VM_EVAL_WEIGHTS)'}. Get it: {how_to_get(name)}"
        )
    return loc.path


def sha256_of(path: str | Path, files: tuple[str, ...] | None = None) -> str:
    """sha256 of a checkpoint file, or of a folder's listed files (name + bytes, in order)."""
    from vm_eval.fsutil import file_sha256

    p = Path(path)
    if p.is_file():
        return file_sha256(p)
    if files is not None and len(files) == 1:  # a one-file checkpoint is that file, wherever it was found
        return file_sha256(p / files[0])
    h = hashlib.sha256()
    for f in files or tuple(sorted(x.name for x in p.iterdir() if x.is_file())):
        h.update(f.encode() + b"\0" + file_sha256(p / f).encode())
    return h.hexdigest()


def identity(name: str, path: str | Path | None = None) -> dict:
    """{name, path, sha256} of a checkpoint; recorded in every run that uses it."""
    p = Path(path) if path is not None else require(name)
    files = KNOWN[name].files if name in KNOWN else None
    return {"name": name, "path": str(p), "sha256": sha256_of(p, files if p.is_dir() else None)}
