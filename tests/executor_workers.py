"""Worker factories for the executor tests (importable by spawned processes and Ray actors)."""
from __future__ import annotations

import os
from pathlib import Path


def square_worker(offset: int):
    """A worker whose state (the offset) is built once; counts its builds in $EXECUTOR_TEST_BUILDS if set."""
    builds = os.environ.get("EXECUTOR_TEST_BUILDS")
    if builds:
        with open(builds, "a") as f:
            f.write(f"{os.getpid()}\n")

    def run(x):
        if x == "raise":
            raise ValueError("this unit fails")
        return (x * x + offset, os.getpid())

    return run


def dying_worker(marker_dir: str):
    """Units named "die-once-*" kill their process the first time (a marker file remembers), "die-always" every
    time; others return their name."""
    def run(name):
        marker = Path(marker_dir) / name
        if name == "die-always" or (name.startswith("die-once") and not marker.exists()):
            marker.touch()
            os._exit(1)  # a worker that dies mid-unit, as a killed or crashed process does
        return name

    return run
