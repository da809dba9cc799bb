"""Coverage of the Bradley-Terry 95% intervals on synthetic votes from known strengths, and their honesty at
small n against the pairwise Clopper-Pearson intervals.

Coverage: R replications per panel size; in each, 4 systems of known centred log-strengths, every rater gives 12
votes on random pairs of 10 clips, and the two-way (raters x clips) interval of each system is checked against
the truth. The estimate is the mean over replications of the share of the 4 systems covered; a mean of 4
Bernoulli(p) indicators has variance <= p (1 - p) whatever their correlation, so its sd is at most
sqrt(0.95 * 0.05 / R) = 0.0154 at R = 200, and the test accepts |coverage - 0.95| <= 3 sd (0.046). Seeded:
the same numbers every run.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from studies.analysis import BTConfig, clopper_pearson, fit_bradley_terry, pairwise_win_rates, report, votes_frame

TRUE = np.array([0.6, 0.2, -0.2, -0.6])
SYSTEMS = ["s1", "s2", "s3", "s4"]
PAIRS = list(itertools.combinations(range(len(SYSTEMS)), 2))
REPLICATIONS = 200
NOMINAL = 0.95
TOLERANCE = 3 * math.sqrt(NOMINAL * (1 - NOMINAL) / REPLICATIONS)


def synth(rng: np.random.Generator, raters: int, votes_per_rater: int = 12, clips: int = 10) -> pd.DataFrame:
    r = np.repeat(np.arange(raters), votes_per_rater)
    pair = rng.integers(0, len(PAIRS), r.size)
    a = np.array([PAIRS[p][0] for p in pair])
    b = np.array([PAIRS[p][1] for p in pair])
    win_a = rng.random(r.size) < 1.0 / (1.0 + np.exp(-(TRUE[a] - TRUE[b])))
    return pd.DataFrame({"rater_id": r.astype(str), "clip_id": rng.integers(0, clips, r.size).astype(str),
                         "system_a": np.array(SYSTEMS)[a], "system_b": np.array(SYSTEMS)[b],
                         "answer": np.where(win_a, "A", "B")})


@pytest.mark.parametrize("raters", [5, 20, 100])
def test_two_way_intervals_cover_the_truth(raters, one_blas_thread):
    rng = np.random.default_rng(raters)
    covered = []
    for rep in range(REPLICATIONS):
        # 100 resamples per pass and a looser MM tolerance keep this cheap; neither moves the interval much
        res = fit_bradley_terry(synth(rng, raters), BTConfig(resamples=100, seed=rep, tol=1e-6), systems=SYSTEMS)
        covered.append(((res.ci_lo <= TRUE) & (TRUE <= res.ci_hi)).mean())
    coverage = float(np.mean(covered))
    print(f"{raters} raters: coverage {coverage:.3f} over {REPLICATIONS} replications (tolerance {TOLERANCE:.3f})")
    assert abs(coverage - NOMINAL) <= TOLERANCE


def _two_rater_votes() -> pd.DataFrame:
    """The issue's case: 2 raters, 10 votes each on 3 systems; both always prefer s1 > s2 > s3."""
    rows, order = [], {"s1": 0, "s2": 1, "s3": 2}
    for r in range(2):
        for t in range(10):
            a, b = [("s1", "s2"), ("s2", "s3"), ("s1", "s3")][t % 3]
            if t % 2:
                a, b = b, a
            rows.append({"rater_id": f"r{r}", "trial_id": f"r{r}t{t}", "clip_id": f"c{t % 5}", "question": "overall",
                         "system_a": a, "system_b": b, "answer": "A" if order[a] < order[b] else "B"})
    return votes_frame(rows)


def test_two_raters_get_no_falsely_narrow_interval_and_a_warning():
    votes = _two_rater_votes()
    pair = pairwise_win_rates(votes).set_index(["system", "opponent"]).loc[("s1", "s2")]
    assert pair["win_rate"] == 1.0 and pair["ci_hi"] - pair["ci_lo"] > 0.3  # Clopper-Pearson: [0.63, 1]
    # what the issue saw: without the minimum, the raters' bootstrap is far narrower than that
    rater_only = fit_bradley_terry(votes, BTConfig(cluster="rater", min_units=2, resamples=200))
    s2 = rater_only.strength[1]
    p_lo, p_hi = (1.0 / (1.0 + np.exp(-(x - s2))) for x in (rater_only.ci_lo[0], rater_only.ci_hi[0]))
    assert p_hi - p_lo < 0.5 * (pair["ci_hi"] - pair["ci_lo"])
    honest = fit_bradley_terry(votes, BTConfig(resamples=200))
    assert np.isnan(honest.ci_lo).all() and np.isnan(honest.ci_hi).all()
    assert "2 raters" in honest.ci_note and (honest.rank == 1).all() and (honest.rank_worst == 3).all()
    rep = report(votes, {"resamples": 50, "splits": 10})
    q = rep.summary["questions"]["overall"]
    assert all(r["ci_lo"] is None and r["rank_range"] == "1-3" for r in q["ranking"])
    text = " | ".join(rep.summary["warnings"])
    assert "2 raters, fewer than the 10" in text and "3 of 3 system pairs have fewer than 20 votes" in text
    assert "interval undefined" in text


def test_defined_interval_is_not_narrower_than_clopper_pearson():
    """Two systems, 8 raters x 10 clips, a moderate preference: the BT interval, as a win probability, is about
    as wide as the pair's exact binomial interval (the two-way bootstrap does not understate it)."""
    rng = np.random.default_rng(5)
    rows = []
    for r in range(8):
        for c in range(10):
            a, b = ("x", "y") if rng.random() < 0.5 else ("y", "x")
            p_x = 0.65
            x_wins = rng.random() < p_x
            rows.append({"rater_id": f"r{r}", "trial_id": f"{r}-{c}", "clip_id": f"c{c}", "question": "q",
                         "system_a": a, "system_b": b, "answer": "A" if (a == "x") == x_wins else "B"})
    votes = votes_frame(rows)
    res = fit_bradley_terry(votes, BTConfig(resamples=400), system_order=["x", "y"])
    wins = int(sum((v["system_a"] == "x") == (v["answer"] == "A") for _, v in votes.iterrows()))
    lo, hi = clopper_pearson(wins, len(votes))
    to_p = lambda d: 1.0 / (1.0 + np.exp(-d))  # noqa: E731  P(x beats y) from the strength difference 2 s_x
    bt_lo, bt_hi = to_p(2 * res.ci_lo[0]), to_p(2 * res.ci_hi[0])
    assert bt_hi - bt_lo >= 0.8 * (hi - lo)
