"""Pretrained networks behind metrics (embeddings, classifiers). Each loads from an explicit checkpoint path that the
harness resolves (vm_eval.weights); nothing here downloads. Random-weight builds of the same upstream code prove the
wiring in the tests.
"""
from __future__ import annotations

import hashlib
from pathlib import Path


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
