"""Test-only models and metrics, registered on import (directly, or through VM_EVAL_PLUGINS in subprocesses).

They exercise the runner's contract: per-clip seeding with torch generators, slow clips to interrupt, failures,
bad outputs, and a metric whose feature extraction is counted.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from metrics.base import MetricInfo
from vm_eval.models.api import ModelInfo
from vm_eval.registries import METRICS, MODELS
from vm_eval.registry import Entry

SR = 16000


class TorchNoise:
    """Noise + a tone from a torch generator seeded by the clip's own seed (like real samplers)."""

    def __init__(self, seconds: float | None = None, sleep: float = 0.0, fail_on: str = "", interrupt_after: int = -1,
                 bad: str = ""):
        self.info = ModelInfo(name="test-noise", family="test", sample_rate=SR, trained=False)
        self.seconds, self.sleep, self.fail_on = seconds, sleep, set(filter(None, fail_on.split("+")))
        self.interrupt_after, self.bad, self.calls = interrupt_after, bad, 0

    def checkpoints(self):
        return [{"name": "test-noise", "path": None, "sha256": "0" * 64}]

    def generate(self, batch):
        import torch

        out = []
        for clip in batch:
            if self.interrupt_after >= 0 and self.calls >= self.interrupt_after:
                raise KeyboardInterrupt
            self.calls += 1
            time.sleep(self.sleep)
            log = os.environ.get("TEST_GEN_LOG")
            if log:
                with open(log, "a") as f:
                    f.write(clip.id + "\n")
            if clip.id in self.fail_on:
                out.append(RuntimeError(f"upstream crashed on {clip.id}"))
                continue
            n = int(round((self.seconds or clip.duration_s) * SR))
            g = torch.Generator().manual_seed(clip.seed)
            x = 0.1 * torch.randn(1, n, generator=g) + 0.3 * torch.sin(torch.arange(n) * 2 * np.pi * 440 / SR)
            if self.bad == "nan":
                x[0, 0] = float("nan")
            if self.bad == "empty":
                x = x[:, :0]
            if self.bad == "silent":
                x = x * 1e-5
            if self.bad == "clipped":
                x = torch.clamp(x * 20, -1, 1)
            if self.bad == "type":
                out.append("not audio")
                continue
            out.append((x, SR))
        return out


class CountingRMS:
    """RMS level in dBFS through a cached extractor; each extraction appends a line to $TEST_EXTRACT_LOG."""

    info = MetricInfo(name="test-rms", version=1, units="dBFS", higher_is_better=None, description="test metric",
                      sample_rate=8000, mono=True)

    def extract(self, audio, sr):
        if sr != self.info.sample_rate or audio.shape[0] != 1:  # the harness must resample and downmix for us
            raise AssertionError(f"got {audio.shape[0]} channel(s) at {sr} Hz")
        log = os.environ.get("TEST_EXTRACT_LOG")
        if log:
            with open(log, "a") as f:
                f.write("x\n")
        return np.array([float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))])

    def score_features(self, feats, ctx):
        return 20 * np.log10(max(float(feats[0]), 1e-12))


class NeedsReference:
    info = MetricInfo(name="test-ref-corr", version=1, units="r", higher_is_better=True, description="test metric",
                      needs_reference=True, sample_rate=8000, mono=True)

    def score(self, audio, sr, ctx):
        n = min(audio.shape[-1], ctx.reference.shape[-1])
        return float(np.corrcoef(audio[0, :n], ctx.reference[0, :n])[0, 1])


MODELS.add(Entry("test-noise", TorchNoise, "test: seeded torch noise", family="test"), replace=True)
METRICS.add(Entry("test-rms", CountingRMS, "test: cached RMS", family="test"), replace=True)
METRICS.add(Entry("test-ref-corr", NeedsReference, "test: correlation with reference", family="test"), replace=True)


def read_lines(path: str | Path) -> list[str]:
    p = Path(path)
    return p.read_text().split() if p.exists() else []
