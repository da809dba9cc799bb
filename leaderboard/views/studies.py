"""Listening tests (registered study summaries): per question the Bradley-Terry strengths with CIs and ranks,
the win-rate heatmap, raters and votes, agreement and reliability, beside the objective metrics of the same
systems' runs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from leaderboard.data import Results
from leaderboard.table import Filters, cells, filter_runs
from leaderboard.views.common import downloads, errorbar_plot, num, show_figure


def heatmap(pairs: list[dict], order: list[str]):
    """Win rate of the row system against the column system (matplotlib figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = pd.DataFrame(np.nan, index=order, columns=order)
    for p in pairs:
        a, b, w = p.get("system"), p.get("opponent"), p.get("win_rate")
        if a in grid.index and b in grid.columns and w is not None:
            grid.loc[a, b], grid.loc[b, a] = w, 1.0 - w
    fig, ax = plt.subplots(figsize=(1.5 + 0.8 * len(order), 1.0 + 0.7 * len(order)))
    im = ax.imshow(grid.to_numpy(float), vmin=0, vmax=1, cmap="RdBu")
    ax.set_xticks(range(len(order)), order, rotation=45, ha="right")
    ax.set_yticks(range(len(order)), order)
    for i in range(len(order)):
        for j in range(len(order)):
            v = grid.iat[i, j]
            if v == v:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax)
    ax.set_title("win rate, row vs column (ties excluded)", fontsize=9)
    fig.tight_layout()
    return fig


def objective(res: Results, f: Filters, system_runs: dict[str, str], matrix) -> pd.DataFrame:
    """The stored metrics (or the filtered recomputation) of the study's systems' runs, one row per system."""
    long = cells(res, f, matrix)
    headers = res.columns.set_index("column")["header"]
    rows = []
    for system, run_id in system_runs.items():
        part = long[long["run_id"] == run_id]
        row = {"system": system, "run": (run_id or "?")[:8]}
        for _, c in part.iterrows():
            row[headers.get(c["column"], c["column"])] = f"{num(c['mean'])} [{num(c['lo'])}, {num(c['hi'])}]"
        rows.append(row)
    return pd.DataFrame(rows)


def render(res: Results, f: Filters, matrix) -> None:
    runs = set(filter_runs(res, f)["run_id"])
    studies = [s for s in res.studies
               if not runs.isdisjoint(s["summary"].get("study", {}).get("systems", {}).values())
               or not set(res.runs["run_id"]) & set(s["summary"].get("study", {}).get("systems", {}).values())]
    if not studies:
        st.info("no analysed listening studies for these filters (vm-eval study analyze registers them)")
        return
    i = st.selectbox("study", range(len(studies)), key="study-pick",
                     format_func=lambda k: f"{studies[k]['name']} ({studies[k]['summary']['votes']} votes)")
    s = studies[i]
    summ = s["summary"]
    a, b, c = st.columns(3)
    a.metric("raters kept", f"{summ['raters_kept']} of {summ['raters']}")
    b.metric("votes", summ["votes"])
    c.metric("catch-trial votes", summ.get("catch_votes", 0))
    st.caption(f"study folder {s['study_dir']} · version {summ.get('study', {}).get('manifest_sha256', '?')[:12]} · "
               f"analysed {s.get('registered', '?')}")
    questions = list(summ["questions"])
    q = st.selectbox("question", questions, key="study-question")
    qs = summ["questions"][q]
    ag, rel = qs.get("agreement", {}), qs.get("reliability", {})
    st.markdown(f"{qs['votes']} votes from {qs['raters']} raters · Krippendorff's alpha {num(ag.get('alpha'), '.2f')}"
                f" · split-half rank reliability {num(rel.get('corrected_mean'), '.2f')} "
                f"[{num(rel.get('corrected_lo'), '.2f')}, {num(rel.get('corrected_hi'), '.2f')}] · "
                f"side A share {num(qs.get('position_bias', {}).get('share_a'), '.2f')}")
    ranking = pd.DataFrame(qs["ranking"])
    left, right = st.columns(2)
    with left:
        show_figure(errorbar_plot(ranking.rename(columns={"strength": "mean", "ci_lo": "lo", "ci_hi": "hi"}),
                                  y="system", zero_line=True, xlabel="Bradley-Terry log-strength, 95% CI"))
    with right:
        show_figure(heatmap(qs.get("pairs", []), list(ranking["system"])) if len(ranking) else None)
    st.dataframe(ranking, hide_index=True, key="study-ranking")
    downloads(ranking, f"study-{s['name']}-{q}")
    pairs = pd.DataFrame(qs.get("pairs", []))
    if len(pairs):
        st.markdown("**pairwise win rates** (Clopper-Pearson CI, exact binomial test, Holm)")
        st.dataframe(pairs, hide_index=True, key="study-pairs")
        downloads(pairs, f"study-{s['name']}-{q}-pairs")
    st.markdown("**objective metrics of the same systems**")
    obj = objective(res, f, summ.get("study", {}).get("systems", {}), matrix)
    st.dataframe(obj, hide_index=True, key="study-objective")
    downloads(obj, f"study-{s['name']}-objective")
