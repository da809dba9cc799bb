"""Which metrics a command runs: registry entries -> built metric objects with their identity keys.

A metric whose entry names pretrained weights gets them resolved here (vm_eval.weights) and passed as
`checkpoint=` (one) or `checkpoints={name: path}` (several); metrics never look for files themselves.
Stand-in metrics (MetricInfo.standard False, e.g. FAD on log-mel statistics) run by default only when no
standard metric of the same family can run.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from metrics.base import MetricInfo, input_kind, optional_inputs
from vm_eval.errors import UserError
from vm_eval.media import RESAMPLER
from vm_eval.registries import METRICS
from vm_eval.registry import Entry


class MetricNameMismatch(Exception):
    """A metric's MetricInfo name differs from its registry name: a bug in the metric's definition."""


class MetricUnavailable(UserError, RuntimeError):
    """A metric asked for by name cannot run here (missing package or weights, a backbone that fails to load)."""


@dataclass
class BoundMetric:
    name: str
    metric: object
    info: MetricInfo
    key: str
    inputs: dict = field(default_factory=dict)  # input key -> extractor
    optional: dict[str, tuple[str, ...]] = field(default_factory=dict)  # input a clip may lack -> its sub-scores

    @property
    def is_set(self) -> bool:
        return self.info.kind == "set"

    def identity(self) -> dict:
        return self.info.stored_identity(RESAMPLER, self.inputs or None)


def build(entry: Entry) -> BoundMetric:
    """The entry's metric, built (weights resolved) and checked to carry the entry's name."""
    factory = entry.load()
    kwargs = {}
    if entry.weights:
        from vm_eval.weights import require

        paths = {w: require(w) for w in entry.weights}
        kwargs = {"checkpoint": paths[entry.weights[0]]} if len(paths) == 1 else {"checkpoints": paths}
    metric = factory(**kwargs)
    if metric.info.name != entry.name:  # records carry the registry name, the key hashes MetricInfo's: one name
        raise MetricNameMismatch(f"metric registered as {entry.name!r} names itself {metric.info.name!r} in its "
                                 "MetricInfo; the two must be the same name")
    inputs = dict(getattr(metric, "inputs", {}) or {})
    for k in inputs:
        input_kind(k)  # validates the declared kinds early, with a clear message
    return BoundMetric(entry.name, metric, metric.info, metric.info.key(RESAMPLER, inputs or None), inputs,
                       optional_inputs(metric))


def resolve_metrics(names: list[str] | None) -> tuple[list[BoundMetric], dict[str, str]]:
    """The metrics to run and, for those that cannot run here, the reason. None = every metric that can run."""
    chosen: list[BoundMetric] = []
    skipped: dict[str, str] = {}
    entries = METRICS.entries() if names is None else [METRICS.get(n) for n in names]
    for entry in entries:
        ok, why = entry.availability()
        cause = None
        if ok:
            try:
                chosen.append(build(entry))
                continue
            except MetricNameMismatch:  # a bug in the metric's definition, not something this machine lacks
                raise
            except Exception as e:  # a backbone that fails to load skips only this metric
                why, cause = f"{type(e).__name__}: {e}", e
        if names is not None:  # chained: `vm-eval --debug` shows where a backbone failed to load
            raise MetricUnavailable(f"metric {entry.name} cannot run here: {why}") from cause
        skipped[entry.name] = why
    if names is None:
        standard_families = {METRICS.get(m.name).family for m in chosen if m.info.standard}
        for m in [m for m in chosen if not m.info.standard]:
            if METRICS.get(m.name).family in standard_families:
                chosen.remove(m)
                skipped[m.name] = "stand-in metric: a standard backbone of its family is available"
    return chosen, skipped
