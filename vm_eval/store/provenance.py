"""What a result needs to be reproduced: code version, package versions, platform, and timestamps."""
from __future__ import annotations

import functools
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

# Distributions whose versions change numbers (recorded when installed).
PACKAGES = (
    "vm-eval", "numpy", "scipy", "pandas", "pyarrow", "soundfile", "av", "pyloudnorm", "librosa", "torch",
    "torchaudio", "torchvision", "transformers", "peft", "audiocraft", "open_clip_torch", "laion-clap",
    "frechet-audio-distance", "madmom", "mir_eval", "scenedetect",
)


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """git sha of the suite's checkout and whether it had uncommitted changes (None outside a checkout)."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git_sha": sha, "dirty": bool(dirty) if sha else None, "version": _version("vm-eval")}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for d in PACKAGES:
        v = _version(d)
        if v is not None:
            out[d] = v
    return out


def environment() -> dict:
    env = {"platform": platform.platform(), "machine": platform.machine(), "processor_count": _cpus()}
    torch = sys.modules.get("torch")  # only report devices if a model already imported torch
    if torch is not None:
        env["torch_cuda"] = getattr(torch.version, "cuda", None)
        env["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return env


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
