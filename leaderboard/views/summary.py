"""The summary (the default view): headline metrics as columns, trained non-reference systems ranked by a chosen
metric with the rank range their 95% CIs allow, references and untrained runs apart and never ranked, and a forest
plot per headline metric. All numbers come from the shared summary core (vm_eval.summary: like-with-like CI
ranks), fed with the leaderboard's loaded tables for the current filter (leaderboard.records)."""
from __future__ import annotations

import html
import math

import pandas as pd
import streamlit as st

from leaderboard.data import Results
from leaderboard.records import records
from leaderboard.table import Filters
from leaderboard.views.common import downloads
from vm_eval.summary import Row, Summary, all_metrics, describe_skips, headline_metrics, summarize

FALLBACK = 4  # headline columns when no metric of a headline family ran (the first directional metrics)
PLOT_ROWS = 25  # systems per forest plot (the first in the sort order): more is neither readable nor fast
BADGE_STYLE = {"untrained": "#fff3cd", "ceiling": "#d1e7dd", "chance": "#f8d7da"}


def default_metrics(recs) -> list[str]:
    """Headline metrics of what ran (one per family); without any, the first directional metrics by name."""
    chosen = headline_metrics(recs)
    if chosen:
        return chosen
    directional = {m for r in recs for m, a in r.aggregates.items() if a.higher_is_better is not None}
    return [m for m in all_metrics(recs) if m in directional][:FALLBACK]


def _digits(summary: Summary, cid: str) -> int:
    vals = [abs(v) for r in summary.all_rows if (c := r.cells.get(cid)) for v in (c.mean, c.lo, c.hi)
            if v is not None]
    top = max(vals, default=0.0)
    return 3 if top < 1 else 2 if top < 10 else 1 if top < 100 else 0


def _fmt(x: float | None, d: int) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def rank_text(rr: tuple[int, int] | None) -> str:
    if rr is None:
        return "–"
    return str(rr[0]) if rr[0] == rr[1] else f"{rr[0]}–{rr[1]}"


def badge_text(row: Row) -> str:
    return "untrained" if row.badge == "untrained" else (f"reference: {row.badge}" if row.badge else "")


def summary_frame(summary: Summary) -> pd.DataFrame:
    """The summary as a flat table (downloads, tests): per row its group, rank range, system, badge, and per
    column mean, lo, hi, n, rank range, best, note."""
    out = []
    for group, rows in (("ranked", [r for r in summary.rows if r.ranked]),
                        ("untrained", [r for r in summary.rows if not r.ranked]), ("reference", summary.references)):
        for r in rows:
            d = {"group": group, "rank": rank_text(r.rank_range) if r.ranked else "", "system": r.label,
                 "badge": badge_text(r), "run_id": r.record.run_id}
            for col in summary.columns:
                c = r.cells.get(col.id)
                d.update({f"{col.label} / {k}": v for k, v in (
                    ("mean", c.mean if c else None), ("lo", c.lo if c else None), ("hi", c.hi if c else None),
                    ("n", c.n if c else None), ("rank", rank_text(c.rank_range) if c and c.rank_range else ""),
                    ("best", bool(c and c.best)), ("note", c.note if c else ""))})
            out.append(d)
    return pd.DataFrame(out)


def _cell_html(summary: Summary, row: Row, cid: str) -> str:
    c = row.cells.get(cid)
    if c is None or c.mean is None:
        return '<td class="na">–</td>'
    d = _digits(summary, cid)
    mean = f"<b>{_fmt(c.mean, d)}</b>" if c.best else _fmt(c.mean, d)
    ci = f"[{_fmt(c.lo, d)}, {_fmt(c.hi, d)}]" if c.lo is not None and c.hi is not None else "no CI"
    extra = f' <span class="rk">#{rank_text(c.rank_range)}</span>' if c.rank_range and row.ranked else ""
    note = f'<div class="note">{html.escape(c.note)}</div>' if c.note else ""
    star = ' <span title="CI entirely better than every other ranked system">★</span>' if c.best else ""
    return (f'<td title="{html.escape(c.note or "")}">{mean}{star}{extra}<div class="ci">{ci} · n={c.n}</div>'
            f"{note}</td>")


def _badge_html(row: Row) -> str:
    text = badge_text(row)
    if not text:
        return ""
    color = BADGE_STYLE.get(row.badge, "#e2e3e5")
    return f' <span class="badge" style="background:{color}">{html.escape(text)}</span>'


CSS = """<style>
table.vmsum {border-collapse: collapse; width: 100%; table-layout: auto; font-size: 0.85rem;}
table.vmsum th, table.vmsum td {border-bottom: 1px solid #ddd; padding: 4px 6px; text-align: left;
  vertical-align: top; overflow-wrap: break-word;}
table.vmsum th:first-child, table.vmsum td:first-child {white-space: nowrap;}
table.vmsum .note {overflow-wrap: anywhere;}
table.vmsum th {background: #f6f6f6; font-weight: 600;}
table.vmsum .ci {color: #555; font-size: 0.75rem;} table.vmsum .note {color: #8a6d3b; font-size: 0.72rem;}
table.vmsum .rk {color: #555; font-size: 0.72rem;} table.vmsum td.na {color: #aaa;}
table.vmsum .badge {border-radius: 8px; padding: 0 6px; font-size: 0.72rem; white-space: nowrap;}
</style>"""


def summary_html(summary: Summary, rows: list[Row], ranked: bool, test_id: str) -> str:
    """An HTML table that wraps instead of scrolling: rank range (ranked tables), system, one cell per column."""
    sort = summary.sort_by
    head = "".join(f'<th title="{html.escape(c.units or "")}">{html.escape(c.label)} {c.arrow}'
                   f'{" (sort)" if c.id == sort else ""}</th>' for c in summary.columns)
    body = []
    for r in rows:
        rank = f"<td>{rank_text(r.rank_range) if r.ranked else '–'}</td>" if ranked else ""
        cells = "".join(_cell_html(summary, r, c.id) for c in summary.columns)
        body.append(f'<tr data-run="{html.escape(r.record.run_id)}">{rank}<td>{html.escape(r.label)}'
                    f"{_badge_html(r)}</td>{cells}</tr>")
    rank_head = "<th>rank</th>" if ranked else ""
    return (f'{CSS}<table class="vmsum" data-testid="{test_id}"><thead><tr>{rank_head}<th>system</th>{head}</tr>'
            f"</thead><tbody>{''.join(body)}</tbody></table>")


ROLE_COLORS = {"ceiling": "#2ca02c", "chance": "#d62728", "rhythm-only bound": "#9467bd",
               "anchor (rhythm)": "#7f7f7f", "anchor (content)": "#8c564b", "reference": "#000000"}


def forest_spec(summary: Summary, column_id: str, limit: int | None = None) -> dict | None:
    """A Vega-Lite forest plot of one column from the core's plot records (vm_eval.summary.plotdata): a point
    and 95% CI bar per system (hollow: untrained, or no CI), n in each label, references as labelled dashed
    vertical lines; drawn by the browser, so a rerun only sends the numbers. None when nothing has a value."""
    from vm_eval.summary.plotdata import forest_data

    points, lines = forest_data(summary, column_id, limit)
    if not points and not lines:
        return None
    col = summary.column(column_id)
    order = [p.label for p in points]
    pts = [{"label": p.label, "mean": p.mean, "lo": p.lo, "hi": p.hi, "n": p.n,
            "filled": bool(p.ranked and p.lo is not None), "kind": "ranked" if p.ranked else p.badge} for p in points]
    refs = [{"ref": ln.label, "value": ln.value, "role": ln.role} for ln in lines]
    direction = {True: "higher is better", False: "lower is better"}.get(col.higher_is_better, "descriptive")
    title = f"{col.label} ({direction}){'; ' + col.units if col.units else ''}; mean and 95% CI"
    x = {"field": "mean", "type": "quantitative", "title": title, "scale": {"zero": False}}
    y = {"field": "label", "type": "nominal", "sort": order, "title": None, "axis": {"labelLimit": 260}}
    layers = []
    if pts:
        layers += [
            {"data": {"values": pts}, "mark": {"type": "rule", "strokeWidth": 2, "color": "#1f77b4"},
             "encoding": {"y": y, "x": {**x, "field": "lo"}, "x2": {"field": "hi"}}},
            *({"data": {"values": pts}, "transform": [{"filter": f"{'' if filled else '!'}datum.filled"}],
               "mark": {"type": "point", "size": 60, "strokeWidth": 2, "filled": filled, "color": "#1f77b4",
                        **({} if filled else {"fill": "white"})},
               "encoding": {"y": y, "x": x, "tooltip": [{"field": k} for k in ("label", "mean", "lo", "hi", "n")]}}
              for filled in (True, False))]
    if refs:
        color = {"field": "ref", "type": "nominal", "title": "references (not ranked)",
                 "scale": {"domain": [r["ref"] for r in refs],
                           "range": [ROLE_COLORS.get(r["role"], "#000000") for r in refs]},
                 "legend": {"orient": "bottom", "direction": "vertical", "labelLimit": 400, "symbolType": "stroke",
                            "symbolStrokeWidth": 2, "symbolDash": [5, 3]}}
        layers.append({"data": {"values": refs}, "mark": {"type": "rule", "strokeDash": [5, 3], "strokeWidth": 1.5},
                       "encoding": {"x": {**x, "field": "value"}, "color": color,
                                    "tooltip": [{"field": "ref"}]}})
        layers.append({"data": {"values": refs}, "mark": {"type": "text", "angle": 270, "align": "left",
                                                          "baseline": "bottom", "dy": -2, "fontSize": 9},
                       "encoding": {"x": {**x, "field": "value"}, "y": {"value": 0}, "text": {"field": "role"},
                                    "color": color}})
    return {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "layer": layers,
            "height": {"step": 26}, "width": "container",  # a row per system, whatever the count
            "config": {"axis": {"labelFontSize": 10, "titleFontSize": 10}}}


def _choices(recs, options: list[str]) -> tuple[list[str], str | None]:
    """The metric and sort pickers (their state kept only while valid for the current options)."""
    key = "sum-metrics"
    if key in st.session_state:
        st.session_state[key] = [m for m in st.session_state[key] if m in options]
    default = None if key in st.session_state else default_metrics(recs)  # registry look-ups: only once
    chosen = st.multiselect("headline metrics (default: one per family, from what ran)", options, default=default,
                            key=key)
    directional = {m for r in recs for m, a in r.aggregates.items() if a.higher_is_better is not None}
    sortable = [m for m in chosen if m in directional]
    if not sortable:
        return chosen, None
    if st.session_state.get("sum-sort") not in sortable:
        st.session_state.pop("sum-sort", None)
    sort = st.selectbox("sort systems by", sortable, key="sum-sort")
    return chosen, sort


@st.cache_resource(max_entries=16, show_spinner=False)
def cached_records(token: str, f: Filters, _res: Results, _matrix):
    """records() per load of the results folder (Results.token) and filter, so going
    back to a filter, or changing only the metric choice or sort, does not rebuild them."""
    return records(_res, f, _matrix)


def render(res: Results, f: Filters, matrix) -> None:
    recs = cached_records(res.token, f, res, matrix)
    if not recs:
        st.info("no runs match these filters")
        return
    nulls = st.toggle("offer null sub-scores (':vs-shift', ':vs-other') as metrics", value=False, key="sum-nulls")
    options = all_metrics(recs, nulls=nulls)
    chosen, sort = _choices(recs, options)
    if not chosen:
        st.info("choose at least one metric")
        return
    summary = summarize(recs, chosen, sort_by=sort)
    ranked = [r for r in summary.rows if r.ranked]
    untrained = [r for r in summary.rows if not r.ranked]
    st.caption("Ranked: trained, non-reference systems. Rank = the range of places the 95% CIs allow (1 + systems "
               "entirely better, to N - systems entirely worse), in the sort metric; ★ = CI entirely better than "
               "every other ranked system. Per-clip metrics are ranked on the clips every ranked system scored "
               "(like with like); where a system's n differs, the cell says so."
               + (" Clip filter active: per-clip metrics over the kept clips; set metrics (FAD) left out."
                  if f.clip_filter else ""))
    st.markdown(f"**{len(ranked)} ranked system(s)**" + (f" · {len(untrained)} untrained (badged, not ranked)"
                                                         if untrained else ""))
    if summary.rows:
        st.html(summary_html(summary, summary.rows, True, "summary-ranked"))
    else:
        st.info("no non-reference systems under these filters")
    if summary.references:
        st.markdown("**references** (never ranked: ground truth is the ceiling, random retrieval the chance "
                    "level, anchors are listening-test catch trials)")
        st.html(summary_html(summary, summary.references, False, "summary-references"))
    notes = [f"{c.label}: {n}" for c in summary.columns for n in c.notes]
    skips = {r.label: describe_skips(r.record.skip_reasons) for r in summary.all_rows if r.record.skip_reasons}
    if notes or skips:
        st.caption("  \n".join(notes + [f"{k}: {v}" for k, v in skips.items()]))
    if summary.not_run:
        st.caption(f"{len(summary.not_run)} metric(s) not run here: " + ", ".join(sorted(summary.not_run)))
    downloads(summary_frame(summary), "summary")
    st.markdown("#### forest plots (mean and 95% CI per system; references as vertical lines)")

    plotted = [c for c in summary.columns if any(c.id in r.cells for r in summary.all_rows)]
    if len(summary.rows) > PLOT_ROWS:
        st.caption(f"plots show the first {PLOT_ROWS} of {len(summary.rows)} systems in the sort order")
    for i in range(0, len(plotted), 2):
        slots = st.columns(2)
        for slot, col in zip(slots, plotted[i:i + 2]):
            with slot:
                spec = forest_spec(summary, col.id, PLOT_ROWS)
                if spec is None:
                    st.info(f"{col.label}: nothing to plot")
                else:
                    st.vega_lite_chart(spec, width="stretch", key=f"sum-forest-{col.id}")
