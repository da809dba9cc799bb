"""Ablation groups (results/ablations/*/report.json): per variant the paired difference against the reference
(the full model) over shared clips, with the 95% bootstrap CI and Holm-adjusted significance, as a table and
a chart."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from leaderboard.data import Results
from leaderboard.table import Filters, filter_runs
from leaderboard.views.common import downloads, errorbar_plot, show_figure


def differences(group: dict) -> pd.DataFrame:
    """One row per (variant, metric): difference vs the reference, CI, p, Holm p, significant, direction."""
    rep = group["report"]
    labels = rep.get("labels", {})
    rows = []
    for variant, metrics in rep.get("differences", {}).items():
        for metric, d in metrics.items():
            info = rep.get("metrics", {}).get(metric, {})
            rows.append({"variant": labels.get(variant, variant), "metric": metric, "difference": d.get("mean"),
                         "lo": d.get("lo"), "hi": d.get("hi"), "clips": d.get("clips", d.get("n")),
                         "p": d.get("p"), "p_holm": d.get("p_holm"), "significant": bool(d.get("significant", False)),
                         "higher_is_better": info.get("higher_is_better")})
    return pd.DataFrame(rows, columns=["variant", "metric", "difference", "lo", "hi", "clips", "p", "p_holm",
                                       "significant", "higher_is_better"])


def visible_groups(res: Results, f: Filters) -> list[dict]:
    """Groups with at least one run among the filtered runs (or every group when none of its runs is stored)."""
    paths = set(filter_runs(res, f)["path"])
    everything = set(res.runs["path"])
    out = []
    for g in res.ablations:
        runs = set((g["report"].get("runs") or {}).values())
        if runs & paths or not runs & everything:
            out.append(g)
    return out


def render(res: Results, f: Filters, matrix=None) -> None:
    groups = visible_groups(res, f)
    if not groups:
        st.info("no ablation reports for these filters (run `vm-eval ablate`)")
        return
    names = [f"{g['grid']['name']} · {g['preset']} · {g['status']}" for g in groups]
    i = st.selectbox("ablation group", range(len(groups)), format_func=lambda k: names[k], key="abl-group")
    g = groups[i]
    rep = g["report"]
    st.caption(f"reference: {rep['labels'].get(rep['reference'], rep['reference'])} · {rep.get('test', '')} · "
               f"{rep.get('correction', '')} (family of {rep.get('family_size')} tests, alpha {rep.get('alpha')}) · "
               f"folder {g['folder']}")
    table = differences(g)
    ref = pd.DataFrame([{"metric": m, "mean": a.get("mean"), "lo": a.get("lo"), "hi": a.get("hi"), "n": a.get("n")}
                        for m, a in rep.get("reference_aggregates", {}).items()])
    st.markdown("**reference (absolute values)**")
    st.dataframe(ref, hide_index=True, key="abl-ref")
    downloads(ref, f"ablation-{g['grid']['name']}-reference")
    st.markdown("**variants: mean paired difference vs the reference**")
    st.dataframe(table, hide_index=True, key="abl-diff",
                 column_config={"significant": st.column_config.CheckboxColumn(help="Holm-adjusted p < alpha")})
    downloads(table, f"ablation-{g['grid']['name']}")
    metrics = list(dict.fromkeys(table["metric"]))
    if metrics:
        metric = st.selectbox("metric to chart", metrics, key="abl-metric")
        part = table[table["metric"] == metric]
        hib = part["higher_is_better"].iloc[0]
        better = "positive = better" if hib else ("negative = better" if hib is not None else "")
        show_figure(errorbar_plot(part.rename(columns={"difference": "mean", "clips": "n"}), y="variant",
                                  zero_line=True, xlabel=f"{metric}: variant - reference, 95% CI ({better})"))
