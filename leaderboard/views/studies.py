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
    fig, ax = plt.subplots(figsize=(min(7.0, 2.5 + 0.6 * len(order)), min(6.0, 2.0 + 0.5 * len(order))))
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
    from leaderboard.views.common import badge

    info = res.runs.set_index("run_id")
    for system, run_id in system_runs.items():
        part = long[long["run_id"] == run_id]
        tag = badge(*info.loc[run_id, ["trained", "family", "model", "extra"]]) if run_id in info.index else ""
        row = {"system": system + tag, "run": (run_id or "?")[:8]}
        for _, c in part.iterrows():
            row[headers.get(c["column"], c["column"])] = f"{num(c['mean'])} [{num(c['lo'])}, {num(c['hi'])}]"
        rows.append(row)
    return pd.DataFrame(rows)


RANKING_ORDER = ["rank", "system", "votes", "strength", "ci_lo", "ci_hi"]  # then any other column, by name


def ranking_table(qs: dict, runs: pd.DataFrame, system_runs: dict[str, str]) -> pd.DataFrame:
    """A question's Bradley-Terry ranking: system (badged when its run is untrained or a reference), votes,
    strength and its CI, rank; never a CI bound first."""
    from leaderboard.views.common import badge

    t = pd.DataFrame(qs.get("ranking", []))
    if t.empty:
        return t
    info = runs.set_index("run_id") if len(runs) else None
    if info is not None and "system" in t:
        def label(system: str) -> str:
            rid = system_runs.get(system)
            if rid in info.index:
                r = info.loc[rid]
                return f"{system}{badge(r['trained'], r['family'], r['model'], r['extra'])}"
            return system
        t["system"] = t["system"].map(label)
    first = [c for c in RANKING_ORDER if c in t]
    return t[first + sorted(c for c in t if c not in first)]


def alpha_text(ag: dict) -> str:
    """Krippendorff's alpha, or "n/a (why)" when it is undefined."""
    a = ag.get("alpha")
    if a is not None and a == a:
        return f"{float(a):.2f}"
    if not ag.get("units"):
        return "n/a (no clip and pair was rated by two or more raters)"
    if not ag.get("expected_disagreement"):
        return "n/a (every vote gave the same answer: no variation to agree on)"
    return "n/a (not computed)"


AGREEMENT_SHOWN = ["rank", "metric", "higher_is_better", "accuracy", "ci_lo", "ci_hi", "votes", "metric_ties",
                   "accuracy_ties_half", "kendall_tau", "tau_lo", "tau_hi", "systems", "p_value", "note"]


def agreement_table(entry: dict, question: str) -> pd.DataFrame:
    """The question's rows of the entry's metric agreement (`vm-eval study agree`), best first; empty if none."""
    rows = (entry.get("metric_agreement") or {}).get("questions", {}).get(question, [])
    t = pd.DataFrame(rows)
    return t[[c for c in AGREEMENT_SHOWN if c in t] + sorted(c for c in t if c not in AGREEMENT_SHOWN)] if len(t) else t


def metric_agreement_section(entry: dict, question: str) -> None:
    """Which objective metric agrees with the raters on this question: table and accuracy / tau plot (issue 16)."""
    st.markdown("**which objective metric agrees with the raters** (share of votes the metric's per-clip "
                "difference predicts, chance 0.5; Kendall's tau of its system ranking vs Bradley-Terry; 95% CIs "
                "over raters x clips)")
    agreement = entry.get("metric_agreement") or {}
    t = agreement_table(entry, question)
    if t.empty:
        st.info("no metric agreement for this question yet (run `vm-eval study agree STUDY` after `study analyze`)")
        return
    if _manifest_of(agreement) != _manifest_of(entry.get("summary")):
        st.warning("computed on another version of the study than this analysis: run `vm-eval study agree` again")
    st.caption(f"{agreement.get('votes', '?')} votes from {agreement.get('raters', '?')} raters; metric ties are "
               "counted apart from the accuracy; ranked by accuracy with a tie as half")
    shown = t[t["accuracy"].notna()] if "accuracy" in t else t.iloc[0:0]
    if len(shown):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from studies.agree import agreement_figure

        show_figure(agreement_figure(shown.iloc[::-1], question, plt))
    st.dataframe(t, hide_index=True, key="study-metric-agreement")
    downloads(t, f"study-metric-agreement-{question}")


def _manifest_of(d: dict | None) -> str | None:
    return ((d or {}).get("study") or {}).get("manifest_sha256")


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
    questions = (["overall"] if "overall" in questions else []) + [x for x in questions if x != "overall"]
    q = st.selectbox("question", questions, key="study-question")
    qs = summ["questions"][q]
    ag, rel = qs.get("agreement", {}), qs.get("reliability", {})
    st.markdown(f"{qs['votes']} votes from {qs['raters']} raters · Krippendorff's alpha {alpha_text(ag)}"
                f" · split-half rank reliability {num(rel.get('corrected_mean'), '.2f')} "
                f"[{num(rel.get('corrected_lo'), '.2f')}, {num(rel.get('corrected_hi'), '.2f')}] · "
                f"side A share {num(qs.get('position_bias', {}).get('share_a'), '.2f')}")
    ranking = ranking_table(qs, res.runs, summ.get("study", {}).get("systems", {}))
    left, right = st.columns(2)
    with left:
        show_figure(errorbar_plot(ranking.rename(columns={"strength": "mean", "ci_lo": "lo", "ci_hi": "hi",
                                                          "votes": "n"}),
                                  y="system", zero_line=True, xlabel="Bradley-Terry log-strength, 95% CI (n = votes)",
                                  width_in=5.0))
    with right:
        show_figure(heatmap(qs.get("pairs", []), [r["system"] for r in qs.get("ranking", [])])
                    if len(ranking) else None)
    st.dataframe(ranking, hide_index=True, key="study-ranking")
    downloads(ranking, f"study-{s['name']}-{q}")
    pairs = pd.DataFrame(qs.get("pairs", []))
    if len(pairs):
        st.markdown("**pairwise win rates** (Clopper-Pearson CI, exact binomial test, Holm)")
        st.dataframe(pairs, hide_index=True, key="study-pairs")
        downloads(pairs, f"study-{s['name']}-{q}-pairs")
    metric_agreement_section(s, q)
    st.markdown("**objective metrics of the same systems**")
    obj = objective(res, f, summ.get("study", {}).get("systems", {}), matrix)
    st.dataframe(obj, hide_index=True, key="study-objective")
    downloads(obj, f"study-{s['name']}-objective")
