"""Worker factories for the executor tests (importable by spawned processes and Ray actors)."""
from __future__ import annotations

import os
import time
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


def dying_worker_for_the_late_spawn(marker_dir: str, late_build_s: float):
    """`dying_worker`, staged by marker files for a pool that starts a second worker as it breaks. The worker whose
    pid the file "late-pid" holds (written once "late-spawning" exists) takes `late_build_s` seconds to build, so
    it reads no unit (nor a stop) before then. "die-always" dies only once "late-started" exists, so that the
    death comes after the late worker has been started. Every build leaves "built"."""
    d = Path(marker_dir)
    deadline = time.monotonic() + 60
    while (d / "late-spawning").exists() and not (d / "late-pid").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    if (d / "late-pid").exists() and (d / "late-pid").read_text() == str(os.getpid()):
        time.sleep(late_build_s)
    (d / "built").touch()
    run = dying_worker(marker_dir)

    def staged(name):
        deadline = time.monotonic() + 60
        while name == "die-always" and not (d / "late-started").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return run(name)

    return staged
