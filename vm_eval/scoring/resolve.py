"""Which metrics a command runs: registry entries -> built metric objects with their identity keys.

A metric whose entry names pretrained weights gets them resolved here (vm_eval.weights) and passed as
`checkpoint=` (one) or `checkpoints={name: path}` (several); metrics never look for files themselves.
Stand-in metrics (MetricInfo.standard False, e.g. FAD on log-mel statistics) run by default only when no
standard metric of the same family can run.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from metrics.base import MetricInfo, input_kind
from vm_eval.media import RESAMPLER
from vm_eval.registries import METRICS
from vm_eval.registry import Entry


@dataclass
class BoundMetric:
    name: str
    metric: object
    info: MetricInfo
    key: str
    inputs: dict = field(default_factory=dict)  # input key -> extractor

    @property
    def is_set(self) -> bool:
        return self.info.kind == "set"

    def identity(self) -> dict:
        return {**self.info.identity(RESAMPLER, self.inputs or None), "key": self.key,
                "description": self.info.description}


def build(entry: Entry) -> BoundMetric:
    factory = entry.load()
    kwargs = {}
    if entry.weights:
        from vm_eval.weights import require

        paths = {w: require(w) for w in entry.weights}
        kwargs = {"checkpoint": paths[entry.weights[0]]} if len(paths) == 1 else {"checkpoints": paths}
    metric = factory(**kwargs)
    inputs = dict(getattr(metric, "inputs", {}) or {})
    for k in inputs:
        input_kind(k)  # validates the declared kinds early, with a clear message
    return BoundMetric(entry.name, metric, metric.info, metric.info.key(RESAMPLER, inputs or None), inputs)


def resolve_metrics(names: list[str] | None) -> tuple[list[BoundMetric], dict[str, str]]:
    """The metrics to run and, for those that cannot run here, the reason. None = every metric that can run."""
    chosen: list[BoundMetric] = []
    skipped: dict[str, str] = {}
    entries = METRICS.entries() if names is None else [METRICS.get(n) for n in names]
    for entry in entries:
        ok, why = entry.availability()
        if ok:
            try:
                chosen.append(build(entry))
                continue
            except Exception as e:  # a backbone that fails to load skips only this metric
                ok, why = False, f"{type(e).__name__}: {e}"
        if names is not None:
            raise RuntimeError(f"metric {entry.name} cannot run here: {why}")
        skipped[entry.name] = why
    if names is None:
        standard_families = {METRICS.get(m.name).family for m in chosen if m.info.standard}
        for m in [m for m in chosen if not m.info.standard]:
            if METRICS.get(m.name).family in standard_families:
                chosen.remove(m)
                skipped[m.name] = "stand-in metric: a standard backbone of its family is available"
    return chosen, skipped
