"""Listening-test statistics (studies.analysis): known answers, scipy cross-checks, synthetic BT recovery."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.stats import binomtest

from studies.analysis import (
    AnalysisConfig,
    BTConfig,
    ExclusionRule,
    Vote,
    apply_exclusion,
    binomial_test,
    catch_accuracy,
    ci_ranks,
    clopper_pearson,
    fit_bradley_terry,
    holm,
    krippendorff_nominal,
    mm_fit,
    pairwise_win_rates,
    position_bias,
    report,
    spearman_brown,
    split_half_reliability,
    vote_agreement,
    votes_frame,
)

TRUE = {"s1": 0.9, "s2": 0.3, "s3": -0.3, "s4": -0.9}  # centred log-strengths


def synth_votes(true: dict[str, float], n_raters: int = 30, clips: int = 6, seed: int = 0,
                catch_per_rater: int = 3, question: str = "overall") -> pd.DataFrame:
    """Every rater judges every pair on every clip once, side order at random; votes drawn from the BT model."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_raters):
        t = 0
        for c in range(clips):
            for a, b in itertools.combinations(true, 2):
                if rng.random() < 0.5:
                    a, b = b, a
                p_a = 1.0 / (1.0 + math.exp(-(true[a] - true[b])))
                rows.append(Vote(f"r{r:02d}", f"r{r}t{t}", f"c{c}", question, a, b,
                                 "A" if rng.random() < p_a else "B", False, None, t))
                t += 1
        for j in range(catch_per_rater):
            side = "A" if rng.random() < 0.5 else "B"
            a, b = ("gt", "anchor") if side == "A" else ("anchor", "gt")
            rows.append(Vote(f"r{r:02d}", f"r{r}c{j}", f"c{j}", question, a, b, side, True, side, t))
            t += 1
    return votes_frame(rows)


def v(rater, a, b, answer, clip="c0", question="q", trial=None, catch=False, expected=None) -> dict:
    return {"rater_id": rater, "trial_id": trial or f"{rater}-{a}-{b}-{clip}-{question}", "clip_id": clip,
            "question": question, "system_a": a, "system_b": b, "answer": answer, "is_catch": catch,
            "catch_expected": expected, "timestamp": 0}


# --- binomial ---------------------------------------------------------------------------------------------------

def test_clopper_pearson_and_binomial_test_match_scipy():
    for n in (1, 2, 5, 10, 17, 40, 101):
        for k in range(n + 1):
            ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
            assert clopper_pearson(k, n) == pytest.approx((ref.low, ref.high), abs=1e-12)
            ref90 = binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact")
            assert clopper_pearson(k, n, alpha=0.1) == pytest.approx((ref90.low, ref90.high), abs=1e-12)
            for p0 in (0.5, 0.3, 0.9):
                assert binomial_test(k, n, p0) == pytest.approx(binomtest(k, n, p0).pvalue, rel=1e-9, abs=1e-15)
    assert clopper_pearson(0, 10)[0] == 0.0 and clopper_pearson(10, 10)[1] == 1.0
    assert all(math.isnan(x) for x in clopper_pearson(0, 0)) and math.isnan(binomial_test(0, 0))
    with pytest.raises(ValueError):
        clopper_pearson(5, 4)


def test_holm_hand_case():
    # sorted p: 0.01*3=0.03, 0.02*2=0.04, 0.04*1=0.04 (monotone); NaN stays NaN
    assert holm([0.04, 0.01, 0.02, math.nan])[:3] == pytest.approx([0.04, 0.03, 0.04])
    assert math.isnan(holm([0.04, 0.01, 0.02, math.nan])[3])


# --- win rates and position bias ----------------------------------------------------------------------------------

def _small_pair_votes() -> pd.DataFrame:
    # s1 vs s2: s1 wins 3 times (twice shown on side B), loses once, one tie; one s1 vs s3 vote on another question.
    return votes_frame([
        v("r1", "s1", "s2", "A"), v("r2", "s2", "s1", "B"), v("r3", "s2", "s1", "B"), v("r4", "s1", "s2", "B"),
        v("r5", "s2", "s1", "tie"), v("r1", "s3", "s1", "A", question="q2"),
    ])


def test_win_rates_hand_computed():
    t = pairwise_win_rates(_small_pair_votes())
    row = t[t["question"] == "q"].iloc[0]
    assert tuple(row[["system", "opponent", "wins", "losses", "ties", "n"]]) == ("s1", "s2", 3, 1, 1, 4)
    assert row["win_rate"] == pytest.approx(0.75)
    assert row["p_value"] == pytest.approx(10 / 16)  # P(X>=3) + P(X<=1) for Bin(4, .5) = (1+4+4+1)/16
    assert (row["ci_lo"], row["ci_hi"]) == pytest.approx(clopper_pearson(3, 4))
    row2 = t[t["question"] == "q2"].iloc[0]
    assert (row2["system"], row2["opponent"], row2["wins"], row2["losses"]) == ("s1", "s3", 0, 1)

    half = pairwise_win_rates(_small_pair_votes(), ties="half").iloc[0]
    assert half["win_rate"] == pytest.approx(3.5 / 5) and half["n"] == 5
    assert half["p_value"] == pytest.approx(10 / 16)  # the sign test ignores ties in both modes

    flipped = pairwise_win_rates(_small_pair_votes(), system_order=["s2", "s1"]).iloc[0]
    assert (flipped["system"], flipped["wins"], flipped["losses"], flipped["win_rate"]) == ("s2", 1, 3, 0.25)


def test_position_bias_hand_computed():
    rows = [v(f"r{i}", "x", "y", "A") for i in range(6)] + [v(f"s{i}", "x", "y", "B") for i in range(2)]
    rows += [v("t", "x", "y", "tie"), v("c", "x", "y", "B", catch=True, expected="B")]
    pb = position_bias(votes_frame(rows))
    assert (pb.n_a, pb.n_b, pb.n_ties, pb.share_a) == (6, 2, 1, 0.75)
    assert pb.p_value == pytest.approx(74 / 256)  # 2 * (1 + 8 + 28) / 2**8
    assert (pb.ci_lo, pb.ci_hi) == pytest.approx(clopper_pearson(6, 8))
    assert position_bias(votes_frame(rows), include_catch=True).n_b == 3


# --- agreement --------------------------------------------------------------------------------------------------

def test_krippendorff_published_example():
    # Krippendorff (2011) "Computing Krippendorff's alpha-reliability", nominal example: 4 observers x 12 units.
    n = None
    a = [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n]
    b = [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3]
    c = [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n]
    d = [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]
    res = krippendorff_nominal(zip(a, b, c, d))
    assert round(res.alpha, 3) == 0.743
    assert (res.units, res.values) == (11, 40)  # unit 12 has one value: not pairable


def test_krippendorff_edge_cases():
    assert krippendorff_nominal([["x", "x"], ["y", "y", "y"], ["x", "x", None]]).alpha == 1.0
    assert math.isnan(krippendorff_nominal([["x", "x"], ["x", "x"]]).alpha)  # no variation: undefined
    assert math.isnan(krippendorff_nominal([["x"], [None, "y"]]).alpha)  # nothing pairable
    # two coders who always disagree on a binary code: alpha = 1 - (n-1) * 4 / (2 * 2 * 2) = -0.5 with n = 4
    assert krippendorff_nominal([["x", "y"], ["y", "x"]]).alpha == pytest.approx(-0.5)


def test_vote_agreement_ignores_side_order():
    # three raters agree on every unit although they saw different side orders -> alpha = 1
    rows = [v("r1", "s1", "s2", "A", clip="c1"), v("r2", "s2", "s1", "B", clip="c1"),
            v("r3", "s1", "s2", "A", clip="c1"), v("r1", "s1", "s2", "B", clip="c2"),
            v("r2", "s2", "s1", "A", clip="c2"), v("r3", "s2", "s1", "A", clip="c2")]
    assert vote_agreement(votes_frame(rows)).alpha == pytest.approx(1.0)


# --- Bradley-Terry ----------------------------------------------------------------------------------------------

def _penalised_nll(logs: np.ndarray, W: np.ndarray, prior: float) -> float:
    diff = logs[:, None] - logs[None, :]
    nll = -(W * -np.logaddexp(0.0, -diff)).sum()
    return nll - (prior / 2) * (-np.logaddexp(0.0, -logs) - np.logaddexp(0.0, logs)).sum()


def test_mm_matches_direct_optimisation_with_zero_win_and_disconnected_systems():
    rng = np.random.default_rng(3)
    W = rng.poisson(3.0, (5, 5)).astype(float)
    np.fill_diagonal(W, 0.0)
    W[0, :] = 0.0  # system 0 never wins: the MLE would be -inf, the prior keeps it finite
    W2 = W.copy()
    W2[:2, 2:] = 0.0
    W2[2:, :2] = 0.0  # two disconnected components
    for wins in (W, W2):
        ref = minimize(_penalised_nll, np.zeros(5), args=(wins, 1.0), method="BFGS", options={"gtol": 1e-11}).x
        assert mm_fit(wins) == pytest.approx(ref - ref.mean(), abs=1e-5)
    assert np.isfinite(mm_fit(W)).all() and mm_fit(W)[0] == mm_fit(W).min()
    votes = votes_frame([v("r1", "a", "b", "A"), v("r2", "a", "b", "A"), v("r1", "c", "d", "B")])
    res = fit_bradley_terry(votes, BTConfig(resamples=50))
    assert not res.connected and res.component.tolist() == [0, 0, 1, 1]
    assert np.isfinite(res.strength).all()


def test_ci_ranks_rule():
    lo = np.array([1.0, 0.5, -1.0, -2.0])
    hi = np.array([2.0, 1.5, 0.4, -1.5])
    # s2 overlaps s1 -> rank 1; s3: s1, s2 lower bounds exceed 0.4 -> 3; s4 below all three -> 4
    assert ci_ranks(lo, hi).tolist() == [1, 1, 3, 4]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_bt_recovers_ranking_and_covers_truth(seed):
    votes = synth_votes(TRUE, seed=seed)
    res = fit_bradley_terry(votes[~votes["is_catch"]], BTConfig(resamples=300, seed=seed))
    assert res.systems == ["s1", "s2", "s3", "s4"]
    assert np.all(np.diff(res.strength) < 0)  # order recovered
    truth = np.array([TRUE[s] for s in res.systems])
    covered = (res.ci_lo <= truth) & (truth <= res.ci_hi)
    assert covered.sum() >= 3  # 95% intervals: at most one miss per seed
    assert res.rank[0] == 1 and res.rank[-1] == 4
    assert (res.votes == 30 * 6 * 3).all()


def test_no_preference_cis_cover_half_and_ranks_tie():
    votes = synth_votes(dict.fromkeys(TRUE, 0.0), seed=7)
    rep = report(votes, {"resamples": 300, "splits": 50})
    q = rep.questions["overall"]
    assert ((q.win_rates["ci_lo"] <= 0.5) & (q.win_rates["ci_hi"] >= 0.5)).all()
    assert (q.bradley_terry["rank"] == 1).all()
    assert ((q.bradley_terry["ci_lo"] <= 0) & (q.bradley_terry["ci_hi"] >= 0)).all()


def test_vote_and_rater_bootstrap_and_half_ties_run():
    votes = synth_votes(TRUE, n_raters=10, seed=4)
    votes.loc[votes.index[::7], "answer"] = "tie"
    main = votes[~votes["is_catch"]]
    by_vote = fit_bradley_terry(main, BTConfig(resamples=100, cluster="vote", ties="half"))
    by_rater = fit_bradley_terry(main, BTConfig(resamples=100, cluster="rater", ties="half"))
    assert by_vote.strength == pytest.approx(by_rater.strength)
    assert (by_vote.ties > 0).all() and (by_vote.votes == by_vote.wins + by_vote.losses + by_vote.ties).all()
    assert not np.allclose(by_vote.ci_lo, by_rater.ci_lo)


# --- reliability --------------------------------------------------------------------------------------------------

def test_split_half_reliability():
    assert float(spearman_brown(0.5)) == pytest.approx(2 / 3) and float(spearman_brown(-1.0)) == -1.0
    strong = synth_votes({"s1": 2.0, "s2": 0.7, "s3": -0.7, "s4": -2.0}, seed=5)
    rel = split_half_reliability(strong[~strong["is_catch"]], splits=100, seed=1)
    assert rel.valid == 100 and rel.corrected_mean > 0.95 and rel.corrected_lo <= rel.corrected_mean <= 1.0
    two = votes_frame([v("r1", "a", "b", "A"), v("r2", "a", "b", "B")])
    assert math.isnan(split_half_reliability(two).rho_mean)


# --- catch trials and exclusion -----------------------------------------------------------------------------------

def _catch_votes() -> pd.DataFrame:
    rows = []
    plan = {"good": "AAAA", "edge": "AAAB", "bad": "ABBB", "tie": "AA" + "tt", "few": "A"}
    for rater, answers in plan.items():
        for j, ans in enumerate(answers):
            rows.append(v(rater, "gt", "anchor", "tie" if ans == "t" else ans, trial=f"{rater}{j}", catch=True,
                          expected="A"))
        rows.append(v(rater, "s1", "s2", "A", trial=f"{rater}x"))
    # a question without a catch on a catch trial is not scored
    rows.append(v("good", "gt", "anchor", "B", trial="good0", question="quality", catch=True, expected=None))
    return votes_frame(rows)


def test_catch_accuracy_and_exclusion_rule():
    table = catch_accuracy(_catch_votes()).set_index("rater_id")
    assert table.loc["good", "catch_answers"] == 4 and table.loc["good", "catch_accuracy"] == 1.0
    assert not table.loc["edge", "excluded"]  # 3/4 = 0.75 is not below 0.75
    assert table.loc["bad", "excluded"] and table.loc["bad", "reason"] == "catch accuracy 1/4 = 0.25 < 0.75"
    assert table.loc["tie", "excluded"] and table.loc["tie", "catch_correct"] == 2  # ties count as wrong
    assert table.loc["few", "reason"] == "too few catch trials (1 < 2)"
    kept, _ = apply_exclusion(_catch_votes())
    assert sorted(kept["rater_id"].unique()) == ["edge", "good"]
    strict = catch_accuracy(_catch_votes(), ExclusionRule(min_accuracy=0.9, min_catch_trials=1))
    assert strict.set_index("rater_id").loc[["edge", "few"], "excluded"].tolist() == [True, False]
    assert not catch_accuracy(_catch_votes(), ExclusionRule(enabled=False))["excluded"].any()
    no_catch = votes_frame([v("r1", "s1", "s2", "A"), v("r2", "s1", "s2", "B")])
    assert not catch_accuracy(no_catch)["excluded"].any()  # nothing to screen on: everybody kept


def test_report_uses_kept_raters_and_is_deterministic():
    votes = synth_votes(TRUE, n_raters=12, seed=11)
    sloppy = votes[votes["rater_id"] == "r00"].copy()
    sloppy["rater_id"] = "sloppy"
    wrong = sloppy.loc[sloppy["is_catch"], "catch_expected"].map({"A": "B", "B": "A"})
    sloppy.loc[sloppy["is_catch"], "answer"] = wrong
    votes = pd.concat([votes, sloppy], ignore_index=True)
    cfg = AnalysisConfig(resamples=200, splits=40, seed=3)
    rep = report(votes, cfg)
    assert rep.summary["excluded"] == [{"rater_id": "sloppy", "reason": "catch accuracy 0/3 = 0.00 < 0.75"}]
    q = rep.questions["overall"]
    assert q.raters == 12 and q.votes == 12 * 6 * 6
    assert int(q.win_rates[["wins", "losses", "ties"]].to_numpy().sum()) == q.votes
    text = json.dumps(rep.summary, allow_nan=False)
    assert json.loads(text)["questions"]["overall"]["ranking"][0]["system"] == "s1"
    again = report(votes, cfg)
    assert json.dumps(again.summary) == text
    pd.testing.assert_frame_equal(again.bradley_terry, rep.bradley_terry)
    other = report(votes, cfg.model_copy(update={"seed": 4}))
    assert not np.allclose(other.bradley_terry["ci_lo"], rep.bradley_terry["ci_lo"])
    assert set(rep.bradley_terry.columns) >= {"question", "system", "strength", "ci_lo", "ci_hi", "rank", "votes"}


def test_votes_validation_and_config_errors():
    with pytest.raises(ValueError, match="answer 'C'"):
        votes_frame([v("r1", "a", "b", "C")])
    with pytest.raises(ValueError, match="both 'a'"):
        votes_frame([v("r1", "a", "a", "A")])
    with pytest.raises(ValueError, match="lacks column"):
        votes_frame(pd.DataFrame({"rater_id": ["r1"]}))
    with pytest.raises(ValueError, match="catch_expected"):
        votes_frame([v("r1", "a", "b", "A", catch=True, expected="tie")])
    with pytest.raises(ValueError):
        AnalysisConfig(ties="drop")
    with pytest.raises(ValueError):
        AnalysisConfig(unknown=1)
    with pytest.raises(ValueError):
        BTConfig(prior=0.0)
    assert AnalysisConfig(exclusion={"min_accuracy": 0.8}).exclusion.min_accuracy == 0.8


# --- small-n honesty, arena table, practice and screening (issue 16 part 6) ----------------------------------------

def test_arena_table_rank_ranges_and_thresholds():
    votes = synth_votes(TRUE, n_raters=12, seed=2)
    rep = report(votes, {"resamples": 100, "splits": 10, "min_raters": 20, "min_votes_per_pair": 10})
    q = rep.questions["overall"]
    arena = q.arena()
    assert list(arena.columns) == ["system", "votes", "strength", "ci_lo", "ci_hi", "rank", "rank_worst",
                                   "rank_range"]
    assert arena["system"].iloc[0] == "s1" and (arena["rank"] <= arena["rank_worst"]).all()
    for _, r in arena.iterrows():  # the range is what the intervals allow
        lo, hi = arena["ci_lo"].to_numpy(), arena["ci_hi"].to_numpy()
        assert r["rank"] == 1 + (lo > r["ci_hi"]).sum() and r["rank_worst"] == len(arena) - (hi < r["ci_lo"]).sum()
        assert r["rank_range"] == (str(r["rank"]) if r["rank"] == r["rank_worst"] else
                                   f"{r['rank']}-{r['rank_worst']}")
    # 12 raters < 20: warned; every pair has 12 * 6 = 72 votes >= 10: not warned
    assert q.warnings == ["overall: 12 raters, fewer than the 20 the study config asks for (thresholds.raters): "
                          "intervals and ranks are not reliable"]
    assert rep.summary["warnings"] == q.warnings and rep.summary["default_question"] == "overall"
    assert rep.summary["questions"]["overall"]["ranking"][0]["rank_range"] == arena["rank_range"].iloc[0]
    assert list(rep.arena["question"].unique()) == ["overall"]


def test_practice_votes_never_count_and_failed_screening_excludes():
    votes = synth_votes(TRUE, n_raters=8, seed=6, catch_per_rater=0)
    practice = votes.groupby("rater_id").head(1).index
    votes["is_practice"] = votes.index.isin(practice)
    votes["screening_passed"] = np.where(votes["rater_id"] == "r00", False, True)
    base = {"resamples": 20, "splits": 5}
    rep = report(votes, base)
    assert rep.summary["practice_votes"] == 8 and rep.questions["overall"].votes == len(votes) - 8
    assert rep.summary["excluded"] == []  # screening kept unless the study config asks to exclude on it
    strict = report(votes, {**base, "exclusion": {"exclude_failed_screening": True}})
    assert strict.summary["excluded"] == [{"rater_id": "r00", "reason": "failed headphone screening"}]
    assert strict.raters["screening_passed"].tolist() == [False] + [True] * 7  # raters sorted by id: r00 first
    assert strict.questions["overall"].raters == 7
    plain = votes.drop(columns=["is_practice", "screening_passed"])  # old exports: no marks, nothing dropped
    assert report(plain, base).questions["overall"].votes == len(votes)


def test_heatmap_has_n_in_every_cell_and_full_labels():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from studies.analyze import heatmap

    votes = synth_votes(TRUE, n_raters=3, seed=1, catch_per_rater=0)
    wr = pairwise_win_rates(votes)
    fig = heatmap(wr, list(TRUE), "overall", plt)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 12 and all("\nn=" in t for t in texts)  # every off-diagonal cell of 4 x 4
    assert all(t.endswith(f"n={3 * 6}") for t in texts)  # 3 raters x 6 clips per pair
    assert ax.get_xlabel() and ax.get_ylabel() and "overall" in ax.get_title() and "n = votes" in ax.get_title()
    plt.close(fig)
