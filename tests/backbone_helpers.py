"""Shared by the backbone tests: seeded stereo audio, error measures, and a weights lookup that sees only a tmp folder."""
from __future__ import annotations

import os

import numpy as np
import pytest

SR = 44_100


def signal(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Seeded stereo test audio [2, n] float32: a different tone per channel plus noise."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    left = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.05 * rng.standard_normal(n)
    right = (0.2 * np.sin(2 * np.pi * 1234.5 * t) + 0.1 * np.sin(2 * np.pi * 97.0 * t)
             + 0.05 * rng.standard_normal(n))
    return np.stack([left, right]).astype(np.float32)


def max_rel(ours: np.ndarray, ref: np.ndarray) -> float:
    """max |ours - ref| / max |ref|, in float64."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


def assert_close(ours: np.ndarray, ref: np.ndarray) -> None:
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


def isolate_weights(mp: pytest.MonkeyPatch, root) -> None:
    """Weights only from root/weights; no explicit-path variables, no real hub or torch cache reachable."""
    for k in list(os.environ):
        if k.startswith("VM_EVAL_WEIGHT"):
            mp.delenv(k)
    mp.setenv("VM_EVAL_WEIGHTS", str(root / "weights"))
    mp.setenv("HF_HOME", str(root / "hf"))
    mp.setenv("TORCH_HOME", str(root / "torch"))
