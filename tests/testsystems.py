"""Test-only models and metrics, registered on import (directly, or through VM_EVAL_PLUGINS in subprocesses).

They exercise the runner's contract: per-clip seeding with torch generators, slow clips to interrupt, failures,
bad outputs, and a metric whose feature extraction is counted.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from metrics.base import ExtractorInfo, MetricInfo, SetScore
from vm_eval.models.api import ModelInfo
from vm_eval.registries import METRICS, MODELS
from vm_eval.registry import Entry

SR = 16000


class TorchNoise:
    """Noise + a tone from a torch generator seeded by the clip's own seed (like real samplers)."""

    def __init__(self, seconds: float | None = None, sleep: float = 0.0, fail_on: str = "", interrupt_after: int = -1,
                 bad: str = "", raise_on: str = ""):
        """`fail_on`: clip ids (joined by +) given an exception as their output; `raise_on`: clip ids whose batch
        raises (from `_decode_step_that_breaks`, a frame a traceback must show)."""
        self.info = ModelInfo(name="test-noise", family="test", sample_rate=SR, trained=False)
        self.seconds, self.sleep, self.fail_on = seconds, sleep, set(filter(None, fail_on.split("+")))
        self.raise_on = set(filter(None, raise_on.split("+")))
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
            if clip.id in self.raise_on:
                _decode_step_that_breaks(clip.id)
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


def _decode_step_that_breaks(clip_id: str) -> None:
    raise ZeroDivisionError(f"step 3 of {clip_id} divided by zero")


def _log(var: str) -> None:
    path = os.environ.get(var)
    if path:
        with open(path, "a") as f:
            f.write("x\n")


class RMSExtractor:
    """RMS of the audio at 8 kHz mono; each extraction appends a line to $TEST_EXTRACT_LOG."""

    info = ExtractorInfo(name="test-rms", version=1, sample_rate=8000, mono=True)

    def __call__(self, audio, sr):
        if sr != self.info.sample_rate or audio.shape[0] != 1:  # the harness must resample and downmix for us
            raise AssertionError(f"got {audio.shape[0]} channel(s) at {sr} Hz")
        _log("TEST_EXTRACT_LOG")
        return np.array([float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))])


class Brightness:
    """Mean brightness per frame at 5 fps, 32x32; each extraction appends to $TEST_VIDEO_LOG."""

    info = ExtractorInfo(name="test-brightness", version=1, fps=5.0, size=(32, 32))

    def __call__(self, frames, fps):
        assert frames.shape[1:] == (32, 32, 3) and fps == 5.0
        _log("TEST_VIDEO_LOG")
        return frames.reshape(len(frames), -1).mean(axis=1)


class CountingRMS:
    """RMS level in dBFS from a cached extractor."""

    info = MetricInfo(name="test-rms", version=1, units="dBFS", higher_is_better=None, description="test metric")
    inputs = {"audio": RMSExtractor()}

    def score_features(self, feats, ctx):
        return 20 * np.log10(max(float(feats["audio"][0]), 1e-12))


class LoudVsVideo:
    """Main value: RMS x mean brightness; sub-score against another clip's audio (the null)."""

    info = MetricInfo(name="test-av", version=1, units="", higher_is_better=True, description="test metric")
    inputs = {"audio": RMSExtractor(), "other-audio": RMSExtractor(), "video": Brightness()}

    def score_features(self, feats, ctx):
        b = float(feats["video"].mean())
        own = float(feats["audio"][0]) * b
        if "other-audio" not in feats:  # no donor (a one-clip split): the harness skips the null sub-score
            return {"": own}
        return {"": own, "vs-other": own - float(feats["other-audio"][0]) * b}


class SetRMS:
    """Set metric: |mean RMS of generated clips - mean RMS of the reference set|, per clip too."""

    info = MetricInfo(name="test-set-rms", version=1, units="", higher_is_better=False, description="test",
                      kind="set")
    inputs = {"audio": RMSExtractor(), "reference": RMSExtractor()}

    def reference_statistics(self, ref_feats):
        _log("TEST_REFSTATS_LOG")
        return np.array([np.mean([f[0] for f in ref_feats]), len(ref_feats)])

    def score_set(self, gen_feats, ref_stats, seed):
        per = {cid: abs(float(f["audio"][0]) - ref_stats[0]) for cid, f in gen_feats.items()}
        gen_mean = np.mean([f["audio"][0] for f in gen_feats.values()])
        v = abs(float(gen_mean) - float(ref_stats[0]))
        return SetScore(v, v, v, len(gen_feats), int(ref_stats[1]), per_clip=per)


class NeedsReference:
    info = MetricInfo(name="test-ref-corr", version=1, units="r", higher_is_better=True, description="test metric",
                      needs_reference=True, sample_rate=8000, mono=True)

    def score(self, audio, sr, ctx):
        n = min(audio.shape[-1], ctx.reference.shape[-1])
        return float(np.corrcoef(audio[0, :n], ctx.reference[0, :n])[0, 1])


MODELS.add(Entry("test-noise", TorchNoise, "test: seeded torch noise", family="test"), replace=True)
METRICS.add(Entry("test-rms", CountingRMS, "test: cached RMS", family="test"), replace=True)
METRICS.add(Entry("test-av", LoudVsVideo, "test: audio x video with a null", family="test"), replace=True)
METRICS.add(Entry("test-set-rms", SetRMS, "test: set-level RMS distance", family="test"), replace=True)
METRICS.add(Entry("test-ref-corr", NeedsReference, "test: correlation with reference", family="test"), replace=True)


def read_lines(path: str | Path) -> list[str]:
    p = Path(path)
    return p.read_text().split() if p.exists() else []
