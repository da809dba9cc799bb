"""Content-addressed cache of extracted features, shared by models and metrics.

Key = sha256 of (input content hash, extractor name, version, parameters). Never keyed by file name: audio that
is regenerated under the same name gets new features. Entries are .npy files written atomically; an unreadable
entry is recomputed, not trusted.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vm_eval.fsutil import atomic_target, json_sha256


@dataclass(frozen=True)
class ExtractorId:
    name: str
    version: int
    params: dict = field(default_factory=dict)

    def key(self, content_sha256: str) -> str:
        return json_sha256({"content": content_sha256, "name": self.name, "version": self.version,
                            "params": self.params})


class FeatureCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def path(self, extractor: ExtractorId, content_sha256: str) -> Path:
        key = extractor.key(content_sha256)
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in extractor.name)
        return self.root / safe / key[:2] / f"{key}.npy"

    def get(self, extractor: ExtractorId, content_sha256: str) -> np.ndarray | None:
        p = self.path(extractor, content_sha256)
        if not p.is_file():
            return None
        try:
            return np.load(p, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # torn or foreign file: treat as absent and overwrite

    def put(self, extractor: ExtractorId, content_sha256: str, value: np.ndarray) -> Path:
        p = self.path(extractor, content_sha256)
        with atomic_target(p) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(value), allow_pickle=False)
        return p

    def get_or_compute(
        self, extractor: ExtractorId, content_sha256: str, compute: Callable[[], np.ndarray]
    ) -> np.ndarray:
        value = self.get(extractor, content_sha256)
        if value is not None:
            self.hits += 1
            return value
        self.misses += 1
        value = np.asarray(compute())
        self.put(extractor, content_sha256, value)
        return value
