"""The vm-eval leaderboard (Streamlit). Start it with `vm-eval leaderboard [--results DIR]`; it reads the folder
named by $VM_EVAL_RESULTS (default ./results) and never writes results (only a media cache for the drill-down).

Results are loaded once per state of the folder and cached: every rerun takes a cheap stamp of the folder (counts
and newest mtimes of run.json files, study summaries and ablation reports) and re-reads it when the stamp changed
("Reload results" forces a re-read). The per-clip score matrix is built once per load, so a filter change only
recomputes the cells. The view and every filter live in the URL; a bare URL opens the summary.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # `streamlit run leaderboard/app.py` runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st

from leaderboard.data import CATEGORIES, SOURCES, Results, folder_stamp, load_results
from leaderboard.state import DEFAULT_VIEW, FILTER_PARAMS, VIEWS, filters_from_params, params_from_filters
from leaderboard.table import ClipMatrix, Filters, backbone_names


@st.cache_resource(show_spinner="loading results ...", max_entries=2)  # the current folder state (+ the last one)
def cached_results(root: str, generation: int, stamp: tuple) -> tuple[Results, ClipMatrix]:
    res = load_results(root)
    return res, ClipMatrix.build(res)


def results_root() -> str:
    from vm_eval import paths

    return str(paths.results_dir(os.environ.get("VM_EVAL_RESULTS") or None))


def filter_options(res: Results) -> dict[str, list[str]]:
    cats = set(res.clips["category"]) | set(CATEGORIES)
    return {"dataset": sorted(res.runs["dataset"].dropna().unique()),
            "split": sorted(res.runs["split"].dropna().unique()),
            "category": [c for c in CATEGORIES if c in cats] + sorted(cats - set(CATEGORIES)),
            "source": list(SOURCES),
            "family": sorted(res.runs["family"].dropna().unique()),
            "backbone": sorted(backbone_names(res.columns["backbone"]).unique())}


def sidebar(res: Results) -> tuple[str, Filters]:
    """View and filters, initialised from the URL and written back to it."""
    params = st.query_params.to_dict()
    options = filter_options(res)
    initial = filters_from_params(params, options)
    view0 = params.get("view", DEFAULT_VIEW)
    view = st.sidebar.radio("view", list(VIEWS), index=list(VIEWS).index(view0) if view0 in VIEWS else 0,
                            format_func=VIEWS.get, key="view")
    st.sidebar.markdown("**filters** (empty = all)")
    labels = {"dataset": "dataset", "split": "split", "category": "video category", "source": "real / AI-generated",
              "family": "model family", "backbone": "metric backbone"}
    chosen = {}
    for param, label in labels.items():
        attr = FILTER_PARAMS[param]
        chosen[attr] = tuple(st.sidebar.multiselect(label, options[param], default=list(getattr(initial, attr)),
                                                    key=f"filter-{param}"))
    f = Filters(**chosen)
    wanted = params_from_filters(f, view)
    if wanted != params:
        st.query_params.from_dict(wanted)
    return view, f


def main() -> None:
    st.set_page_config(page_title="vm-eval leaderboard", layout="wide")
    root = results_root()
    if "generation" not in st.session_state:
        st.session_state["generation"] = 0
    st.sidebar.title("vm-eval")
    st.sidebar.caption(f"results: {root}")
    if st.sidebar.button("Reload results", key="reload"):
        st.session_state["generation"] += 1
    if not Path(root).is_dir():
        st.error(f"no results folder at {root}: run `make demo` or `vm-eval run ...`, or pass --results DIR")
        return
    res, matrix = cached_results(root, st.session_state["generation"], folder_stamp(root))
    for p in res.problems:
        st.sidebar.warning(p)
    view, f = sidebar(res)
    st.title(VIEWS[view])
    if res.runs.empty and view not in ("studies", "definitions"):
        st.info(f"no runs stored in {root} yet: `make demo` makes some")
        return
    from leaderboard.views import ablations, breakdowns, clips, definitions, runs, studies, summary

    if view == "provenance":
        from leaderboard.table import filter_runs
        from leaderboard.views.common import run_names

        names = run_names(filter_runs(res, f), badges=True)
        if not names:
            st.info("no runs match these filters")
            return
        pick = st.selectbox("run", list(names), key="prov-view-run", format_func=names.get)
        runs.provenance_block(res, pick)
        return
    {"summary": summary.render, "runs": runs.render, "breakdowns": breakdowns.render, "ablations": ablations.render,
     "studies": studies.render, "clips": clips.render, "definitions": definitions.render}[view](res, f, matrix)


main()
