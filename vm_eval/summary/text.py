"""The summary as terminal text: systems as rows, metrics as columns, references below a rule, within a width.

Columns that do not fit the width go to a further block of the table (the system column repeated), as pandas
prints wide frames; footnotes are wrapped to the width, so every printed line fits.
"""
from __future__ import annotations

import math
import textwrap

from vm_eval.summary.records import describe_skips
from vm_eval.summary.table import Cell, Column, Row, Summary

WIDTH = 100
LABEL_MAX = 40
# compact role names for the label column (the record keeps the full role)
SHORT_ROLE = {"rhythm-only bound": "rhythm bound", "anchor (rhythm)": "rhythm anchor",
              "anchor (content)": "content anchor"}
GAP = "  "


def _digits(col: Column, rows: list[Row]) -> int:
    """Decimals for a column: about three significant digits of its largest value."""
    vals = [abs(v) for r in rows if (c := r.cells.get(col.id)) for v in (c.mean, c.lo, c.hi) if v is not None]
    top = max(vals, default=0.0)
    return 3 if top < 1 else 2 if top < 10 else 1 if top < 100 else 0


def _num(x: float | None, d: int) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def cell_text(c: Cell | None, d: int, top_n: int) -> str:
    """"mean [lo, hi]" + " n=N" where fewer clips than the column's most + "*" for the best ranked system."""
    if c is None:
        return "-"
    text = _num(c.mean, d)
    if c.lo is not None and c.hi is not None:
        text += f" [{_num(c.lo, d)}, {_num(c.hi, d)}]"
    if c.n < top_n or c.recomputed:
        text += f" n={c.n}"
    return text + ("*" if c.best else "")


def _label(row: Row) -> str:
    r = row.record
    if row.badge == "untrained":
        tail = " [untrained]"
    elif row.badge:
        tail = f" ({SHORT_ROLE.get(row.badge, row.badge)})"
    else:
        tail = ""
    name = r.label
    if len(name) + len(tail) > LABEL_MAX:
        name = name[: max(LABEL_MAX - len(tail) - 1, 8)] + "…"
    return name + tail


def _rank(row: Row) -> str:
    if not row.ranked or row.rank_range is None:
        return "-"
    a, b = row.rank_range
    return f"{a}" if a == b else f"{a}-{b}"


def _header(col: Column) -> str:
    return f"{col.label} {col.arrow}".rstrip()


def _blocks(widths: list[int], fixed: int, width: int) -> list[list[int]]:
    """Column indices per block so that fixed + the block's columns fit `width` (at least one column each)."""
    blocks, cur, used = [], [], fixed
    for i, w in enumerate(widths):
        if cur and used + len(GAP) + w > width:
            blocks.append(cur)
            cur, used = [], fixed
        cur.append(i)
        used += len(GAP) + w
    if cur:
        blocks.append(cur)
    return blocks or [[]]


def format_summary(summary: Summary, width: int = WIDTH, title: str = "") -> str:
    """The summary table and its footnotes as text, every line at most `width` characters."""
    rows, refs = summary.rows, summary.references
    everyone = rows + refs
    if not everyone:
        return "no runs stored"
    cols = summary.columns
    digits = [_digits(c, everyone) for c in cols]
    tops = [max((r.cells[c.id].n for r in everyone if c.id in r.cells), default=0) for c in cols]
    table = {id(r): [cell_text(r.cells.get(c.id), d, t) for c, d, t in zip(cols, digits, tops)] for r in everyone}
    headers = [_header(c) for c in cols]
    widths = [max([len(h)] + [len(table[id(r)][i]) for r in everyone]) for i, h in enumerate(headers)]
    sort_col = next((c for c in cols if c.id == summary.sort_by), None)
    labels = {id(r): _label(r) for r in everyone}
    lw = max([len("system")] + [len(x) for x in labels.values()])
    rank_head = "rank"
    rw = max([len(rank_head)] + [len(_rank(r)) for r in rows])
    fixed = lw + len(GAP) + rw
    lines: list[str] = [title] if title else []
    for block in _blocks(widths, fixed, width):
        fmt = lambda first, rank, cells: GAP.join([first.ljust(lw), rank.ljust(rw)] + [  # noqa: E731
            cells[i].ljust(widths[i]) for i in block]).rstrip()
        lines.append(fmt("system", rank_head, headers))
        lines.append(fmt("-" * lw, "-" * rw, ["-" * w for w in widths]))
        for r in rows:
            lines.append(fmt(labels[id(r)], _rank(r), table[id(r)]))
        if refs:
            rule = "references (never ranked) "
            lines.append(rule + "-" * max(min(width, fixed + sum(len(GAP) + widths[i] for i in block)) - len(rule), 0))
            for r in refs:
                lines.append(fmt(labels[id(r)], "", table[id(r)]))
        lines.append("")
    lines.pop()
    notes = ["cells: mean [95% bootstrap CI over clips]; n=N where a system has fewer clips than the column's most",
             f"rank: range of CI ranks by {sort_col.label if sort_col else '-'} (1 + systems whose CI is entirely "
             "better, to N - those entirely worse); * = CI entirely better than every other ranked system's; "
             "↑/↓ higher/lower is better; references and [untrained] runs are never ranked or starred; metrics "
             "without an arrow are descriptive"]
    if not any(r.ranked for r in rows):
        notes.append("no trained non-reference system here: nothing is ranked")
    for c in cols:
        for n in c.notes:
            notes.append(f"{c.label}: {n}")
        if not c.standard:
            notes.append(f"{c.label}: NON-STANDARD stand-in backbone (offline demo); not comparable to published "
                         "values")
    notes += fewer_clips_lines(summary)
    notes.append("runs: " + ", ".join(f"{r.label} {r.record.run_id[:8]}" for r in everyone))
    notes += not_run_lines(summary.not_run)
    for n in notes:
        lines += textwrap.wrap(n, width, subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join(lines)


def fewer_clips_lines(summary: Summary) -> list[str]:
    """'a, b: n=7: 3 clips have no reference music': systems with fewer clips than a column's most, and why."""
    everyone = summary.all_rows
    tops = {c.id: max((r.cells[c.id].n for r in everyone if c.id in r.cells), default=0) for c in summary.columns}
    by_note: dict[str, list[str]] = {}
    for r in everyone:
        short = sorted({cell.n for cid, cell in r.cells.items() if cell.n < tops.get(cid, 0)})
        if short:
            why = describe_skips(r.record.skip_reasons)
            if any(cell.recomputed for cell in r.cells.values()):
                why = "; ".join(x for x in (why, "recomputed on the clips every ranked system scored") if x)
            text = f"n={'/'.join(map(str, short))}" + (f": {why}" if why else "")
            by_note.setdefault(text, []).append(r.label)
    return [f"{', '.join(who)}: {note}" for note, who in by_note.items()]


def not_run_lines(not_run: dict[str, str]) -> list[str]:
    """One line per reason: 'N metric(s) not run here (reason; see `vm-eval metrics`): a, b, ...'."""
    by_reason: dict[str, list[str]] = {}
    for name, why in not_run.items():
        by_reason.setdefault(str(why).split(":")[0], []).append(name)
    return [f"{len(names)} metric(s) not run here ({why}; see `vm-eval metrics`): {', '.join(sorted(names))}"
            for why, names in sorted(by_reason.items())]
