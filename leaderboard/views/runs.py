"""The full table (the second view): one row per run, per metric identity its mean, CI with clips and rank side by
side, grouped per metric (sub-scores after their metric; null sub-scores behind a toggle). The best value per column
is highlighted among ranked runs only (trained, non-reference): references and untrained backbones are badged,
never ranked nor "best"; runs with failed clips are flagged."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from leaderboard.data import Results
from leaderboard.records import short_label
from leaderboard.table import Filters, cells, filter_runs, ranked_runs, wide
from leaderboard.views.common import badge, downloads, num, run_names


def run_label(row) -> str:
    flags = badge(row["trained"], row["family"], row["model"], row.get("extra")) + (
        f" ⚠ {int(row['failed'])} failed" if row["failed"] else "")
    return f"{short_label(row['label'])}{flags}"


def display_table(res: Results, w: pd.DataFrame) -> tuple[pd.DataFrame, dict, dict[str, bool]]:
    """(frame, column_config, best direction per metric column) for st.dataframe: the run (pinned), its metrics
    grouped per metric, then the run's identity details (so the metrics are what a screen shows first)."""
    runs = w["run"]
    out = pd.DataFrame({"run": [run_label(r) for _, r in runs.iterrows()]}, index=w.index)
    details = pd.DataFrame({"run id": [i[:8] for i in w.index], "model": runs["model"], "family": runs["family"],
                            "checkpoint": runs["checkpoint"], "dataset/split": runs["dataset"] + "/" + runs["split"],
                            "status": runs["status"]}, index=w.index)
    config: dict = {"run": st.column_config.TextColumn("run", pinned=True, help="model label; [untrained] = "
                                                       "random-initialised backbone, [reference: role] = reference "
                                                       "system (neither is ranked), ⚠ = clips that failed generation "
                                                       "or scoring")}
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
    return pd.concat([out, details], axis=1), config, direction


def highlight_best(frame: pd.DataFrame, direction: dict[str, bool], ranked: set[str] | None = None):
    """A Styler marking the best mean per metric column among the `ranked` rows (index = run id; None = all),
    ties all marked."""
    eligible = frame.index.isin(ranked) if ranked is not None else [True] * len(frame)

    def style(col: pd.Series) -> list[str]:
        part = col[eligible]
        if col.name not in direction or part.isna().all():
            return [""] * len(col)
        best = part.max() if direction[col.name] else part.min()
        return ["background-color: #c8e6c9; font-weight: bold" if ok and v == best else ""
                for v, ok in zip(col, eligible)]

    return frame.style.apply(style, axis=0)


def render(res: Results, f: Filters, matrix) -> None:
    runs = filter_runs(res, f)
    long = cells(res, f, matrix)
    nulls = st.toggle("show null sub-scores (':vs-shift', ':vs-other': paired differences against a null)",
                      value=False, key="runs-nulls")
    w = wide(res, long, runs, nulls=nulls)
    st.subheader(f"{len(runs)} runs × {len({h for h, _ in w.columns if h != 'run'})} metric columns")
    if f.clip_filter:
        st.caption("Clip filter active: per-clip metrics are recomputed over the kept clips (mean; 95% Poisson "
                   "bootstrap CI, clip weights shared by all runs); set metrics (FAD) are not defined on a subset.")
    else:
        st.caption("Cells are the stored aggregates: mean over clips with its 95% percentile bootstrap CI.")
    if runs.empty:
        st.info("no runs match these filters")
        return
    frame, config, direction = display_table(res, w)
    st.dataframe(highlight_best(frame, direction, ranked_runs(runs)), column_config=config, hide_index=True,
                 width="stretch", key="runs-table")
    downloads(frame.reset_index(names="run_id"), "leaderboard")
    flagged = runs[(runs["failed"] > 0) | (~runs["trained"].astype(bool))]
    if len(flagged):
        st.caption(f"flagged: {len(flagged)} run(s) with failed clips or untrained backbones; ranks and the "
                   "highlighted best count trained, non-reference runs only")
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

