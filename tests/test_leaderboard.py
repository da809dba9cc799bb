"""The leaderboard: its data layer (loading, metric identities, filtered recomputation, CI ranks, URL state, the
summary's records, metric definitions, the folder stamp) on real demo runs and synthetic results, and every view
and filter of the Streamlit app through AppTest."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from leaderboard_results import FAILING_CLIP, MODELS, SYSTEMS, shared_results, write_synthetic

from leaderboard.data import load_results
from leaderboard.state import filters_from_params, params_from_filters
from leaderboard.table import ClipMatrix, Filters, cells, ci_ranks, filter_columns, wide

APP = str(Path(__file__).resolve().parents[1] / "leaderboard" / "app.py")


@pytest.fixture(scope="module")
def lb(data_dir, tmp_path_factory):
    results, runs = shared_results(data_dir, tmp_path_factory)
    return {"results": results, "runs": runs, "res": load_results(results)}


# -- data layer ---------------------------------------------------------------------------------------------------
def test_loads_runs_columns_scores_clips(lb):
    res = lb["res"]
    assert set(MODELS) <= set(res.runs["model"]) and len(res.runs) == len(MODELS) + len(SYSTEMS)
    assert not res.problems
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
    at = app(lb, monkeypatch, view="runs")
    no_errors(at)
    table = at.dataframe[0].value
    assert len(table) == 5 and "test-noise [untrained] ⚠ 1 failed" in set(table["run"])
    assert "ground-truth [reference: ceiling]" in set(table["run"]) and "dir:sys-tones" in set(table["run"])
    assert {"duration-error ↓", "duration-error ↓ · CI", "duration-error ↓ · rank"} <= set(table.columns)
    assert not any(":vs-" in c for c in table.columns)  # null sub-scores hidden behind the toggle
    # only trained, non-reference runs are ranked: references and the untrained run have no rank
    ranks = dict(zip(table["run"], table["duration-error ↓ · rank"]))
    assert {k for k, v in ranks.items() if v == v} == {"dir:sys-tones", "dir:sys-noisy-truth"}
    cols = list(table.columns)  # grouped per metric: a metric's mean, CI and rank side by side
    i = cols.index("duration-error ↓")
    assert cols[i + 1:i + 3] == ["duration-error ↓ · CI", "duration-error ↓ · rank"]
    assert len(at.get("download_button")) >= 2
    assert at.query_params["view"] == "runs"
    at.toggle(key="runs-nulls").set_value(True).run()
    assert any(c.startswith("test-av:vs-other") for c in at.dataframe[0].value.columns)


def test_bare_url_opens_the_summary(lb, monkeypatch):
    at = app(lb, monkeypatch)
    no_errors(at)
    assert at.sidebar.radio(key="view").value == "summary" and at.query_params["view"] == "summary"
    body = " ".join(h.proto.body for h in at.get("html"))
    for name in SYSTEMS:
        assert f"dir:{name}" in body
    assert "reference: ceiling" in body and "reference: chance" in body and "untrained" in body
    charts = at.get("vega_lite_chart")  # a forest plot per headline metric (FAD stand-in, preference)
    assert len(charts) == 2
    import json

    spec = json.loads(charts[0].proto.spec)
    labels = [d["label"] for d in spec["layer"][0]["data"]["values"]]
    assert labels[:2] == ["#1 dir:sys-tones (n=7)", "#2 dir:sys-noisy-truth (n=5)"]  # n on every point
    assert labels[2] == "test-noise [untrained] (n=6)"  # badged, unranked
    refs = {d["role"] for layer in spec["layer"] for d in layer["data"]["values"] if "role" in d}
    assert refs == {"ceiling", "chance"}  # references drawn as lines, never as ranked points


@pytest.mark.parametrize("view", ["summary", "runs", "breakdowns", "ablations", "studies", "clips", "provenance",
                                  "definitions"])
@pytest.mark.parametrize("params", [{}, {"category": "promo,commercial", "source": "ai-generated"},
                                    {"family": "reference", "dataset": "demo", "split": "test", "backbone": "none"}])
def test_every_view_under_every_filter(lb, monkeypatch, view, params):
    at = app(lb, monkeypatch, view=view, **params)
    no_errors(at)
    assert at.title[0].value and at.sidebar.radio(key="view").value == view
    for k, v in params.items():  # the URL's filters are the widgets' state
        assert at.sidebar.multiselect(key=f"filter-{k}").value == v.split(",")


def test_filter_change_updates_table_and_url(lb, monkeypatch):
    at = app(lb, monkeypatch, view="runs")
    at.sidebar.multiselect(key="filter-family").set_value(["reference"]).run()
    no_errors(at)
    assert len(at.dataframe[0].value) == 2 and at.query_params["family"] == "reference"
    at.sidebar.multiselect(key="filter-source").set_value(["ai-generated"]).run()
    assert any("Clip filter active" in c.value for c in at.caption)
    table = at.dataframe[0].value
    n = dict(zip(table["run"], table["duration-error ↓ · CI"].str.extract(r"n=(\d+)")[0].astype(int)))
    # two AI-generated clips; they have no ground truth
    assert n == {"random-retrieval [reference: chance]": 2, "ground-truth [reference: ceiling]": 0}


def test_views_show_their_content(lb, monkeypatch):
    at = app(lb, monkeypatch, view="ablations")
    diffs = at.dataframe[1].value
    assert set(diffs["variant"]) == {"no-rhythm", "no-video"} and {"lo", "hi", "p_holm"} <= set(diffs.columns)
    at = app(lb, monkeypatch, view="studies")
    ranking = at.dataframe[0].value
    assert list(ranking["system"])[0] == "test-noise [untrained]" and "strength" in ranking
    assert list(ranking.columns[:6]) == ["rank", "system", "votes", "strength", "ci_lo", "ci_hi"]
    assert at.selectbox(key="study-question").value == "overall"
    objective = at.dataframe[-1].value
    assert set(objective["system"]) == {"test-noise [untrained]", "ground-truth [reference: ceiling]",
                                        "random-retrieval [reference: chance]"}  # badged in the study view too
    at = app(lb, monkeypatch, view="clips")
    no_errors(at)
    assert len(at.get("video")) == 1 and not at.warning  # the clip's picture muxed with the chosen soundtrack
    per_clip = at.dataframe[0].value
    first = at.selectbox(key="clip-id").value
    res = lb["res"]
    assert len(per_clip) == res.scores.loc[res.scores["clip_id"] == first, "run_id"].nunique() >= 3
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


# -- summary, definitions, stamp (issue 17) -------------------------------------------------------------------------
def test_summary_records_rank_like_with_like(lb):
    from leaderboard.records import records
    from leaderboard.views.summary import default_metrics, summary_frame
    from vm_eval.summary import summarize

    res = lb["res"]
    matrix = ClipMatrix.build(res)
    recs = records(res, Filters(), matrix)
    assert default_metrics(recs)[0] == "fad-logmel-nonstandard"  # the FAD family's headline, from what ran
    s = summarize(recs, ["test-av", "duration-error"], sort_by="test-av")
    frame = summary_frame(s)
    ranked = frame[frame["group"] == "ranked"]
    assert set(ranked["system"]) == {f"dir:{n}" for n in SYSTEMS}
    assert set(frame.loc[frame["group"] == "reference", "badge"]) == {"reference: ceiling", "reference: chance"}
    assert list(frame.loc[frame["group"] == "untrained", "badge"]) == ["untrained"]
    # the tones have all 7 clips, the noisy truth only the 5 with reference music: ranks use the 5 in common
    tones = ranked[ranked["system"] == "dir:sys-tones"].iloc[0]
    assert tones["test-av / n"] == 5 and "common clips" in tones["test-av / note"]
    truth = ranked[ranked["system"] == "dir:sys-noisy-truth"].iloc[0]
    assert "missing output" in truth["duration-error / note"] or truth["duration-error / n"] == 5
    assert frame.loc[frame["group"] != "ranked", "test-av / rank"].eq("").all()  # never ranked
    # under a clip filter the records carry the recomputed per-clip aggregates and no set metric
    f = Filters(sources=("real",))
    sub = records(res, f, matrix)
    assert all("test-set-rms" not in r.aggregates for r in sub)
    long = cells(res, f, matrix)
    for r in sub:
        a = r.aggregates["duration-error"]
        row = long[(long["run_id"] == r.run_id) & long["column"].str.startswith("duration-error@")].iloc[0]
        assert a.n == row["n"] and (a.mean is None or a.mean == pytest.approx(row["mean"]))


def test_metric_definitions_come_from_the_metrics_metadata(lb):
    from leaderboard.views.definitions import definitions

    defs = {d["metric"]: d for d in definitions(lb["res"], include_unrun=True)}
    fad = defs["fad-logmel-nonstandard"]
    assert fad["direction"] == "lower is better" and fad["runs"] == 5 and fad["reference implementation"]
    assert fad["null"] and any("number of clips" in c for c in fad["caveats"]) and not fad["standard"]
    loud = defs["loudness-lufs"]
    assert loud["units"] == "LUFS" and loud["direction"].startswith("descriptive")
    f1 = defs["beat-visual-f1-cuts"]  # not run in these results: built here from its own MetricInfo
    assert f1["runs"] == 0 and any("beat-sync" in c and "ground truth" in c for c in f1["caveats"])
    assert "vs-shift" in f1["null"]
    assert {d["source"] for d in defs.values()} <= {"built here", "stored in runs", "registry only"}


def test_metric_keys_do_not_hash_documentation(lb):
    """The documentation fields never enter a metric's key: each stored identity (which now carries them) hashes,
    without them, to the key its scores were stored under; and changing them leaves every key as it was."""
    import dataclasses

    from metrics.base import DOC_FIELDS, MetricInfo, _hash
    from vm_eval.registries import METRICS
    from vm_eval.scoring.resolve import build

    assert {"description", "reference_impl", "null_value", "caveats"} <= set(DOC_FIELDS)
    for run in lb["runs"].values():
        for name, ident in run.meta()["metrics"].items():
            assert set(DOC_FIELDS) <= set(ident), name  # stored beside the identity, for the definitions page
            bare = {k: v for k, v in ident.items() if k not in DOC_FIELDS and k != "key"}
            assert _hash(bare)[:16] == ident["key"], name
    info = MetricInfo(name="x", version=1, units="", higher_is_better=True, description="a")
    other = dataclasses.replace(info, description="b", reference_impl="r", null_value="0", caveats=("c",))
    assert info.key("rs") == other.key("rs") and not set(DOC_FIELDS) & set(other.identity("rs"))
    for entry in METRICS.entries():  # every metric that builds here (no weights needed)
        if entry.weights or entry.prefix or not entry.availability()[0]:
            continue
        bound = build(entry)
        assert not set(DOC_FIELDS) & set(bound.info.identity("rs")), entry.name
        changed = dataclasses.replace(bound.info, caveats=("changed",), reference_impl="changed")
        assert changed.key("rs", bound.inputs or None) == bound.info.key("rs", bound.inputs or None)


def test_results_reread_when_the_folder_changes(tmp_path, monkeypatch):
    import json
    import shutil

    from streamlit.testing.v1 import AppTest

    from leaderboard.data import folder_stamp

    results = tmp_path / "results"
    write_synthetic(results, runs=2, clips=20, metrics=2)
    monkeypatch.setenv("VM_EVAL_RESULTS", str(results))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["view"] = "runs"
    at.run()
    assert len(at.dataframe[0].value) == 2
    before = folder_stamp(results)
    src = next(results.glob("*/*/*/*/run.json")).parent
    dst = src.parent / "20260101-000000-added"
    shutil.copytree(src, dst)  # a run finished after the app started
    meta = json.loads((dst / "run.json").read_text())
    (dst / "run.json").write_text(json.dumps({**meta, "run_id": dst.name}))
    assert folder_stamp(results) != before
    at.run()  # a plain rerun (any widget change), no "Reload results"
    no_errors(at)
    assert len(at.dataframe[0].value) == 3


def test_missing_alpha_and_single_clip_points_are_explained():
    from leaderboard.views.common import errorbar_plot
    from leaderboard.views.studies import alpha_text

    assert alpha_text({"alpha": 0.4}) == "0.40"
    assert alpha_text({"alpha": None, "units": 0}).startswith("n/a (no clip")
    assert alpha_text({"alpha": float("nan"), "units": 3, "expected_disagreement": 0.0}).startswith("n/a (every")
    df = pd.DataFrame({"run": ["a", "a"], "group": ["promo", "other"], "mean": [0.5, 0.7], "lo": [0.4, np.nan],
                       "hi": [0.6, np.nan], "n": [9, 1]})
    fig = errorbar_plot(df, y="run", hue="group")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["n=9", "n=1, no CI"]
    hollow = [ln for ln in fig.axes[0].lines if ln.get_markerfacecolor() == "white"]
    assert len(hollow) == 1  # the single-clip group is drawn hollow, not as a certain point
