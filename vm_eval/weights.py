"""Every pretrained checkpoint the suite knows, where it is looked for, and its identity (name + sha256).

Search order for checkpoint NAME (first hit wins):
  1. an explicit path: environment variable VM_EVAL_WEIGHT_<NAME> (upper case, '-' -> '_'), file or folder;
  2. the weights folder (:func:`weights_root`: $VM_EVAL_WEIGHTS, default ~/.cache/vm-eval/weights): <name>/<file>
     (or <file> at its top for one-file checkpoints);
  3. the Hugging Face cache (hub checkpoints) or torch's hub cache (URL checkpoints), without network access.
Nothing here downloads (``vm-eval weights download``, :mod:`vm_eval.weights_download`, does): a missing checkpoint
raises :class:`WeightsMissing` naming the file and how to get it. The weights folder's lock file holds the sha256 of
every file the download command put there; a copy that no longer matches it is refused (:class:`WeightsChanged`).
"""
from __future__ import annotations

import hashlib
import json
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
    Checkpoint("openl3-mel256-music", "metric backbone: OpenL3 audio network, mel256, music (openl3 0.4 Keras weights)",
               ("openl3_audio_mel256_music-v0_4_0.h5.gz",),
               url="https://github.com/marl/openl3/raw/models/openl3_audio_mel256_music-v0_4_0.h5.gz",
               licence="CC-BY-4.0"),
    Checkpoint("mert-v1-95m", "metric backbone: MERT-v1-95M music encoder (FAD-MERT, fadtk layer 12)",
               ("config.json", "preprocessor_config.json", "pytorch_model.bin"), hub_id="m-a-p/MERT-v1-95M",
               licence="CC-BY-NC-4.0"),
    Checkpoint("imagebind-huge", "metric backbone: ImageBind huge, vision + audio towers (imagebind-score)",
               ("imagebind_huge.pth",), url="https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth",
               licence="CC-BY-NC-4.0"),
]}


class WeightsMissing(UserError, FileNotFoundError):
    pass


class WeightsChanged(UserError):
    """A file in the weights folder whose bytes differ from the sha256 the lock recorded when it was downloaded."""


LOCK_FILE = "weights.lock.json"  # in the weights folder: {"format": 1, "checkpoints": {name: {file: record}}}


@dataclass
class Location:
    name: str
    path: Path | None  # folder holding every file (or the file itself for one-file checkpoints)
    searched: list[str] = field(default_factory=list)
    via: str = ""
    verified: bool | None = None  # True: every file is in the lock and its sha256 matched; None: not locked or not hashed
    changed: str = ""  # why the weights folder's copy was refused (it differs from the lock); path is then None


def env_var(name: str) -> str:
    return "VM_EVAL_WEIGHT_" + name.upper().replace("-", "_")


def weights_root() -> Path:
    """The weights folder: $VM_EVAL_WEIGHTS, else $XDG_CACHE_HOME/vm-eval/weights (~/.cache/vm-eval/weights)."""
    explicit = os.environ.get("VM_EVAL_WEIGHTS")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "vm-eval" / "weights"


def read_lock(root: Path | None = None) -> dict[str, dict[str, dict]]:
    """name -> file -> {sha256, size, source, time} of every file `vm-eval weights download` put in the folder."""
    path = (root or weights_root()) / LOCK_FILE
    try:
        checkpoints = json.loads(path.read_text())["checkpoints"]
        if not all(isinstance(r["sha256"], str) and isinstance(r["size"], int)
                   for files in checkpoints.values() for r in files.values()):
            raise ValueError("a record's sha256 or size has the wrong type")
        return checkpoints
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"weights lock file {path} is unreadable ({e!r}): restore it, or delete it to stop checking "
                        "the files it lists") from None


def record_lock(root: Path, name: str, file: str, record: dict) -> None:
    """Add or replace one file's record; the caller holds the folder's download lock (one writer at a time)."""
    from vm_eval.fsutil import atomic_write_json

    checkpoints = read_lock(root)
    checkpoints.setdefault(name, {})[file] = record
    atomic_write_json(root / LOCK_FILE, {"format": 1, "checkpoints": checkpoints})


def check_lock(name: str, folder: Path, full: bool = True) -> tuple[bool | None, str]:
    """(verified, refusal) of the files of checkpoint `name` present in `folder`, against the lock of its parent.

    Sizes are always compared (a stat); sha256 only when `full`, through file_sha256, which memoises per process, so
    the identity() a run records afterwards costs no second read. A file without a record (not downloaded by
    vm-eval) is not judged; `verified` is True only when every file of the checkpoint is present, recorded and matched.
    """
    from vm_eval.fsutil import file_sha256

    files = KNOWN[name].files
    records = read_lock(folder.parent).get(name, {})
    for f in files:
        rec, p = records.get(f), folder / f
        if rec is None or not p.is_file() or (p.stat().st_size == rec["size"] and not full):
            continue
        actual = file_sha256(p)
        if actual != rec["sha256"]:
            return False, (f"{p} changed since it was downloaded: its sha256 is {actual}, {folder.parent / LOCK_FILE} "
                           f"recorded {rec['sha256']} ({rec.get('source')}, {rec.get('time')}); delete it and run "
                           f"`vm-eval weights download {name}` to fetch it again")
    complete = all(f in records and (folder / f).is_file() for f in files)
    return (True if full and complete else None), ""


def _complete(folder: Path, files: tuple[str, ...]) -> bool:
    return all((folder / f).is_file() for f in files)


def locate(name: str, verify: bool = False) -> Location:
    """Find a known checkpoint on disk without touching the network.

    The weights folder's copy is checked against the lock (sizes always, sha256 when `verify`); one that differs is
    refused (`changed` set, path None) rather than passed over for a copy elsewhere."""
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
    root = weights_root()
    loc.searched.append(f"{root / name}/ ($VM_EVAL_WEIGHTS/{name}/)" if os.environ.get("VM_EVAL_WEIGHTS")
                        else f"{root / name}/ (default weights folder; set VM_EVAL_WEIGHTS to move it)")
    if _complete(root / name, ck.files):
        loc.verified, loc.changed = check_lock(name, root / name, full=verify)
        if not loc.changed:
            loc.path, loc.via = root / name, "weights folder"
        return loc
    if len(ck.files) == 1 and (root / ck.files[0]).is_file():
        loc.path, loc.via = root / ck.files[0], "weights folder"
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
    target = f"{weights_root() / name}/"
    if ck.hub_id:
        return (f"vm-eval weights download {name}, or huggingface-cli download {ck.hub_id} {' '.join(ck.files)} "
                f"--local-dir {target} (or set {env_var(name)} to a folder holding them)")
    if ck.url:
        return f"vm-eval weights download {name}, or download {ck.url} into {target} (or set {env_var(name)} to the file)"
    return f"put {', '.join(ck.files)} into {target} (or set {env_var(name)} to a folder holding them)"


def require(name: str) -> Path:
    """Path of a present checkpoint whose files match the lock, or :class:`WeightsChanged` naming both hashes, or
    :class:`WeightsMissing` naming the files, where we looked, how to get them."""
    loc = locate(name, verify=True)
    if loc.changed:
        raise WeightsChanged(f"checkpoint {name!r} refused: {loc.changed}")
    if loc.path is None:
        ck = KNOWN[name]
        raise WeightsMissing(
            f"checkpoint {name!r} ({ck.role}) not found: need {', '.join(ck.files)}; looked in "
            f"{'; '.join(loc.searched)}. Get it: {how_to_get(name)}"
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
