"""The summary of a set of runs: systems as rows, chosen metrics as columns, like-with-like CI ranks.

Rules (issue 17):
- A column is a metric identity (name + identity key); a name stored under several keys gives several columns.
- Ranked systems are the trained, non-reference ones. References (family "reference") are kept apart with their
  role and untrained runs are badged; neither is ranked nor "best", and neither counts in others' ranks.
- Like with like: a per-clip metric is ranked on the clips every ranked run scored with that identity. Where a
  ranked run's own n differs from that common set, its mean and 95% CI are recomputed on the common clips
  (percentile bootstrap over clips, as the stored aggregates). Set metrics (FAD) cannot be recomputed on a subset:
  a differing n is said in a note instead.
- Descriptive metrics (higher_is_better None, e.g. loudness) are shown, never ranked or starred.
- Rank: the CI rule of vm_eval.summary.ranks; "best" = rank range (1, 1), i.e. an interval entirely better than
  every other ranked system's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vm_eval.summary.headline import headline_metrics, is_subscore, metric_family
from vm_eval.summary.ranks import ci_ranks
from vm_eval.summary.records import ROLE_ORDER, MetricAgg, RunRecord, describe_skips


@dataclass(frozen=True)
class Column:
    """One metric identity shown as a column. ``ranked``: directional with at least one ranked value."""

    id: str  # "name@key", as the leaderboard's column ids
    name: str
    label: str  # name, + " [backbone or key]" when the name has several identities here
    family: str
    units: str
    higher_is_better: bool | None
    kind: str
    standard: bool
    ranked: bool
    common_clips: int | None  # clips every ranked run scored (per-clip metrics with scores loaded), else None
    notes: tuple[str, ...] = ()

    @property
    def arrow(self) -> str:
        return {True: "↑", False: "↓"}.get(self.higher_is_better, "")


@dataclass(frozen=True)
class Cell:
    """One system's value of one column: mean and 95% CI over ``n`` clips."""

    mean: float | None
    lo: float | None
    hi: float | None
    n: int
    n_stored: int  # the run's own n (its stored aggregate)
    recomputed: bool = False  # mean / CI recomputed on the column's common clips
    rank: int | None = None  # 1 + ranked systems entirely better; None when not ranked
    rank_range: tuple[int, int] | None = None  # (best, worst) rank the intervals allow
    best: bool = False  # ranked and rank_range == (1, 1)
    note: str = ""


@dataclass(frozen=True)
class Row:
    record: RunRecord
    cells: dict[str, Cell]  # by Column.id; absent: the run has no such metric identity
    ranked: bool
    badge: str  # "" | "untrained" | the reference role ("ceiling", "chance", ...)
    rank_range: tuple[int, int] | None = None  # in the sort column

    @property
    def label(self) -> str:
        return self.record.label


@dataclass(frozen=True)
class Summary:
    columns: list[Column]
    rows: list[Row]  # non-reference systems: ranked first (sorted best first), then untrained (same sort)
    references: list[Row]  # never ranked; by role (ceiling, chance, bounds, anchors)
    sort_by: str | None  # Column.id
    not_run: dict[str, str] = field(default_factory=dict)  # metric -> why it did not run (once per summary)

    def column(self, column_id: str) -> Column:
        for c in self.columns:
            if c.id == column_id:
                return c
        raise KeyError(column_id)

    @property
    def all_rows(self) -> list[Row]:
        return [*self.rows, *self.references]


def column_id(name: str, key: str | None) -> str:
    return f"{name}@{key or 'nokey'}"


def _ci(values: np.ndarray, seed: int) -> tuple[float | None, float | None, float | None]:
    from metrics.stats import bootstrap_mean

    e = bootstrap_mean(values, seed=seed)
    clean = lambda x: None if x is None or math.isnan(x) else float(x)  # noqa: E731
    return clean(e.mean), clean(e.lo), clean(e.hi)


def _identities(records: list[RunRecord], name: str) -> list[tuple[str | None, MetricAgg]]:
    """(key, a sample aggregate) of each identity of `name`, the most common first."""
    seen: dict[str | None, list[MetricAgg]] = {}
    for r in records:
        a = r.aggregates.get(name)
        if a is not None:
            seen.setdefault(a.key, []).append(a)
    return [(k, v[0]) for k, v in sorted(seen.items(), key=lambda kv: (-len(kv[1]), str(kv[0])))]


def common_clips(id_arrays: list[np.ndarray]) -> np.ndarray:
    """Sorted clip ids present in every array. Fast path for the usual case, every run scored the same clips
    (array_equal is cheap; sorting strings is not: np.intersect1d on 1,000 ids costs ~3 ms, x runs x columns)."""
    first = id_arrays[0]
    if all(len(a) == len(first) and np.array_equal(a, first) for a in id_arrays[1:]):
        return np.unique(first)
    common = set(first.tolist()).intersection(*(a.tolist() for a in id_arrays[1:]))
    return np.array(sorted(common), dtype=first.dtype if len(first) else str)


def _column_cells(name: str, key: str | None, sample: MetricAgg, records: list[RunRecord], like_with_like: bool,
                  seed: int) -> tuple[dict[str, Cell], int | None, list[str]]:
    """Cells by run id for one metric identity, the common clip count and the column's notes."""
    have = [r for r in records if r.aggregates.get(name) is not None and r.aggregates[name].key == key]
    ranked = [r for r in have if r.ranked]
    notes: list[str] = []
    common: np.ndarray | None = None
    if sample.kind == "clip" and ranked and all(name in r.clip_scores for r in ranked):
        common = common_clips([r.clip_scores[name][0] for r in ranked])
    values: dict[str, tuple] = {}
    for r in have:
        a = r.aggregates[name]
        values[r.run_id] = (a.mean, a.lo, a.hi, a.n, False)
    if common is not None and like_with_like and any(r.aggregates[name].n != len(common) for r in ranked):
        for r in ranked:
            ids, vals = r.clip_scores[name]
            keep = np.isin(ids, common)
            mean, lo, hi = _ci(vals[keep], seed)
            values[r.run_id] = (mean, lo, hi, int(keep.sum()), r.aggregates[name].n != int(keep.sum()))
        notes.append(f"ranked on the {len(common)} clips every ranked system scored")
    elif sample.kind != "clip" and len({r.aggregates[name].n for r in ranked}) > 1:
        notes.append(f"{sample.kind} metric: ranked systems scored different clip counts (n differs; a "
                     f"{sample.kind} value cannot be recomputed on common clips)")
    elif common is None and sample.kind == "clip" and len({r.aggregates[name].n for r in ranked}) > 1:
        notes.append("n differs between ranked systems (per-clip scores not loaded: not recomputed)")
    directional = sample.higher_is_better is not None
    order = [r for r in ranked if values[r.run_id][1] is not None and values[r.run_id][2] is not None]
    ranks: dict[str, tuple[int, int]] = {}
    if directional and order:
        lo = np.array([values[r.run_id][1] for r in order])
        hi = np.array([values[r.run_id][2] for r in order])
        best, worst = ci_ranks(lo, hi, bool(sample.higher_is_better))
        ranks = {r.run_id: (int(b), int(w)) for r, b, w in zip(order, best, worst)}
    top = max((v[3] for v in values.values()), default=0)
    cells = {}
    for r in have:
        mean, lo, hi, n, recomputed = values[r.run_id]
        a = r.aggregates[name]
        rr = ranks.get(r.run_id)
        note = []
        if recomputed:
            note.append(f"n={n} of its {a.n}: common clips")
        elif n < top:
            note.append(f"n={n}")
        skipped = dict(a.skip_reasons)
        if not is_subscore(name) and a.kind != "study":
            for why, k in r.skip_reasons.items():
                skipped[why] = skipped.get(why, 0) + k
        if skipped and n < top:
            note.append(describe_skips(skipped))
        cells[r.run_id] = Cell(mean=mean, lo=lo, hi=hi, n=n, n_stored=a.n, recomputed=recomputed,
                               rank=rr[0] if rr else None, rank_range=rr, best=bool(rr and rr == (1, 1)
                                                                                     and len(ranks) > 1),
                               note="; ".join(note))
    return cells, (len(common) if common is not None else None), notes


def _best_first(rows: list[Row], col: Column | None) -> list[Row]:
    if col is None or col.higher_is_better is None:
        return sorted(rows, key=lambda r: r.label)
    sign = -1.0 if col.higher_is_better else 1.0

    def key(r: Row):
        c = r.cells.get(col.id)
        m = c.mean if c is not None else None
        return (m is None, sign * m if m is not None else 0.0, r.label)

    return sorted(rows, key=key)


def summarize(records: list[RunRecord], metrics: list[str] | None = None, sort_by: str | None = None,
              like_with_like: bool = True, seed: int = 0) -> Summary:
    """The summary of `records` over `metrics` (default: the headline metrics), sorted by `sort_by` (a metric name
    or Column.id; default the first directional column)."""
    names = list(metrics) if metrics is not None else headline_metrics(records)
    columns: list[Column] = []
    cells_by_col: dict[str, dict[str, Cell]] = {}
    for name in names:
        idents = _identities(records, name)
        for key, sample in idents:
            cid = column_id(name, key)
            cells, common, notes = _column_cells(name, key, sample, records, like_with_like, seed)
            label = name
            if len(idents) > 1:
                label += f" [{sample.backbone or (key or 'nokey')[:8]}]"
            ranked = sample.higher_is_better is not None and any(c.rank is not None for c in cells.values())
            columns.append(Column(id=cid, name=name, label=label, family=metric_family(name), units=sample.units,
                                  higher_is_better=sample.higher_is_better, kind=sample.kind,
                                  standard=sample.standard, ranked=ranked, common_clips=common, notes=tuple(notes)))
            cells_by_col[cid] = cells
    sort_col = None
    if sort_by is not None:
        sort_col = next((c for c in columns if sort_by in (c.id, c.name)), None)
        if sort_col is None:
            from vm_eval.errors import UserError

            raise UserError(f"cannot sort by {sort_by!r}: not among the columns ({', '.join(c.name for c in columns)})")
    else:
        sort_col = next((c for c in columns if c.higher_is_better is not None), None)
    rows, refs, untrained = [], [], []
    for r in records:
        cells = {cid: cs[r.run_id] for cid, cs in cells_by_col.items() if r.run_id in cs}
        rr = cells[sort_col.id].rank_range if sort_col and sort_col.id in cells else None
        if r.is_reference:
            refs.append(Row(r, cells, False, r.role or "reference"))
        elif not r.trained:
            untrained.append(Row(r, cells, False, "untrained"))
        else:
            rows.append(Row(r, cells, True, "", rr))
    refs.sort(key=lambda row: (ROLE_ORDER.index(row.badge) if row.badge in ROLE_ORDER else len(ROLE_ORDER),
                               row.label))
    not_run: dict[str, str] = {}
    for r in records:
        for m, why in r.skipped_metrics.items():
            not_run.setdefault(m, why)
    return Summary(columns, _best_first(rows, sort_col) + _best_first(untrained, sort_col), refs,
                   sort_col.id if sort_col else None, dict(sorted(not_run.items())))
