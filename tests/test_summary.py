"""The summary core (vm_eval.summary): headline metrics, reference roles, like-with-like CI ranks, badges, forest
plots. Records are built in memory; no run store, no model."""
from __future__ import annotations

import numpy as np
import pytest

from metrics.stats import bootstrap_mean
from vm_eval.summary import (MetricAgg, RunRecord, add_study, all_metrics, ci_ranks, forest_figure, headline_metrics,
                             metric_family, reference_role, summarize)

CLIPS = [f"c{i:02d}" for i in range(12)]


def agg(values, key="k1", hib=True, kind="clip", standard=True, units="u") -> MetricAgg:
    e = bootstrap_mean(np.asarray(values, dtype=float), seed=0)
    return MetricAgg(mean=e.mean, lo=e.lo, hi=e.hi, n=e.n, key=key, units=units, higher_is_better=hib, kind=kind,
                     standard=standard)


def record(label, scores: dict[str, tuple[list[str], list[float]]], family="baseline", trained=True,
           extra: dict[str, MetricAgg] | None = None, skip_reasons=None, key="k1") -> RunRecord:
    """A run with per-clip metrics `scores` {name: (clip ids, values)} (aggregates from them) and `extra`
    aggregates (set metrics, other identities)."""
    aggregates = {m: agg(v, key=key) for m, (_, v) in scores.items()}
    aggregates.update(extra or {})
    clip_scores = {m: (np.asarray(ids, dtype=str), np.asarray(v, dtype=float)) for m, (ids, v) in scores.items()}
    return RunRecord(run_id=f"id-{label}", label=label, model=label, family=family, trained=trained,
                     role=reference_role(label, family), dataset="d", split="test", status="complete",
                     aggregates=aggregates, clip_scores=clip_scores, skip_reasons=skip_reasons or {})


def test_ci_ranks_rule_and_ranges():
    # A and B overlap; C is entirely below both (higher is better); D has no CI
    lo = np.array([0.8, 0.7, 0.1, np.nan])
    hi = np.array([0.9, 0.85, 0.2, np.nan])
    best, worst = ci_ranks(lo, hi, True)
    assert best[:3].tolist() == [1, 1, 3] and worst[:3].tolist() == [2, 2, 3]
    assert np.isnan(best[3]) and np.isnan(worst[3])
    best, worst = ci_ranks(lo, hi, False)  # lower is better: C first
    assert best[:3].tolist() == [2, 2, 1] and worst[:3].tolist() == [3, 3, 1]


def test_references_apart_untrained_badged_and_neither_ranked():
    rng = np.random.default_rng(0)
    v = lambda level: (CLIPS, list(level + rng.normal(0, 0.01, len(CLIPS))))  # noqa: E731
    recs = [record("ground-truth", {"beat-visual-f1-cuts": v(0.9)}, family="reference"),
            record("random-retrieval", {"beat-visual-f1-cuts": v(0.1)}, family="reference"),
            record("anchor-beat-shift", {"beat-visual-f1-cuts": v(0.0)}, family="reference"),
            record("sys-a", {"beat-visual-f1-cuts": v(0.5)}),
            record("sys-b", {"beat-visual-f1-cuts": v(0.3)}),
            record("random-backbone", {"beat-visual-f1-cuts": v(0.95)}, trained=False)]
    s = summarize(recs)
    (col,) = s.columns
    assert col.name == "beat-visual-f1-cuts" and col.ranked and col.family == "alignment"
    assert [r.label for r in s.rows] == ["sys-a", "sys-b", "random-backbone"]  # best first, untrained after
    assert [r.ranked for r in s.rows] == [True, True, False] and s.rows[2].badge == "untrained"
    a, b, u = (r.cells[col.id] for r in s.rows)
    assert (a.rank, a.rank_range, a.best) == (1, (1, 1), True) and (b.rank, b.best) == (2, False)
    assert u.rank is None and not u.best  # the untrained run's higher score neither ranks nor takes "best"
    assert [(r.label, r.badge) for r in s.references] == [
        ("ground-truth", "ceiling"), ("random-retrieval", "chance"), ("anchor-beat-shift", "anchor (rhythm)")]
    assert all(c.rank is None and not c.best for r in s.references for c in r.cells.values())


def test_like_with_like_recomputes_on_common_clips_and_says_why():
    rng = np.random.default_rng(1)
    full = list(rng.uniform(0, 1, len(CLIPS)))
    partial_ids = CLIPS[3:]
    partial = list(rng.uniform(0, 1, len(partial_ids)))
    recs = [record("full", {"beat-visual-f1-cuts": (CLIPS, full)}),
            record("partial", {"beat-visual-f1-cuts": (partial_ids, partial)},
                   skip_reasons={"has no reference music": 3}),
            record("ground-truth", {"beat-visual-f1-cuts": (CLIPS, full)}, family="reference")]
    s = summarize(recs)
    (col,) = s.columns
    assert col.common_clips == 9 and any("9 clips" in n for n in col.notes)
    cells = {r.label: r.cells[col.id] for r in s.all_rows}
    want = bootstrap_mean(np.asarray(full[3:]), seed=0)
    assert cells["full"].recomputed and cells["full"].n == 9 and cells["full"].n_stored == 12
    assert cells["full"].mean == pytest.approx(want.mean) and cells["full"].lo == pytest.approx(want.lo)
    assert not cells["partial"].recomputed and cells["partial"].n == 9
    assert "3 clips have no reference music" in cells["partial"].note
    assert not cells["ground-truth"].recomputed and cells["ground-truth"].n == 12  # references keep their own
    off = summarize(recs, like_with_like=False)
    got = {r.label: r.cells[off.columns[0].id] for r in off.rows}
    assert got["full"].n == 12 and got["full"].mean == pytest.approx(np.mean(full)) and not got["full"].recomputed


def test_descriptive_metrics_are_never_ranked_or_starred_and_identities_stay_apart():
    loud_a = MetricAgg(mean=-10.0, lo=-10.5, hi=-9.5, n=12, key="L", units="LUFS", higher_is_better=None)
    loud_b = MetricAgg(mean=-30.0, lo=-30.5, hi=-29.5, n=12, key="L", units="LUFS", higher_is_better=None)
    fad1 = MetricAgg(mean=1.0, lo=0.5, hi=1.5, n=12, key="bb-1", higher_is_better=False, kind="set", backbone="vggish")
    fad2 = MetricAgg(mean=9.0, lo=8.0, hi=10.0, n=12, key="bb-2", higher_is_better=False, kind="set", backbone="clap")
    recs = [record("a", {}, extra={"loudness-lufs": loud_a, "fad-vggish": fad1}),
            record("b", {}, extra={"loudness-lufs": loud_b, "fad-vggish": fad2})]
    s = summarize(recs, ["loudness-lufs", "fad-vggish"])
    loud = s.columns[0]
    assert not loud.ranked and all(r.cells[loud.id].rank is None and not r.cells[loud.id].best for r in s.rows)
    fads = [c for c in s.columns if c.name == "fad-vggish"]
    assert len(fads) == 2 and {c.label for c in fads} == {"fad-vggish [vggish]", "fad-vggish [clap]"}
    assert s.sort_by == fads[0].id  # the first column with a direction


def test_headline_metrics_one_per_family_standard_first():
    ones = (CLIPS, [0.5] * len(CLIPS))
    extra = {"fad-logmel-nonstandard": MetricAgg(1.0, 0.5, 1.5, 12, "f0", higher_is_better=False, kind="set",
                                                 standard=False),
             "fad-vggish": MetricAgg(2.0, 1.5, 2.5, 12, "f1", higher_is_better=False, kind="set"),
             "loudness-lufs": MetricAgg(-20.0, -21.0, -19.0, 12, "l", higher_is_better=None),
             "beat-visual-f1-cuts:vs-shift": MetricAgg(0.1, 0.0, 0.2, 12, "k1", higher_is_better=True)}
    recs = [record("a", {"beat-visual-f1-cuts": ones, "beat-visual-f1-framediff": ones,
                         "kl-passt-ref-gen-w10s": ones}, extra=extra),
            record("b", {"beat-visual-f1-framediff": ones})]
    # fad: the standard one, though a stand-in ran too; alignment: the one more runs have; no sub-score/descriptive
    assert headline_metrics(recs) == ["fad-vggish", "kl-passt-ref-gen-w10s", "beat-visual-f1-framediff"]
    assert metric_family("beat-visual-f1-cuts:vs-shift") == "alignment" and metric_family("nope") == "unknown"
    assert "beat-visual-f1-cuts:vs-shift" in all_metrics(recs, nulls=True)
    assert "beat-visual-f1-cuts:vs-shift" not in all_metrics(recs)


def test_study_preference_becomes_a_headline_column():
    ones = (CLIPS, [0.5] * len(CLIPS))
    recs = [record("sys-a", {"beat-visual-f1-cuts": ones}), record("sys-b", {"beat-visual-f1-cuts": ones}),
            record("ground-truth", {"beat-visual-f1-cuts": ones}, family="reference")]
    summary = {"questions": {"overall": {"votes": 120, "ranking": [
        {"system": "ground-truth", "strength": 1.2, "ci_lo": 0.9, "ci_hi": 1.5, "rank": 1},
        {"system": "sys-a", "strength": 0.4, "ci_lo": 0.2, "ci_hi": 0.6, "rank": 2},
        {"system": "sys-b", "strength": -1.6, "ci_lo": -1.9, "ci_hi": -1.3, "rank": 3}]}},
        "study": {"systems": {"sys-a": "id-sys-a", "sys-b": "id-sys-b", "ground-truth": "id-ground-truth"},
                  "manifest_sha256": "ab" * 32}}
    recs = add_study(recs, {"summary": summary})
    assert headline_metrics(recs)[-1] == "preference:overall"
    s = summarize(recs, sort_by="preference:overall")
    col = s.column(s.sort_by)
    assert col.family == "human" and col.kind == "study" and col.ranked
    assert [r.label for r in s.rows] == ["sys-a", "sys-b"]
    assert s.rows[0].cells[col.id].rank_range == (1, 1) and s.rows[0].cells[col.id].n == 120
    assert s.references[0].cells[col.id].rank is None  # ground truth's top strength is not a rank


def test_forest_figure_has_every_system_with_n_and_labelled_reference_lines():
    rng = np.random.default_rng(2)
    v = lambda level: (CLIPS, list(level + rng.normal(0, 0.05, len(CLIPS))))  # noqa: E731
    recs = [record("ground-truth", {"beat-visual-f1-cuts": v(0.9)}, family="reference"),
            record("random-retrieval", {"beat-visual-f1-cuts": v(0.1)}, family="reference"),
            record("sys-a", {"beat-visual-f1-cuts": v(0.5)}),
            record("untrained-b", {"beat-visual-f1-cuts": v(0.4)}, trained=False)]
    s = summarize(recs)
    fig = forest_figure(s, s.columns[0].id)
    ax = fig.axes[0]
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert any("sys-a" in t and "(n=12)" in t for t in ticks)
    assert any("untrained-b [untrained]" in t for t in ticks)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(t.startswith("ground-truth (ceiling)") for t in legend)
    assert any(t.startswith("random-retrieval (chance)") for t in legend)
    assert "higher is better" in ax.get_xlabel()
