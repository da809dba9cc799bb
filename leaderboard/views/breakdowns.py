"""Per category and real vs AI-generated videos, for one chosen metric: mean with 95% CI per run and group."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from leaderboard.data import Results
from leaderboard.table import Filters, filter_columns, filter_runs
from leaderboard.views.common import downloads, errorbar_plot, run_names, show_figure


def breakdown(res: Results, f: Filters, matrix, column: str, by: str) -> pd.DataFrame:
    """Rows (run, group) for `column`, where group is each kept value of `by` ("category" or "source")."""
    runs = filter_runs(res, f)
    chosen = f.categories if by == "category" else f.sources
    present = [g for g in dict.fromkeys(matrix.clips[by]) if not chosen or g in chosen]
    parts = []
    for g in sorted(present):
        cats = (g,) if by == "category" else f.categories
        srcs = (g,) if by == "source" else f.sources
        a = matrix.aggregate(cats, srcs)
        a = a[(a["column"] == column) & a["run_id"].isin(runs["run_id"])].assign(group=g)
        parts.append(a)
    if not parts:
        return pd.DataFrame(columns=["run", "group", "mean", "lo", "hi", "n"])
    out = pd.concat(parts, ignore_index=True)
    out["run"] = out["run_id"].map(run_names(runs))
    return out[["run", "run_id", "group", "mean", "lo", "hi", "n"]]


def render(res: Results, f: Filters, matrix) -> None:
    cols = filter_columns(res, f)
    per_clip = cols[cols["kind"] != "set"]
    if per_clip.empty or matrix.values.size == 0:
        st.info("no per-clip metric scores in these results")
        return
    column = st.selectbox("metric", list(per_clip["column"]), key="bd-metric",
                          format_func=lambda c: per_clip.set_index("column").at[c, "header"])
    hib = per_clip.set_index("column").at[column, "higher_is_better"]
    for by, title in (("category", "per video category"), ("source", "real vs AI-generated videos")):
        st.markdown(f"#### {title}")
        table = breakdown(res, f, matrix, column, by)
        if table.empty:
            st.info("no clips for this selection")
            continue
        direction = "higher is better" if hib else ("lower is better" if hib is not None else "")
        show_figure(errorbar_plot(table, y="run", hue="group", xlabel=f"mean, 95% CI ({direction})"))
        st.dataframe(table.drop(columns="run_id"), hide_index=True, key=f"bd-{by}")
        downloads(table, f"breakdown-{by}")
