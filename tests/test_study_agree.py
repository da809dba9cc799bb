"""Metric-human agreement (`vm-eval study agree`): synthetic votes from a known latent per-clip score, and the
command end to end on votes collected through the real server API."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from studies.agree import AgreeRequest, agree_study, format_agreement
from studies.analysis import votes_frame
from studies.analysis.metric_agreement import AgreementConfig, kendall_tau_b, metric_agreement
from studies.analyze import AnalyzeRequest, analyze_study
from studies.results import list_studies
from studies.server import create_app
from test_study_server import SYSTEMS, Clock, answer_current, build_study, consent, media_bytes, state  # noqa: F401

STRENGTH = {"s1": 0.9, "s2": 0.3, "s3": -0.3, "s4": -0.9}


def latent_study(seed: int, raters: int = 20, trials: int = 24, clips: int = 12, beta: float = 2.0):
    """Votes drawn from a latent per-clip score u(system, clip) = system strength + clip-level noise:
    P(A chosen) = logistic(beta (u_A - u_B)); and per-clip metric scores built from u."""
    rng = np.random.default_rng(seed)
    systems, clip_ids = list(STRENGTH), [f"c{i:02d}" for i in range(clips)]
    u = {(s, c): STRENGTH[s] + rng.normal(0.0, 1.0) for s in systems for c in clip_ids}
    rows = []
    for r in range(raters):
        for t in range(trials):
            a, b = rng.choice(systems, 2, replace=False)
            c = clip_ids[rng.integers(clips)]
            p_a = 1.0 / (1.0 + np.exp(-beta * (u[(a, c)] - u[(b, c)])))
            rows.append({"rater_id": f"r{r:02d}", "trial_id": f"r{r}t{t}", "clip_id": c, "question": "overall",
                         "system_a": a, "system_b": b, "answer": "A" if rng.random() < p_a else "B"})
    scores = []
    for (s, c), v in u.items():
        scores += [(s, c, "latent", v), (s, c, "latent-as-cost", -v), (s, c, "random", rng.normal()),
                   (s, c, "coarse", float(np.round(v))), (s, c, "descriptive", 1.0)]
    directions = {"latent": True, "latent-as-cost": False, "random": True, "coarse": True, "descriptive": None}
    return votes_frame(rows), pd.DataFrame(scores, columns=["system", "clip_id", "metric", "value"]), directions


def test_kendall_tau_b_matches_scipy():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(1)
    for _ in range(20):
        x, y = rng.integers(0, 3, 5).astype(float), rng.normal(size=5)
        ref = kendalltau(x, y).statistic
        got = float(kendall_tau_b(x, y))
        assert (np.isnan(ref) and np.isnan(got)) or got == pytest.approx(ref)
    assert np.isnan(kendall_tau_b(np.ones(4), np.arange(4.0)))


@pytest.mark.parametrize("seed", [0, 1])
def test_latent_score_ranks_first_and_random_sits_at_chance(seed):
    votes, scores, directions = latent_study(seed)
    table = metric_agreement(votes, scores, directions, AgreementConfig(resamples=200, seed=seed))
    rows = table.set_index("metric")
    # the latent score (either direction convention) predicts best; a coarse copy only ties with it at most
    assert set(table["metric"].iloc[:2]) == {"latent", "latent-as-cost"}
    assert rows.loc["latent", "accuracy"] == pytest.approx(rows.loc["latent-as-cost", "accuracy"])
    assert rows.loc["latent", "ci_lo"] > 0.5 and rows.loc["latent", "kendall_tau"] > 0.5
    rnd = rows.loc["random"]
    assert rnd["ci_lo"] <= 0.5 <= rnd["ci_hi"] and rnd["p_value"] > 0.05
    assert rnd["tau_lo"] <= rnd["kendall_tau"] <= rnd["tau_hi"]
    coarse = rows.loc["coarse"]  # rounding makes ties: counted apart, and they cost it its rank
    assert coarse["metric_ties"] > 0 and coarse["votes"] + coarse["metric_ties"] == len(votes)
    assert coarse["accuracy_ties_half"] < coarse["accuracy"]
    assert rows.loc["descriptive", "note"].startswith("no better direction") and np.isnan(
        rows.loc["descriptive", "accuracy"])
    assert (table["rank"] == np.arange(1, len(table) + 1)).all()


def test_intervals_undefined_with_few_raters_and_deterministic():
    votes, scores, directions = latent_study(3, raters=3)
    t = metric_agreement(votes, scores, directions, AgreementConfig(resamples=50))
    assert t["ci_lo"].isna().all() and t["note"].str.contains("3 raters").any()
    votes, scores, directions = latent_study(4, raters=8)
    a = metric_agreement(votes, scores, directions, AgreementConfig(resamples=60, seed=2))
    b = metric_agreement(votes, scores, directions, AgreementConfig(resamples=60, seed=2))
    pd.testing.assert_frame_equal(a, b)


@pytest.fixture(scope="module")
def voted(tmp_path_factory, media_bytes):
    """A study whose 6 raters answered every trial (always side A)."""
    d = build_study(tmp_path_factory.mktemp("agree") / "study", media_bytes, raters=6, trials=4)
    clock = Clock()
    with TestClient(create_app(d, admin_token="t", clock=clock)) as client:
        for i in range(6):
            rid = f"rater{i}"
            consent(client, rid)
            while state(client, rid)["trial"] is not None:
                answer_current(client, clock, rid)
    return d


def test_agree_command_end_to_end(voted, tmp_path, capsys):
    from vm_eval.cli import main

    d = voted
    stim = json.loads((d / "stimuli.json").read_text())["stimuli"]
    clips = sorted({s["clip_id"] for s in stim})
    rng = np.random.default_rng(0)
    scores = pd.DataFrame([(s, c, m, float(rng.normal())) for s in SYSTEMS for c in clips for m in ("m1", "m2")],
                          columns=["system", "clip_id", "metric", "value"])
    settings = {"resamples": 30, "exclusion": {"enabled": False}}
    results = tmp_path / "results"
    analyze_study(AnalyzeRequest(d, settings={**settings, "splits": 5}, plots=False, results=results))
    res = agree_study(AgreeRequest(d, settings=settings, results=results, scores=scores,
                                   directions={"m1": True, "m2": False}))
    out = res.out
    text = (out / "agreement.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert set(data["questions"]) == {"overall", "content", "rhythm", "quality"}
    assert {r["metric"] for r in data["questions"]["overall"]} == {"m1", "m2"}
    assert len(pd.read_csv(out / "agreement.csv")) == 8
    assert (out / "agreement-overall.png").is_file() and (out / "agreement-overall.svg").is_file()
    row = data["questions"]["overall"][0]
    assert row["ci_lo"] is None and "2 clips" in row["note"]  # 2 clips: too few to resample, so no interval
    entry = list_studies(results)[0]
    assert entry["metric_agreement"]["questions"] == data["questions"]
    # a fresh analysis of the same version keeps the agreement in the entry
    analyze_study(AnalyzeRequest(d, settings={**settings, "splits": 5}, plots=False, results=results))
    assert list_studies(results)[0]["metric_agreement"]["questions"] == data["questions"]
    assert "== overall: metric agreement" in format_agreement(res)
    # the CLI reads the run store: this study's runs do not exist, so it says what is missing
    assert main(["study", "agree", str(d), "--resamples", "20", "--no-plots", "--results", str(results),
                 "--min-catch-trials", "0"]) == 2
    err = capsys.readouterr().err
    assert "no per-clip metric scores" in err and "not found" in err


def test_leaderboard_listening_view_shows_the_agreement():
    from streamlit.testing.v1 import AppTest

    from studies.agree import agreement_json

    votes, scores, directions = latent_study(5, raters=10)
    table = metric_agreement(votes, scores, directions, AgreementConfig(resamples=50))
    study = {"manifest_sha256": "f" * 64}
    entry = {"summary": {"study": study}, "metric_agreement": agreement_json(table, {"study": study, "votes": 240,
                                                                                     "raters": 10})}

    def app(text: str) -> None:
        import json

        from leaderboard.views.studies import metric_agreement_section

        metric_agreement_section(json.loads(text), "overall")

    at = AppTest.from_function(app, args=(json.dumps(entry),), default_timeout=60).run()
    assert not at.exception
    shown = at.dataframe[0].value
    assert shown["metric"].iloc[0] in ("latent", "latent-as-cost") and "kendall_tau" in shown
    assert len(at.get("image")) == 1  # the accuracy / tau figure
    assert not at.warning  # same study version as the analysis
    at = AppTest.from_function(app, args=(json.dumps({"summary": {}}),), default_timeout=60).run()
    assert "vm-eval study agree" in at.info[0].value


def test_load_scores_reads_the_run_store(tmp_path):
    """Per-clip scores and directions come from each compared system's run (current metric identity only)."""
    from studies.agree import load_scores
    from vm_eval.store.journal import Journal
    from vm_eval.store.schema import RunMeta, write_meta

    systems = {}
    for i, label in enumerate(["sys-a", "sys-b"]):
        d = tmp_path / "results" / "demo" / "test" / label / f"run-{label}"
        d.mkdir(parents=True)
        aggregates = {"beat-f1": {"mean": 0.5, "lo": 0.4, "hi": 0.6, "n": 2, "missing": 0, "failed": 0,
                                  "key": "bf-key", "units": "", "kind": "clip", "higher_is_better": True},
                      "kl": {"mean": 1.0, "lo": 0.9, "hi": 1.1, "n": 2, "missing": 0, "failed": 0,
                             "key": "kl-key", "units": "nats", "kind": "clip", "higher_is_better": False}}
        meta = {"run_id": f"run-{label}", "model": label, "dataset": "demo", "split": "test", "status": "complete",
                "seed": 0, "model_info": {"name": label, "trained": True}, "aggregates": aggregates,
                "counts": {"clips": 2, "done": 2, "failed": 0, "skipped": 0, "pending": 0}, "checkpoints": [],
                "identity": {"dataset": "demo", "split": "test", "model": label, "seed": 0}}
        write_meta(d / "run.json", RunMeta.model_validate(meta))
        journal = Journal(d / "journal" / "scores.jsonl")
        for c in ("clip-0", "clip-1"):
            journal.append({"clip_id": c, "metric": "beat-f1", "metric_key": "old-key", "status": "done",
                            "value": 9.0})  # scored by an earlier version of the metric: superseded
            journal.append({"clip_id": c, "metric": "beat-f1", "metric_key": "bf-key", "status": "done",
                            "value": 0.1 * i})
            journal.append({"clip_id": c, "metric": "kl", "metric_key": "kl-key", "status": "done", "value": 1.0 + i})
        systems[label] = {"run_id": f"run-{label}", "run_path": str(d), "role": "compared"}
    systems["gone"] = {"run_id": "x", "run_path": str(tmp_path / "nowhere"), "role": "compared"}
    systems["ground-truth"] = {"run_id": "y", "run_path": str(tmp_path / "gt"), "role": "catch"}  # not compared
    study = tmp_path / "study"
    study.mkdir()
    (study / "systems.json").write_text(json.dumps(systems))
    scores, directions, problems = load_scores(study)
    assert directions == {"beat-f1": True, "kl": False}
    assert len(scores) == 8 and set(scores["system"]) == {"sys-a", "sys-b"}
    bf = scores[scores["metric"] == "beat-f1"].set_index(["system", "clip_id"])["value"]
    assert bf[("sys-a", "clip-0")] == 0.0 and bf[("sys-b", "clip-1")] == pytest.approx(0.1)
    assert len(problems) == 1 and problems[0].startswith("gone: run folder")
