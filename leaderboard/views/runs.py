"""The main table: one row per run, one column per metric identity (mean, with CI, clips, missing, rank beside
it), the best value per column highlighted, runs with failed clips and untrained backbones flagged."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from leaderboard.data import Results
from leaderboard.table import Filters, cells, filter_columns, filter_runs, wide
from leaderboard.views.common import downloads, num, run_names


def run_label(row) -> str:
    flags = ("" if row["trained"] else " [untrained]") + (f" ⚠ {int(row['failed'])} failed" if row["failed"] else "")
    return f"{row['label']}{flags}"


def display_table(res: Results, w: pd.DataFrame) -> tuple[pd.DataFrame, dict, dict[str, bool]]:
    """(frame, column_config, best direction per metric column) for st.dataframe."""
    runs = w["run"]
    out = pd.DataFrame({"run": [run_label(r) for _, r in runs.iterrows()], "run id": [i[:8] for i in w.index],
                        "model": runs["model"], "family": runs["family"], "checkpoint": runs["checkpoint"],
                        "dataset/split": runs["dataset"] + "/" + runs["split"], "status": runs["status"]},
                       index=w.index)
    config: dict = {"run": st.column_config.TextColumn("run", help="model label; [untrained] = random-initialised "
                                                       "backbone, ⚠ = clips that failed generation or scoring")}
    direction = {}
    cols = res.columns.set_index("header")
    for header in dict.fromkeys(h for h, _ in w.columns if h != "run"):
        part = w[header]
        c = cols.loc[header]
        out[header] = part["mean"].astype(float)
        out[f"{header} · CI"] = [
            f"[{num(lo)}, {num(hi)}] n={int(n) if n == n else 0}" + (f" (-{int(m)})" if m == m and m else "")
            for lo, hi, n, m in zip(part["lo"], part["hi"], part["n"], part["missing"])]
        out[f"{header} · rank"] = part["rank"].astype(float)
        tip = f"{c['name']}; units: {c['units'] or '-'}; backbone: {c['backbone'] or 'none'}; identity {c['key']}"
        config[header] = st.column_config.NumberColumn(header, help=tip, format="%.4f")
        config[f"{header} · CI"] = st.column_config.TextColumn(f"{header} · CI", help="95% CI, clips scored "
                                                               "(-clips of the split not scored)")
        config[f"{header} · rank"] = st.column_config.NumberColumn(
            f"{header} · rank", format="%d", help="1 + runs whose CI is entirely better than this run's")
        if c["higher_is_better"] is not None and not pd.isna(c["higher_is_better"]):
            direction[header] = bool(c["higher_is_better"])
    return out, config, direction


def highlight_best(frame: pd.DataFrame, direction: dict[str, bool]):
    """A Styler marking the best mean per metric column (ties all marked)."""
    def style(col: pd.Series) -> list[str]:
        if col.name not in direction or col.isna().all():
            return [""] * len(col)
        best = col.max() if direction[col.name] else col.min()
        return ["background-color: #c8e6c9; font-weight: bold" if v == best else "" for v in col]

    return frame.style.apply(style, axis=0)


def render(res: Results, f: Filters, matrix) -> None:
    runs = filter_runs(res, f)
    long = cells(res, f, matrix)
    w = wide(res, long, runs)
    st.subheader(f"{len(runs)} runs × {len(filter_columns(res, f))} metric columns")
    if f.clip_filter:
        st.caption("Clip filter active: per-clip metrics are recomputed over the kept clips (mean; 95% Poisson "
                   "bootstrap CI, clip weights shared by all runs); set metrics (FAD) are not defined on a subset.")
    else:
        st.caption("Cells are the stored aggregates: mean over clips with its 95% percentile bootstrap CI.")
    if runs.empty:
        st.info("no runs match these filters")
        return
    frame, config, direction = display_table(res, w)
    st.dataframe(highlight_best(frame, direction), column_config=config, hide_index=True, width="stretch",
                 key="runs-table")
    downloads(frame.reset_index(names="run_id"), "leaderboard")
    flagged = runs[(runs["failed"] > 0) | (~runs["trained"].astype(bool))]
    if len(flagged):
        st.caption(f"flagged: {len(flagged)} run(s) with failed clips or untrained backbones")
    with st.expander("Provenance of a run"):
        names = run_names(runs)
        pick = st.selectbox("run", list(names), format_func=names.get, key="prov-run")
        if pick:
            provenance_block(res, pick)


def provenance_block(res: Results, run_id: str) -> None:
    """Code version, config, checkpoints and metric backbones with hashes, as stored in run.json."""
    p = res.provenance.get(run_id, {})
    code = p.get("code") or {}
    st.markdown(f"**code** `{code.get('git_sha', '?')}`{' (dirty)' if code.get('dirty') else ''} · "
                f"**seed** {p.get('seed')} · **created** {p.get('created')} · **updated** {p.get('updated')}")
    ck = p.get("checkpoints") or []
    if ck:
        st.markdown("**checkpoints**")
        st.dataframe(pd.DataFrame(ck if isinstance(ck[0], dict) else [{"checkpoint": c} for c in ck]),
                     hide_index=True)
    metrics = p.get("metrics") or {}
    if metrics:
        st.markdown("**metrics and their backbones**")
        st.dataframe(pd.DataFrame([{"metric": k, **{kk: json.dumps(vv) if isinstance(vv, (dict, list)) else vv
                                                    for kk, vv in (v or {}).items()}} for k, v in metrics.items()]),
                     hide_index=True)
    st.json({k: v for k, v in p.items() if k not in ("checkpoints", "metrics")}, expanded=False)
    st.download_button("provenance JSON", json.dumps(p, indent=1, default=str), file_name=f"{run_id}-provenance.json",
                       key=f"prov-{run_id}")

