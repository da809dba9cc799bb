"""Pretrained networks behind metrics (embeddings, classifiers). Each loads from an explicit checkpoint path that the
harness resolves (vm_eval.weights); nothing here downloads. Random-weight builds of the same upstream code prove the
wiring in the tests.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def channels_first(audio: np.ndarray) -> np.ndarray:
    """float32 [channels, n] from [channels, n] or [n]; MetricError for another shape or no samples."""
    from metrics.base import MetricError

    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[-1] == 0:
        raise MetricError(f"expected audio [channels, n] with n > 0, got shape {x.shape}")
    return x


def checkpoint_identity(name: str, path: str | Path) -> dict:
    """{name, file, sha256} of a checkpoint file: part of every metric identity that uses it."""
    p = Path(path)
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"name": name, "file": p.name, "sha256": h.hexdigest()}


def resolve_device(device: str | None = None) -> str:
    """'cuda' when available and not overridden, else 'cpu'."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_checkpoint(checkpoint: str | Path, file_name: str) -> Path:
    """The checkpoint file: `checkpoint` itself, or `file_name` inside it when it is a folder."""
    p = Path(checkpoint).expanduser()
    if p.is_dir():
        p = p / file_name
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {p} (expected the published {file_name})")
    return p


def load_torch_checkpoint(path: Path) -> dict:
    """``torch.load(weights_only=True)``, numpy scalars and dtypes (found in training checkpoints) allowed."""
    import torch

    allowed: list = [np.dtype]
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    allowed += [scalar, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


def unwrap_state_dict(obj: dict, path: Path) -> dict:
    """The tensor dict in a checkpoint (``state_dict`` / ``model`` wrappers, ``module.`` prefixes removed)."""
    if not isinstance(obj, dict):
        raise ValueError(f"{path.name}: expected a state dict, got {type(obj).__name__}")
    for key in ("state_dict", "model"):
        if key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj
