"""What a forest plot of one summary column shows, as plain records: one point per non-reference system (mean, 95%
CI, n, rank, badge) and one line per reference. For renderers other than forest.forest_figure (the leaderboard
draws them in the browser with Vega-Lite: a matplotlib figure per metric costs 0.1-0.3 s per rerun)."""
from __future__ import annotations

from dataclasses import dataclass

from vm_eval.summary.table import Summary


@dataclass(frozen=True)
class ForestPoint:
    label: str  # "#1-2 name [untrained] (n=7)": rank range in the column, badge, clips
    system: str
    mean: float
    lo: float | None  # None: no CI (fewer than 2 clips), drawn hollow
    hi: float | None
    n: int
    ranked: bool  # False: untrained (badged, drawn hollow, never ranked)
    badge: str


@dataclass(frozen=True)
class ForestLine:
    label: str  # "ground-truth (ceiling) 1.44, n=5"
    system: str
    role: str
    value: float
    n: int


def _rank(rr: tuple[int, int] | None) -> str:
    if not rr:
        return ""
    return f"#{rr[0]} " if rr[0] == rr[1] else f"#{rr[0]}-{rr[1]} "


def forest_data(summary: Summary, column_id: str, limit: int | None = None) -> tuple[list[ForestPoint],
                                                                                       list[ForestLine]]:
    """(points, reference lines) of `column_id`, in the summary's order (best first); `limit` keeps the first
    systems only. Rows without a value in the column are left out."""
    rows = [r for r in summary.rows if (c := r.cells.get(column_id)) is not None and c.mean is not None]
    points = []
    for r in rows[:limit] if limit else rows:
        c = r.cells[column_id]
        badge = " [untrained]" if r.badge == "untrained" else ""
        points.append(ForestPoint(f"{_rank(c.rank_range)}{r.label}{badge} (n={c.n})", r.label, c.mean, c.lo, c.hi,
                                  c.n, r.ranked, r.badge))
    lines = [ForestLine(f"{r.label} ({r.badge}) {c.mean:.3g}, n={c.n}", r.label, r.badge, c.mean, c.n)
             for r in summary.references if (c := r.cells.get(column_id)) is not None and c.mean is not None]
    return points, lines
