"""The report as one self-contained HTML file: inline CSS, plots as inline SVG, no script, no external URL."""
from __future__ import annotations

import html
from datetime import datetime, timezone

from vm_eval.report.collect import Breakdown, ReportData, Section
from vm_eval.summary import Row, Summary
from vm_eval.summary.text import SHORT_ROLE, _digits, cell_text, fewer_clips_lines, not_run_lines

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;max-width:1200px;margin:24px auto;
padding:0 16px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:20px;margin:32px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:16px;margin:20px 0 6px}
table{border-collapse:collapse;margin:6px 0 10px;font-variant-numeric:tabular-nums}
th,td{padding:3px 9px;border-bottom:1px solid #eee;text-align:left;vertical-align:top;white-space:nowrap}
th{background:#f5f5f7;font-weight:600}
tr.rule td{background:#fafafa;color:#555;font-style:italic;border-top:2px solid #999}
tr.reference td{color:#444}
td.best{font-weight:700;background:#e8f5e9}
.badge{display:inline-block;font-size:11px;padding:0 6px;border-radius:8px;margin-left:6px;background:#eee}
.badge.untrained{background:#fff3cd;color:#7a5b00}.badge.role{background:#e3f2fd;color:#0d47a1}
.notes{color:#555;font-size:12px;margin:0 0 8px 18px;padding:0}
.forest{display:inline-block;margin:0 16px 16px 0;vertical-align:top}.forest svg{max-width:100%;height:auto}
.muted{color:#777}.small{font-size:12px}td.small{white-space:normal;word-break:break-all;min-width:14em}
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _label_cell(row: Row) -> str:
    r = row.record
    badge = ""
    if row.badge == "untrained":
        badge = '<span class="badge untrained" title="untrained or random-initialised backbone: never ranked">' \
                'untrained</span>'
    elif row.badge:
        badge = f'<span class="badge role">{_e(row.badge)}</span>'
    return f'<td class="label">{_e(r.label)}{badge} <span class="muted small">{_e(r.run_id[:8])}</span></td>'


def summary_table(s: Summary, table_id: str) -> str:
    """The summary as an HTML table: ranked and untrained systems, a rule, the references."""
    everyone = s.all_rows
    digits = [_digits(c, everyone) for c in s.columns]
    tops = [max((r.cells[c.id].n for r in everyone if c.id in r.cells), default=0) for c in s.columns]
    head = "".join(f'<th data-column="{_e(c.id)}" title="{_e(c.units)}">{_e(c.label)} {_e(c.arrow)}</th>'
                   for c in s.columns)
    out = [f'<table class="summary" id="{_e(table_id)}"><thead><tr><th>system</th><th>rank</th>{head}</tr></thead>'
           "<tbody>"]

    def cells(row: Row) -> str:
        parts = []
        for c, d, t in zip(s.columns, digits, tops):
            cell = row.cells.get(c.id)
            cls = ' class="best"' if cell is not None and cell.best else ""
            title = f' title="{_e(cell.note)}"' if cell is not None and cell.note else ""
            parts.append(f"<td{cls}{title}>{_e(cell_text(cell, d, t))}</td>")
        return "".join(parts)

    for row in s.rows:
        rank = "-" if not row.rank_range else (str(row.rank_range[0]) if row.rank_range[0] == row.rank_range[1]
                                                 else f"{row.rank_range[0]}-{row.rank_range[1]}")
        kind = "ranked" if row.ranked else "untrained"
        out.append(f'<tr class="system {kind}" data-run="{_e(row.record.run_id)}">{_label_cell(row)}'
                   f"<td>{_e(rank)}</td>{cells(row)}</tr>")
    if s.references:
        out.append(f'<tr class="rule"><td colspan="{2 + len(s.columns)}">references (never ranked)</td></tr>')
        for row in s.references:
            out.append(f'<tr class="reference" data-run="{_e(row.record.run_id)}" data-role="{_e(row.badge)}">'
                       f"{_label_cell(row)}<td></td>{cells(row)}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _notes(s: Summary) -> str:
    sort = next((c.label for c in s.columns if c.id == s.sort_by), "-")
    items = [f"cells: mean [95% bootstrap CI over clips]; n=N where a system has fewer clips than the column's most; "
             f"rows sorted by {sort}; rank: range of CI ranks (1 + systems whose CI is entirely better, to N - those "
             "entirely worse); bold = CI entirely better than every other ranked system's; references and untrained "
             "runs are never ranked"]
    for c in s.columns:
        items += [f"{c.label}: {n}" for n in c.notes]
        if not c.standard:
            items.append(f"{c.label}: NON-STANDARD stand-in backbone (offline demo), not comparable to published "
                         "values")
    items += fewer_clips_lines(s)
    items += not_run_lines(s.not_run)
    return '<ul class="notes">' + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def _forests(s: Summary) -> str:
    from vm_eval.summary import forest_figure
    from vm_eval.summary.forest import figure_svg

    out = []
    for c in s.columns:
        if c.higher_is_better is None and c.kind != "study":
            continue
        fig = forest_figure(s, c.id, width_in=5.6)
        out.append(f'<figure class="forest" data-column="{_e(c.id)}">{figure_svg(fig, c.id)}'
                   f'<figcaption class="small muted">{_e(c.label)}: mean and 95% CI per system; references as '
                   "labelled lines</figcaption></figure>")
    return "".join(out)


def _breakdown(b: Breakdown, s: Summary) -> str:
    col = s.column(b.column_id)
    rows = [r for r in s.all_rows if r.record.run_id in b.values]
    d = _digits(col, rows)
    head = "".join(f"<th>{_e(g)}</th>" for g in b.groups)
    out = [f'<table class="breakdown" data-column="{_e(b.column_id)}" data-axis="{_e(b.axis)}"><thead><tr>'
           f"<th>{_e(col.label)} {_e(col.arrow)} by {_e(b.axis)}</th>{head}</tr></thead><tbody>"]
    for r in rows:
        tds = []
        for g in b.groups:
            mean, lo, hi, n = b.values[r.record.run_id][g]
            text = "-" if mean is None else f"{mean:.{d}f}" + (f" [{lo:.{d}f}, {hi:.{d}f}]" if lo is not None else "")
            tds.append(f"<td>{_e(text)} <span class='muted small'>n={n}</span></td>")
        badge = f" ({SHORT_ROLE.get(r.badge, r.badge)})" if r.badge else ""
        out.append(f"<tr><td>{_e(r.record.label + badge)}</td>{''.join(tds)}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _section(sec: Section, k: int) -> str:
    s = sec.summary
    parts = [f'<section class="dataset" id="sec-{k}"><h2>{_e(sec.dataset)}/{_e(sec.split)}: '
             f"{len(s.all_rows)} run(s)</h2>", "<h3>Summary</h3>", summary_table(s, f"summary-{k}"), _notes(s)]
    forests = _forests(s)
    if forests:
        parts += ["<h3>Forest plots</h3>", forests]
    if sec.breakdowns:
        parts.append("<h3>Breakdowns: per video category and real vs AI-generated videos</h3>")
        parts += [_breakdown(b, s) for b in sec.breakdowns]
        parts.append('<p class="small muted">a single-clip group has no CI: read it as one example, not an estimate'
                     "</p>")
    parts.append("</section>")
    return "".join(parts)


def _study(study: dict | None) -> str:
    if not study:
        return ('<section id="study"><h2>Listening test</h2><p class="muted">no analysed listening study for these '
                "runs (`vm-eval study analyze STUDY_DIR`, or `vm-eval report --study STUDY_DIR`)</p></section>")
    s = study["summary"]
    parts = [f'<section id="study"><h2>Listening test</h2><p class="small muted">{_e(study.get("source", ""))}: '
             f"{_e(s.get('raters_kept', '?'))} of {_e(s.get('raters', '?'))} raters kept by the catch-trial rule, "
             f"{_e(s.get('votes', '?'))} votes</p>"]
    for q, qs in sorted((s.get("questions") or {}).items(), key=lambda kv: (kv[0] != "overall", kv[0])):
        alpha = (qs.get("agreement") or {}).get("alpha")
        alpha_text = "not computable" if alpha is None else f"{alpha:.2f}"
        parts.append(f"<h3>{_e(q)}</h3><p class='small'>{_e(qs.get('votes'))} votes from {_e(qs.get('raters'))} "
                     f"raters; Krippendorff's alpha {_e(alpha_text)}</p>")
        parts.append('<table class="study" data-question="' + _e(q) + '"><thead><tr><th>rank</th><th>system</th>'
                     "<th>Bradley-Terry log-strength</th><th>95% CI</th></tr></thead><tbody>")
        for r in qs.get("ranking", []):
            fmt = lambda x: "-" if x is None else f"{x:+.3f}"  # noqa: E731
            parts.append(f"<tr><td>{_e(r.get('rank'))}</td><td>{_e(r.get('system'))}</td>"
                         f"<td>{_e(fmt(r.get('strength')))}</td><td>[{_e(fmt(r.get('ci_lo')))}, "
                         f"{_e(fmt(r.get('ci_hi')))}]</td></tr>")
        parts.append("</tbody></table>")
    parts.append("</section>")
    return "".join(parts)


def _provenance(data: ReportData) -> str:
    parts = ['<section id="provenance"><h2>Provenance</h2><table class="provenance"><thead><tr><th>run</th>'
             "<th>code</th><th>created</th><th>checkpoints (sha256)</th><th>metric backbones (sha256)</th></tr>"
             "</thead><tbody>"]
    for p in data.provenance:
        code = p["code"]
        code_text = f"{code.get('version', '?')} {str(code.get('git_sha') or '?')[:12]}" + (
            " (uncommitted changes)" if code.get("dirty") else "")
        cks = "<br>".join(_e(f"{c.get('name')}: {str(c.get('sha256', ''))[:16]}") if isinstance(c, dict) else _e(c)
                          for c in p["checkpoints"]) or "-"
        bbs = "<br>".join(_e(f"{k}: {v}") for k, v in sorted(p["backbones"].items())) or "-"
        parts.append(f"<tr><td>{_e(p['label'])} <span class='muted small'>{_e(p['run_id'])}</span></td>"
                     f"<td>{_e(code_text)}</td><td>{_e(p.get('created') or '-')}</td><td class='small'>{cks}</td>"
                     f"<td class='small'>{bbs}</td></tr>")
    parts.append("</tbody></table>")
    versions: dict[str, set[str]] = {}
    for p in data.provenance:
        for name, v in (p["packages"] or {}).items():
            versions.setdefault(name, set()).add(str(v))
    if versions:
        parts.append('<h3>Packages</h3><table class="packages"><thead><tr><th>package</th><th>version(s)</th></tr>'
                     "</thead><tbody>")
        parts += [f"<tr><td>{_e(n)}</td><td>{_e(', '.join(sorted(v)))}</td></tr>" for n, v in sorted(versions.items())]
        parts.append("</tbody></table>")
    parts.append("</section>")
    return "".join(parts)


def _metric_docs(data: ReportData) -> str:
    if not data.metric_docs:
        return ""
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in sorted(data.metric_docs.items()))
    return ('<section id="metrics"><h2>Metrics shown</h2><table class="metrics"><thead><tr><th>metric</th>'
            f"<th>what it measures</th></tr></thead><tbody>{rows}</tbody></table></section>")


def render(data: ReportData, title: str = "vm-eval report") -> str:
    """The whole report as one HTML string."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    body = [f"<h1>{_e(title)}</h1><p class='muted small'>generated {now} from {_e(data.results)}; "
            f"{len(data.provenance)} run(s)</p>"]
    if not data.sections:
        body.append("<p>no runs stored</p>")
    body += [_section(sec, k) for k, sec in enumerate(data.sections)]
    body += [_study(data.study), _metric_docs(data), _provenance(data)]
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f"<body>{''.join(body)}</body></html>\n")
