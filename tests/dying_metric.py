"""A test metric whose scoring kills its own process once per clip named in $VM_EVAL_TEST_DIE_ONCE (a marker file in
$VM_EVAL_TEST_DIE_ONCE_DIR remembers; VM_EVAL_ variables reach Ray workers too), as a worker killed mid-unit would. Registered on import: imported by the one test
that uses it and, through VM_EVAL_PLUGINS, by that test's worker processes; the test removes it afterwards."""
from __future__ import annotations

import os
from pathlib import Path

from metrics.base import MetricInfo
from vm_eval.registries import METRICS
from vm_eval.registry import Entry


class DiesOnce:
    info = MetricInfo(name="test-die-once", version=1, units="", higher_is_better=True, description="test metric")

    def score(self, audio, sr, ctx):
        marker = Path(os.environ["VM_EVAL_TEST_DIE_ONCE_DIR"]) / ctx.clip_id
        if ctx.clip_id in os.environ.get("VM_EVAL_TEST_DIE_ONCE", "").split(",") and not marker.exists():
            marker.touch()
            os._exit(1)
        return 1.0


METRICS.add(Entry("test-die-once", DiesOnce, "test: kills its worker once on chosen clips", family="test"),
            replace=True)
