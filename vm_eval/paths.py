"""Default locations, each overridable by an environment variable."""
from __future__ import annotations

import os
from pathlib import Path


def results_dir(override: str | Path | None = None) -> Path:
    return Path(override or os.environ.get("VM_EVAL_RESULTS", "results"))


def data_dir(override: str | Path | None = None) -> Path:
    return Path(override or os.environ.get("VM_EVAL_DATA", "data"))


def cache_dir(results: Path, override: str | Path | None = None) -> Path:
    """Feature and media cache; beside the results by default so one folder holds a study's state."""
    return Path(override or os.environ.get("VM_EVAL_CACHE") or (results / ".cache"))
