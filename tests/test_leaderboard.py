"""The leaderboard: its data layer (loading, metric identities, filtered recomputation, CI ranks, URL state) on
real demo runs and synthetic results, and every view and filter of the Streamlit app through AppTest."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from leaderboard_results import FAILING_CLIP, MODELS, make_results, write_synthetic

from leaderboard.data import load_results
from leaderboard.state import filters_from_params, params_from_filters
from leaderboard.table import ClipMatrix, Filters, cells, ci_ranks, filter_columns, wide

APP = str(Path(__file__).resolve().parents[1] / "leaderboard" / "app.py")


@pytest.fixture(scope="module")
def lb(data_dir, tmp_path_factory):
    results = tmp_path_factory.mktemp("lb") / "results"
    runs = make_results(data_dir, results)
    return {"results": results, "runs": runs, "res": load_results(results)}


# -- data layer ---------------------------------------------------------------------------------------------------
def test_loads_runs_columns_scores_clips(lb):
    res = lb["res"]
    assert sorted(res.runs["model"]) == sorted(MODELS) and not res.problems
    noise = res.runs.set_index("model").loc["test-noise"]
    assert not noise["trained"] and noise["failed"] >= 1  # flagged in the table
    cols = res.columns.set_index("name")
    assert cols.at["test-set-rms", "kind"] == "set" and cols.at["test-av:vs-other", "header"].endswith("↑")
    assert set(res.clips["category"]) == {"promo", "commercial", "compilation", "other"}
    assert set(res.clips["source"]) == {"real", "ai-generated"}
    noise_id = res.runs.loc[res.runs["model"] == "test-noise", "run_id"].iloc[0]
    assert FAILING_CLIP not in set(res.scores.loc[res.scores["run_id"] == noise_id, "clip_id"])
    assert len(res.ablations) == 1 and len(res.studies) == 1


def test_unfiltered_cells_are_the_stored_aggregates(lb):
    res = lb["res"]
    long = cells(res, Filters())
    for run in lb["runs"].values():
        meta = run.meta()
        for name, a in meta["aggregates"].items():
            row = long[(long["run_id"] == meta["run_id"]) & (long["column"] == f"{name}@{a['key']}")]
            assert len(row) == 1
            for k in ("mean", "lo", "hi"):
                assert row[k].iloc[0] == pytest.approx(a[k], nan_ok=True)


def test_clip_filter_recomputes_from_per_clip_scores(lb):
    res = lb["res"]
    f = Filters(categories=("promo", "commercial"))
    long = cells(res, f)
    keep = set(res.clips.loc[res.clips["category"].isin(f.categories), "clip_id"])
    for run in lb["runs"].values():
        rid = run.meta()["run_id"]
        scores = pd.read_parquet(run.dir / "scores.parquet")
        for m in ("duration-error", "test-rms"):
            v = scores[(scores["metric"] == m) & scores["clip_id"].isin(keep) & (scores["status"] == "done")]["value"]
            row = long[(long["run_id"] == rid) & long["column"].str.startswith(m + "@")].iloc[0]
            assert row["mean"] == pytest.approx(v.mean()) and row["n"] == len(v) and row["recomputed"]
            if len(v) > 1 and v.std() > 0:
                assert row["lo"] <= row["mean"] <= row["hi"]
    sets = long[long["column"].str.startswith("test-set-rms@")]
    assert sets["mean"].isna().all() and (sets["note"] != "").all()  # a set metric has no subset value


def test_poisson_bootstrap_matches_a_direct_computation():
    m = ClipMatrix(pd.DataFrame({"dataset": ["d"] * 4, "clip_id": list("abcd"), "category": ["promo"] * 4,
                                 "source": ["real"] * 4}),
                   pd.DataFrame({"run_id": ["r1", "r2"], "column": ["x", "x"]}),
                   np.array([[1.0, 2.0], [2.0, np.nan], [3.0, 5.0], [10.0, 1.0]]))
    out = m.aggregate(resamples=500)
    w = m.weights(np.arange(4), 500).astype(float)
    for j, col in enumerate(m.values.T):
        have = ~np.isnan(col)
        with np.errstate(invalid="ignore"):  # a resample that draws none of the clips: NaN, left out as table.py does
            boot = (w[:, have] @ col[have]) / w[:, have].sum(axis=1)
        lo, hi = np.nanquantile(boot, [0.025, 0.975])
        assert out.loc[j, "mean"] == pytest.approx(col[have].mean()) and out.loc[j, "n"] == have.sum()
        assert out.loc[j, "lo"] == pytest.approx(lo) and out.loc[j, "hi"] == pytest.approx(hi)
    again = m.weights(np.array([2, 0]), 500)  # a clip's weights depend on its id only
    assert np.array_equal(again[:, 0], w[:, 2]) and np.array_equal(again[:, 1], w[:, 0])


def test_ci_rank_rule():
    long = pd.DataFrame({"run_id": list("abcd"), "column": ["up"] * 4,
                         "lo": [0.8, 0.5, 0.1, np.nan], "hi": [0.9, 0.85, 0.3, np.nan]})
    cols = pd.DataFrame({"column": ["up"], "higher_is_better": [True]})
    assert list(ci_ranks(long, cols).iloc[:3]) == [1, 1, 3] and np.isnan(ci_ranks(long, cols).iloc[3])
    down = long.assign(column="down")
    cols = pd.DataFrame({"column": ["down"], "higher_is_better": [False]})
    assert list(ci_ranks(down, cols).iloc[:3]) == [2, 2, 1]  # b overlaps a: only c is entirely better


def test_two_backbones_of_one_metric_are_two_columns(tmp_path):
    write_synthetic(tmp_path / "results", runs=4, clips=40, metrics=3)
    res = load_results(tmp_path / "results")
    m0 = res.columns[res.columns["name"] == "metric-0"]
    assert len(m0) == 2 and {lab.split("[")[1][:10] for lab in m0["label"]} == {"backbone-a", "backbone-b"}
    w = wide(res, cells(res, Filters()), res.runs)
    for header in m0["header"]:  # each column holds only the runs scored with its backbone
        assert w[(header, "mean")].notna().sum() == 2
    only_a = filter_columns(res, Filters(backbones=("backbone-a abababab",)))
    assert list(only_a["name"]) == ["metric-0"]
    assert set(filter_columns(res, Filters(backbones=("none",)))["name"]) == {"metric-1", "metric-2"}


def test_url_state_round_trip():
    options = {"dataset": ["demo"], "category": ["promo", "other"], "source": ["real", "ai-generated"]}
    f = filters_from_params({"dataset": "demo", "category": "promo,bogus", "source": ["ai-generated"]}, options)
    assert f == Filters(datasets=("demo",), categories=("promo",), sources=("ai-generated",))
    assert params_from_filters(f, "runs") == {"view": "runs", "dataset": "demo", "category": "promo",
                                              "source": "ai-generated"}


# -- the app (AppTest) --------------------------------------------------------------------------------------------
def app(lb, monkeypatch, **params):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("VM_EVAL_RESULTS", str(lb["results"]))
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def no_errors(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_runs_view_table_flags_and_downloads(lb, monkeypatch):
    at = app(lb, monkeypatch)
    no_errors(at)
    table = at.dataframe[0].value
    assert len(table) == 3 and "test-noise [untrained] ⚠ 1 failed" in set(table["run"])
    assert {"duration-error ↓", "duration-error ↓ · CI", "duration-error ↓ · rank"} <= set(table.columns)
    assert len(at.get("download_button")) >= 2
    assert at.query_params["view"] == "runs"


@pytest.mark.parametrize("view", ["runs", "breakdowns", "ablations", "studies", "clips", "provenance"])
@pytest.mark.parametrize("params", [{}, {"category": "promo,commercial", "source": "ai-generated"},
                                    {"family": "reference", "dataset": "demo", "split": "test", "backbone": "none"}])
def test_every_view_under_every_filter(lb, monkeypatch, view, params):
    at = app(lb, monkeypatch, view=view, **params)
    no_errors(at)
    assert at.title[0].value and at.sidebar.radio(key="view").value == view
    for k, v in params.items():  # the URL's filters are the widgets' state
        assert at.sidebar.multiselect(key=f"filter-{k}").value == v.split(",")


def test_filter_change_updates_table_and_url(lb, monkeypatch):
    at = app(lb, monkeypatch)
    at.sidebar.multiselect(key="filter-family").set_value(["reference"]).run()
    no_errors(at)
    assert len(at.dataframe[0].value) == 2 and at.query_params["family"] == "reference"
    at.sidebar.multiselect(key="filter-source").set_value(["ai-generated"]).run()
    assert any("Clip filter active" in c.value for c in at.caption)
    table = at.dataframe[0].value
    n = dict(zip(table["run"], table["duration-error ↓ · CI"].str.extract(r"n=(\d+)")[0].astype(int)))
    assert n == {"random-retrieval": 2, "ground-truth": 0}  # two AI-generated clips; they have no ground truth


def test_views_show_their_content(lb, monkeypatch):
    at = app(lb, monkeypatch, view="ablations")
    diffs = at.dataframe[1].value
    assert set(diffs["variant"]) == {"no-rhythm", "no-video"} and {"lo", "hi", "p_holm"} <= set(diffs.columns)
    at = app(lb, monkeypatch, view="studies")
    ranking = at.dataframe[0].value
    assert list(ranking["system"])[0] == "test-noise" and "strength" in ranking
    objective = at.dataframe[-1].value
    assert set(objective["system"]) == set(MODELS)
    at = app(lb, monkeypatch, view="clips")
    no_errors(at)
    assert len(at.get("video")) == 1 and not at.warning  # the clip's picture muxed with the chosen soundtrack
    per_clip = at.dataframe[0].value
    assert len(per_clip) == 3
    at.radio(key="clip-system").set_value(lb["runs"]["random-retrieval"].meta()["run_id"]).run()
    no_errors(at)
    assert len(at.get("video")) == 1
    worst = at.dataframe[1].value
    assert len(worst) >= 1
    at = app(lb, monkeypatch, view="breakdowns")
    assert len(at.dataframe) == 2 and set(at.dataframe[1].value["group"]) == {"real", "ai-generated"}
    at = app(lb, monkeypatch, view="provenance")
    no_errors(at)
    assert any("code" in m.value for m in at.markdown)


def test_missing_results_folder_and_cli(tmp_path, monkeypatch, capsys):
    from streamlit.testing.v1 import AppTest

    from vm_eval.cli import main

    monkeypatch.setenv("VM_EVAL_RESULTS", str(tmp_path / "nothing"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and "no results folder" in at.error[0].value
    assert main(["leaderboard", "--results", str(tmp_path / "nothing")]) == 2
    assert "no results folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["leaderboard", "--help"])
    assert "URL" in capsys.readouterr().out
