"""Forest plot of one summary column: mean and 95% CI per system, references as labelled vertical lines.

Built on a bare matplotlib Figure (no pyplot state), so it is safe in Streamlit, in tests and in threads.
"""
from __future__ import annotations

import re

from vm_eval.summary.table import Summary

_REF_STYLE = {"ceiling": ("tab:green", "--"), "chance": ("tab:red", ":"), "rhythm-only bound": ("tab:purple", "-."),
              "anchor (rhythm)": ("tab:gray", (0, (1, 1))), "anchor (content)": ("tab:brown", (0, (3, 1, 1, 1)))}


def forest_figure(summary: Summary, column_id: str, width_in: float = 6.0):
    """matplotlib Figure: one line per non-reference system (label with its n; untrained drawn hollow and
    badged), 95% CI as a horizontal bar, references as labelled vertical lines; x label names units and
    direction."""
    from matplotlib.figure import Figure

    col = summary.column(column_id)
    rows = [r for r in summary.rows if column_id in r.cells and r.cells[column_id].mean is not None]
    refs = [r for r in summary.references if column_id in r.cells and r.cells[column_id].mean is not None]
    height = 1.0 + 0.32 * max(len(rows), 1) + 0.16 * len(refs)
    fig = Figure(figsize=(width_in, height), layout="constrained")
    ax = fig.add_subplot()
    labels = []
    for i, r in enumerate(rows):
        c = r.cells[column_id]
        y = len(rows) - 1 - i  # best first, at the top
        face = "tab:blue" if r.ranked else "white"
        if c.lo is not None and c.hi is not None:
            ax.hlines(y, c.lo, c.hi, color="tab:blue", lw=2)
        ax.plot([c.mean], [y], "o", color="tab:blue", markerfacecolor=face, ms=6, zorder=3)
        badge = " [untrained]" if r.badge == "untrained" else ""
        rank = f"#{c.rank_range[0]}-{c.rank_range[1]} " if c.rank_range and c.rank_range[0] != c.rank_range[1] \
            else (f"#{c.rank} " if c.rank else "")
        labels.append((y, f"{rank}{r.label}{badge} (n={c.n})"))
    if labels:
        ax.set_yticks([y for y, _ in labels], [t for _, t in labels], fontsize=8)
    else:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no system scored", transform=ax.transAxes, ha="center", va="center", fontsize=8)
    ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
    for j, r in enumerate(refs):
        c = r.cells[column_id]
        color, style = _REF_STYLE.get(r.badge, ("black", "--"))
        ax.axvline(c.mean, color=color, ls=style, lw=1.2,
                   label=f"{r.label} ({r.badge}) {c.mean:.3g}, n={c.n}")
    if refs:
        # legend outside, below the axes (constrained layout makes room): it never covers a point
        fig.legend(loc="outside lower center", fontsize=7, frameon=False, ncol=1)
    arrow = {True: " (higher is better)", False: " (lower is better)"}.get(col.higher_is_better, " (descriptive)")
    units = f"{col.units}; " if col.units else ""
    ax.set_xlabel(f"{col.label}{arrow}\n{units}mean and 95% CI", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig


def figure_svg(fig, salt: str = "") -> str:
    """The figure as an inline SVG string (no XML prolog) for self-contained HTML: text as SVG text (no glyph
    definitions whose ids would clash between figures of one page), ids salted by `salt`, no metadata block
    (creator URL, date)."""
    import io

    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt or None}):
        fig.savefig(buf, format="svg", metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    # matplotlib numbers its element ids per figure (figure_1, axes_1, ...): unique per page with the salt
    prefix = re.sub(r"[^A-Za-z0-9_-]+", "-", salt) + "-" if salt else ""
    return re.sub(r' id="([A-Za-z.]+_\d+)"', lambda m: f' id="{prefix}{m.group(1)}"', text) if prefix else text
