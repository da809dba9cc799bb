"""VidMusician checkpoints: the trainable weights only, as safetensors, plus what they were trained on.

A checkpoint holds every parameter of ``model.trainable_parameters("joint")`` under its ``named_parameters``
name (Embedding Manager, LoRA or -- for ``t5_init="scratch"`` -- all T5 weights, projector, rhythm adapter), so a
stage-1-only checkpoint still holds the (zero-initialised) rhythm weights and every checkpoint loads into any
model of the same architecture. The frozen parts (MusicGen backbone, pretrained T5 base weights, CLIP) are not
stored; instead the safetensors metadata records their *identities* -- ``{"backbone": {"name": ..., "sha256":
...}, "t5": {...}, "clip": {...}}`` -- and :func:`load_into` refuses a model whose frozen parts differ.
For random-weight builds :func:`state_sha256` gives such an identity.

Metadata (all strings, as safetensors requires): ``format`` = ``vidmusician-trainable/1``, ``config`` (JSON of
``model.config.to_dict()``), ``identities`` (JSON), ``extra`` (JSON; the trainer puts stages, steps, loss
summary and seed there).

Depends on torch and safetensors; no vm_eval imports.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import typing as tp
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .config import VidMusicianConfig

__all__ = ["FORMAT", "Checkpoint", "CheckpointError", "CheckpointMismatch", "save_checkpoint", "read_checkpoint",
           "read_checkpoint_metadata", "load_into", "state_sha256", "trainable_state", "atomic_write_bytes",
           "check_identities"]

FORMAT = "vidmusician-trainable/1"


class CheckpointError(ValueError):
    """A file that is not a readable VidMusician checkpoint (wrong format, corrupt, bad metadata)."""


class CheckpointMismatch(ValueError):
    """A checkpoint that does not fit the model: different frozen parts (identities) or different tensors."""


@dataclass
class Checkpoint:
    config: VidMusicianConfig
    tensors: tp.Dict[str, torch.Tensor]
    identities: tp.Dict[str, tp.Any] = field(default_factory=dict)
    extra: tp.Dict[str, tp.Any] = field(default_factory=dict)
    path: tp.Optional[Path] = None


# --------------------------------------------------------------------------------------------- helpers
def trainable_state(model: nn.Module) -> tp.Dict[str, torch.Tensor]:
    """{name: tensor} of every parameter in ``model.trainable_parameters("joint")`` (``named_parameters`` names,
    in ``named_parameters`` order; detached, shared with the model -- clone before mutating)."""
    wanted = {id(p) for p in model.trainable_parameters("joint")}  # type: ignore[attr-defined]
    return {name: p.detach() for name, p in model.named_parameters() if id(p) in wanted}


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().to("cpu").contiguous()
    if t.numel() == 0:
        return b""
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def state_sha256(module_or_state_dict: tp.Union[nn.Module, tp.Mapping[str, torch.Tensor]]) -> str:
    """sha256 over the sorted (name, dtype, shape, raw bytes) of a module's ``state_dict()`` (parameters and
    buffers) or of a given {name: tensor} mapping. Same weights -> same hash; the identity of a random-weight
    build (same seed, same code -> same hash)."""
    if isinstance(module_or_state_dict, nn.Module):
        state = module_or_state_dict.state_dict()
    else:
        state = dict(module_or_state_dict)
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        if not torch.is_tensor(t):
            continue
        h.update(name.encode("utf-8"))
        h.update(b"\0" + str(t.dtype).encode() + b"\0" + json.dumps(list(t.shape)).encode() + b"\0")
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def atomic_write_bytes(path: tp.Union[str, os.PathLike], data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync, then ``os.replace``: readers
    see the old file or the complete new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable (best effort; not supported everywhere)
        dfd = os.open(str(path.parent), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


# --------------------------------------------------------------------------------------------- save / read
def save_checkpoint(model: nn.Module, path: tp.Union[str, os.PathLike], identities: tp.Optional[dict] = None,
                    extra: tp.Optional[dict] = None) -> Path:
    """Write the model's trainable weights (see module docstring) to ``path`` (.safetensors), atomically."""
    from safetensors.torch import save

    tensors = {name: t.to("cpu").contiguous().clone() for name, t in trainable_state(model).items()}
    config = getattr(model, "config", None)
    if not isinstance(config, VidMusicianConfig):
        raise TypeError("save_checkpoint needs a VidMusician model (with a VidMusicianConfig .config)")
    metadata = {
        "format": FORMAT,
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "identities": json.dumps(identities or {}, sort_keys=True),
        "extra": json.dumps(extra or {}, sort_keys=True, default=str),
    }
    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def read_checkpoint(path: tp.Union[str, os.PathLike]) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises FileNotFoundError (missing file), :class:`CheckpointError` (not a safetensors file, truncated or
    corrupt, wrong/missing format tag, unreadable metadata)."""
    return _read(Path(path), tensors=True)


def read_checkpoint_metadata(path: tp.Union[str, os.PathLike]) -> Checkpoint:
    """:func:`read_checkpoint` without the weights: config, identities and extra from the safetensors header
    (``tensors`` is empty; no tensor byte is read). Same errors."""
    return _read(Path(path), tensors=False)


def _read(path: Path, tensors: bool) -> Checkpoint:
    from safetensors import safe_open

    if not path.exists():
        raise FileNotFoundError(f"VidMusician checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"VidMusician checkpoint {path} is not a file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            weights = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except Exception as e:  # safetensors raises SafetensorError / OSError / ValueError on bad headers
        raise CheckpointError(f"{path} is not a readable safetensors file (corrupt, truncated or another format): "
                              f"{type(e).__name__}: {e}") from e
    fmt = metadata.get("format")
    if fmt != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a VidMusician trainable-weights checkpoint "
                              f"(metadata format {fmt!r}, expected {FORMAT!r})")
    try:
        config = VidMusicianConfig.from_dict(json.loads(metadata["config"]))
        identities = json.loads(metadata.get("identities", "{}"))
        extra = json.loads(metadata.get("extra", "{}"))
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable checkpoint metadata: {type(e).__name__}: {e}") from e
    return Checkpoint(config=config, tensors=weights, identities=identities, extra=extra, path=path)


# --------------------------------------------------------------------------------------------- load
def _ident(value: tp.Any) -> tp.Tuple[tp.Optional[str], tp.Optional[str]]:
    if isinstance(value, tp.Mapping):
        return value.get("name"), value.get("sha256")
    return None, (str(value) if value is not None else None)


def check_identities(needed: tp.Mapping[str, tp.Any], present: tp.Mapping[str, tp.Any],
                     what: str = "checkpoint") -> None:
    """Raise :class:`CheckpointMismatch` when a component named in both mappings differs in sha256.

    ``needed``: the identities the checkpoint (or training run) was made with; ``present``: the model's."""
    for comp in sorted(set(needed) & set(present)):
        n_name, n_sha = _ident(needed[comp])
        p_name, p_sha = _ident(present[comp])
        if n_sha is None or p_sha is None or n_sha == p_sha:
            continue
        hint = (f" This {what} needs the backbone {n_name} (sha256 {n_sha}); load that backbone."
                if comp == "backbone" else f" Use the {comp} {n_name} (sha256 {n_sha}).")
        raise CheckpointMismatch(
            f"{comp} mismatch: the {what} expects {comp} {n_name!s} with sha256 {n_sha}, but the model has "
            f"{comp} {p_name!s} with sha256 {p_sha}.{hint}")


def load_into(model: nn.Module, checkpoint: tp.Union[Checkpoint, str, os.PathLike],
              identities: tp.Optional[tp.Mapping[str, tp.Any]] = None, strict: bool = True) -> nn.Module:
    """Copy a checkpoint's weights into ``model`` (in place; returns it).

    ``identities``: the identities of the model's frozen parts (same keys as at save time). Refuses with
    :class:`CheckpointMismatch` when a component present in both differs in sha256, or (``strict``) when the
    checkpoint's tensor names or shapes differ from ``model.trainable_parameters("joint")``.
    """
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = read_checkpoint(checkpoint)
    check_identities(checkpoint.identities, identities or {}, what="checkpoint")
    params = {name: p for name, p in model.named_parameters()}
    expected = trainable_state(model)
    missing = sorted(set(expected) - set(checkpoint.tensors))
    unexpected = sorted(set(checkpoint.tensors) - set(expected))
    shapes = sorted(n for n in set(expected) & set(checkpoint.tensors)
                    if tuple(expected[n].shape) != tuple(checkpoint.tensors[n].shape))
    if strict and (missing or unexpected or shapes):
        def _few(names: tp.List[str]) -> str:
            return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")
        parts = []
        if missing:
            parts.append(f"missing from the checkpoint: {_few(missing)}")
        if unexpected:
            parts.append(f"not in the model: {_few(unexpected)}")
        if shapes:
            parts.append("shape differs: " + ", ".join(
                f"{n} checkpoint {tuple(checkpoint.tensors[n].shape)} vs model {tuple(expected[n].shape)}"
                for n in shapes[:5]))
        src = f" ({checkpoint.path})" if checkpoint.path else ""
        raise CheckpointMismatch(f"checkpoint{src} does not fit the model's trainable parameters: "
                                 + "; ".join(parts) + f". Checkpoint config: {checkpoint.config.name!r}, "
                                 f"model config: {getattr(getattr(model, 'config', None), 'name', '?')!r}.")
    with torch.no_grad():
        for name, t in checkpoint.tensors.items():
            if name in params and tuple(params[name].shape) == tuple(t.shape):
                params[name].copy_(t.to(dtype=params[name].dtype, device=params[name].device))
    return model
