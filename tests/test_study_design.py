"""Study config validation and the balanced design: balance properties over budgets below and above the number of
(clip, pair) cells, determinism per seed, catch-trial rate and sides, clear errors."""
from __future__ import annotations

import json
import math
from collections import Counter
from itertools import combinations

import pytest

from studies.config import (
    CATCH_ANCHORS, DEFAULT_QUESTIONS, GROUND_TRUTH, STUDY_FILE, Question, StudyConfig, StudyConfigError, load_config,
    parse_config, save_config,
)
from studies.design import Design, DesignError, design_for_config, design_report, make_design

# (clips, systems, raters, trials per rater): cells = clips * S(S-1)/2
SETTINGS = [
    (10, 4, 2, 3),    # budget 5 of 60 cells
    (4, 4, 3, 10),    # 27 comparisons over 24 cells
    (7, 3, 5, 8),     # 36 over 21, gcd(C, P) = 1
    (6, 4, 10, 40),   # 360 = 10 rounds of 36
    (30, 5, 20, 40),  # 720 over 300, gcd 10
    (5, 6, 7, 13),    # 82 over 75 (P = 15)
    (1, 3, 4, 5),     # one clip, raters need more trials than there are cells
    (2, 2, 1, 100),   # two systems, one rater, many repeats
]


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(n)]


def spread(values) -> int:
    v = list(values)
    return max(v) - min(v)


@pytest.mark.parametrize("C,S,N,K", SETTINGS)
@pytest.mark.parametrize("seed", [0, 7])
def test_balance(C, S, N, K, seed):
    clips, systems = ids("clip", C), ids("sys", S)
    d = make_design(clips, systems, N, K, catch_rate=0.1, seed=seed)
    rep = design_report(d)
    P = S * (S - 1) // 2
    n_catch = math.floor(0.1 * N * K + 0.5)
    budget = N * K - n_catch
    assert rep.n_trials == N * K and rep.n_catch == n_catch
    assert [len(t) for t in d.trials] == [K] * N
    assert all([t.position for t in trials] == list(range(K)) for trials in d.trials)
    assert all(t.rater == n for n, trials in enumerate(d.trials) for t in trials)
    assert len({t.trial_id for t in d.all_trials()}) == N * K

    # global balance: cells, pairs, clips within 1; the cell counts are floor/ceil of budget / cells
    assert sum(rep.cell_counts.values()) == budget
    assert set(rep.cell_counts.values()) <= {budget // (C * P), -(-budget // (C * P))}
    assert spread(rep.pair_counts.values()) <= 1 and spread(rep.clip_counts.values()) <= 1
    # both side orders of every pair, and of every cell, within 1
    assert all(abs(a - b) <= 1 for a, b in rep.side_counts.values())
    cell_sides: Counter = Counter()
    for t in d.all_trials():
        if not t.is_catch:
            cell_sides[(t.clip_id, t.system_left, t.system_right)] += 1
    for c in clips:
        for a, b in combinations(systems, 2):
            assert abs(cell_sides[(c, a, b)] - cell_sides[(c, b, a)]) <= 1

    # per rater: pairs within 1, clips within 2 (1 when gcd(C, P) = 1), no repeated cell unless forced
    for r, trials in zip(rep.raters, d.trials):
        m = r.n_trials - r.n_catch
        assert r.pair_spread <= 1
        assert r.clip_spread <= (1 if math.gcd(C, P) == 1 else 2)
        cells = Counter((t.clip_id, frozenset((t.system_left, t.system_right))) for t in trials if not t.is_catch)
        if m <= C * P:
            assert r.repeats == 0
        else:
            assert len(cells) == C * P and spread(cells.values()) <= 1
    # catch trials: spread over raters within 1, kinds within 1, ground-truth side within 1 per kind and overall
    assert spread(r.n_catch for r in rep.raters) <= 1
    if n_catch:
        assert set(rep.catch_counts) <= {"content", "rhythm"} and spread(rep.catch_counts.values()) <= 1
        assert all(abs(a - b) <= 1 for a, b in rep.catch_sides.values())
        assert rep.summary()["catch_side_imbalance"] <= 1
    main_systems = {s for t in d.all_trials() if not t.is_catch for s in (t.system_left, t.system_right)}
    assert main_systems <= set(systems)


def test_every_cell_once_when_the_budget_matches():
    """2 clips x 3 pairs = 6 cells, 2 raters x 3 trials, no catch: each cell once, each rater every pair once."""
    d = make_design(["a", "b"], ["x", "y", "z"], 2, 3, catch_rate=0.0, seed=3)
    rep = design_report(d)
    assert set(rep.cell_counts.values()) == {1}
    assert all(r.pair_spread == 0 and r.n_catch == 0 for r in rep.raters)
    # clips alternate within a rater's stretch: 3 trials over 2 clips -> 2 + 1
    assert all(sorted(Counter(t.clip_id for t in trials).values()) == [1, 2] for trials in d.trials)
    assert rep.summary()["side_imbalance"] == 0  # each pair twice (once per clip), once in each order


def test_even_budget_is_perfectly_balanced():
    d = make_design(ids("c", 6), ids("s", 4), 10, 40, catch_rate=0.1, seed=1)
    s = design_report(d).summary()
    assert (s["cell_spread"], s["pair_spread"], s["clip_spread"], s["side_imbalance"]) == (0, 0, 0, 0)
    assert s["catch_share"] == pytest.approx(0.1)


def test_deterministic_per_seed():
    args = (ids("c", 9), ids("s", 4), 6, 12)
    a, b = make_design(*args, seed=11), make_design(*args, seed=11)
    assert a == b and a.to_records() == b.to_records()
    c = make_design(*args, seed=12)
    assert [t.trial_id for t in a.all_trials()] != [t.trial_id for t in c.all_trials()]
    assert [(t.clip_id, t.system_left) for t in a.trials[0]] != [(t.clip_id, t.system_left) for t in c.trials[0]]
    assert len(a.trials[0][0].trial_id) == 17 and a.trials[0][0].trial_id.startswith("t")


def test_presentation_order_is_shuffled_per_rater():
    d = make_design(ids("c", 8), ids("s", 3), 20, 10, catch_rate=0.1, seed=5)
    catch_positions = Counter(t.position for t in d.all_trials() if t.is_catch)
    assert len(catch_positions) >= 5  # catch trials are not always at the same place
    first_pairs = {frozenset((tr[0].system_left, tr[0].system_right)) for tr in d.trials}
    assert len(first_pairs) > 1


def test_catch_trials_compare_ground_truth_with_the_anchor():
    clips = ids("c", 12)
    catch_clips = {"rhythm": clips[:3], "content": clips[5:9]}
    d = make_design(clips, ids("s", 3), 10, 20, catch_rate=0.1, catch_clips=catch_clips, seed=2)
    catches = [t for t in d.all_trials() if t.is_catch]
    assert len(catches) == 20
    for t in catches:
        assert t.clip_id in catch_clips[t.catch_kind]
        sides = {"left": t.system_left, "right": t.system_right}
        assert sides[t.expected] == GROUND_TRUTH
        assert {t.system_left, t.system_right} == {GROUND_TRUTH, CATCH_ANCHORS[t.catch_kind]}
    # each rater's catch trials of one kind use distinct clips while the pool allows
    for trials in d.trials:
        by_kind = Counter((t.catch_kind, t.clip_id) for t in trials if t.is_catch)
        assert max(by_kind.values()) == 1
    # the expected answer applies to the question whose catch kind matches, and only there
    q = {q.id: q for q in DEFAULT_QUESTIONS}
    rhythm = next(t for t in catches if t.catch_kind == "rhythm")
    assert rhythm.expected_answer(q["rhythm"]) == rhythm.expected
    assert rhythm.expected_answer(q["content"]) is None and rhythm.expected_answer(q["overall"]) is None
    assert all(t.expected_answer(q["rhythm"]) is None for t in d.all_trials() if not t.is_catch)


def test_only_the_catch_kinds_the_questions_use():
    questions = [Question(id="fit", text="Which fits?", catch="content"), Question(id="q", text="Which is nicer?")]
    d = make_design(ids("c", 5), ids("s", 2), 4, 10, questions=questions, seed=0)
    assert d.catch_kinds == ("content",)
    assert {t.catch_kind for t in d.all_trials() if t.is_catch} == {"content"}
    none = make_design(ids("c", 5), ids("s", 2), 4, 10, catch_rate=0.0, questions=questions[1:], seed=0)
    assert not any(t.is_catch for t in none.all_trials())


def test_design_errors_list_every_problem():
    with pytest.raises(DesignError) as e:
        make_design([], ["only"], 0, 0)
    msg = str(e.value)
    for part in ("no clips", "at least 2 systems", "raters must be at least 1", "trials per rater must be at least 1"):
        assert part in msg
    with pytest.raises(DesignError, match="repeated"):
        make_design(["a", "a"], ["x", "y"], 1, 2)
    with pytest.raises(DesignError, match="no question names a catch kind"):
        make_design(["a"], ["x", "y"], 1, 10, questions=[Question(id="q", text="Which?")])
    with pytest.raises(DesignError, match="anchor-beat-shift"):
        make_design(["a"], ["x", "y"], 1, 10, catch_clips={"content": ["a"], "rhythm": []})
    with pytest.raises(DesignError, match="no comparison trial"):
        make_design(["a"], ["x", "y"], 10, 1, catch_rate=0.5)


def test_design_for_config():
    cfg = StudyConfig(systems=["run-a", "run-b", "run-c"], raters=3, trials_per_rater=10, seed=4)
    d = design_for_config(cfg, ids("c", 4))
    assert d.systems == ("run-a", "run-b", "run-c") and d.seed == 4 and d.catch_kinds == ("content", "rhythm")
    assert d == make_design(ids("c", 4), cfg.systems, 3, 10, catch_rate=0.1, seed=4)
    assert json.loads(json.dumps(d.to_records()))[0].keys() >= {"trial_id", "clip_id", "system_left", "expected"}
    assert Design.from_json(json.loads(json.dumps(d.to_json()))) == d


# ------------------------------------------------------------------------------------------------ config
def test_config_defaults():
    cfg = parse_config({"systems": ["a", "b"]})
    assert [q.id for q in cfg.questions] == ["overall", "content", "rhythm", "quality"]
    assert [q.anchor for q in cfg.questions] == [None, "anchor-other-category", "anchor-beat-shift", None]
    assert cfg.catch_kinds == ["content", "rhythm"]
    assert (cfg.allow_ties, cfg.min_listen_s, cfg.catch_rate) == (False, 5.0, 0.1)
    assert (cfg.loudness_lufs, cfg.true_peak_dbtp) == (-23.0, -1.0)
    assert cfg.consent_text and cfg.instructions_text
    assert cfg.question("rhythm").catch == "rhythm"
    with pytest.raises(KeyError, match="overall"):
        cfg.question("nope")


def test_config_reports_every_problem_at_once(tmp_path):
    bad = {
        "systems": ["a", "a"],
        "questions": [{"id": "Q 1", "text": "  "}, {"id": "x", "text": "ok", "catch": "melody"}],
        "catch_rate": -0.1,
        "raters": 0,
        "loudness_lufs": -0.5,
        "colour": "blue",
    }
    with pytest.raises(StudyConfigError) as e:
        parse_config(bad, source="study.yaml")
    problems = e.value.problems
    text = str(e.value)
    assert "study.yaml" in text and f"{len(problems)} problems" in text
    expected = ["systems: systems listed more than once: ['a']", "questions[0].id", "questions[0].text",
                "questions[1].catch", "catch_rate", "raters", "loudness_lufs", "colour: unknown option"]
    for want in expected:
        assert any(p.startswith(want) for p in problems), (want, problems)
    # cross-field problems come along with field errors
    with pytest.raises(StudyConfigError) as e:
        parse_config({"systems": ["a"], "questions": [{"id": "q", "text": "Which?"}], "true_peak_dbtp": -30})
    assert any("no question names a catch kind" in p for p in e.value.problems)
    assert any(p.startswith("systems: needs at least 2") for p in e.value.problems)
    assert any(p.startswith("true_peak_dbtp") for p in e.value.problems)
    # cross-field problems alone
    with pytest.raises(StudyConfigError) as e:
        parse_config({"systems": ["a", "b"], "questions": [{"id": "q", "text": "Which?"}],
                      "loudness_lufs": -10, "true_peak_dbtp": -12})
    assert len(e.value.problems) == 2
    with pytest.raises(StudyConfigError, match="question ids used more than once"):
        parse_config({"systems": ["a", "b"], "questions": [{"id": "q", "text": "A?"}, {"id": "q", "text": "B?"}]})
    with pytest.raises(StudyConfigError, match="expected a mapping"):
        parse_config(["a", "b"])


@pytest.mark.parametrize("name", [STUDY_FILE, "study.json"])
def test_config_round_trip(tmp_path, name):
    cfg = StudyConfig(systems=["r1", "r2"], allow_ties=True, raters=5, trials_per_rater=12, seed=9,
                      questions=[Question(id="fit", text="Which fits the video's mood?", catch="content")])
    path = save_config(cfg, tmp_path / name)
    assert load_config(path) == cfg
    if name == STUDY_FILE:
        assert load_config(tmp_path) == cfg  # a study directory means its study.yaml


def test_config_file_errors_name_the_file(tmp_path):
    with pytest.raises(StudyConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("systems: [a, b\n")
    with pytest.raises(StudyConfigError, match="broken.yaml.*\n.*cannot parse as YAML"):
        load_config(tmp_path / "broken.yaml")
    (tmp_path / "typo.yaml").write_text("systems: [a, b]\nallow_tie: true\n")
    with pytest.raises(StudyConfigError, match=r"typo.yaml has 1 problem:\n  - allow_tie: unknown option"):
        load_config(tmp_path / "typo.yaml")
