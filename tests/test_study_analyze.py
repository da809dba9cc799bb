"""`vm-eval study analyze` on votes collected through the real server API (a minimal study, fake clock)."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from studies.analyze import AnalyzeRequest, StudyAnalyzeError, analyze_study
from studies.results import format_studies, list_studies
from studies.server import create_app
from test_study_server import SYSTEMS, Clock, answer_current, build_study, consent, media_bytes, state  # noqa: F401


@pytest.fixture(scope="module")
def voted(tmp_path_factory, media_bytes):
    """A study whose 4 raters answered every trial, always side A (so the position bias is total)."""
    d = build_study(tmp_path_factory.mktemp("analyze") / "study", media_bytes, raters=4, trials=4)
    clock, acknowledged = Clock(), 0
    with TestClient(create_app(d, admin_token="t", clock=clock)) as client:
        for i in range(4):
            rid = f"rater{i}"
            consent(client, rid)
            while state(client, rid)["trial"] is not None:
                acknowledged += len(answer_current(client, clock, rid)["stored"])
    return d, acknowledged


def test_analyze_writes_tables_and_summary(voted, tmp_path):
    d, acknowledged = voted
    res = analyze_study(AnalyzeRequest(d, settings={"resamples": 50, "splits": 20, "exclusion": {"enabled": False}},
                                       plots=False, results=tmp_path / "results"))
    rep, out = res.report, res.out
    assert out == d / "analysis"
    votes = pd.read_parquet(out / "votes.parquet")
    assert len(votes) == acknowledged == len(pd.read_csv(out / "votes.csv"))
    assert set(votes["system_a"]) | set(votes["system_b"]) >= set(SYSTEMS)  # names resolved server-side
    bt = pd.read_csv(out / "bradley_terry.csv")
    assert set(bt["system"]) == set(SYSTEMS) and set(bt["question"]) == set(rep.questions)
    for q in rep.questions.values():
        assert q.position_bias.share_a == 1.0 and q.position_bias.p_value < 0.05
    summary = json.loads((out / "summary.json").read_text())
    assert summary["study"]["systems"] == {s: f"20240101-000000-{s}-RUNID" for s in SYSTEMS}
    assert len(summary["study"]["manifest_sha256"]) == 64
    # registered beside the runs for `vm-eval results` and the leaderboard
    entries = list_studies(tmp_path / "results")
    assert [e["file"] for e in entries] == [str(res.registered)] and entries[0]["summary"] == summary
    text = format_studies(entries, {f"20240101-000000-{SYSTEMS[0]}-RUNID": {"status": "complete"}})
    assert f"listening study {d.name}" in text and "overall: " in text and "(complete)" in text
    assert "run not in this results folder" in text  # the other systems' runs are not in that folder
    res.registered.write_text("{half a fi")
    assert "unreadable" in format_studies(list_studies(tmp_path / "results"))


def test_analyze_cli_and_errors(voted, tmp_path, capsys):
    from vm_eval.cli import main

    d, _ = voted
    # 4 trials per rater hold one catch trial: the default rule (at least 2) would exclude everybody
    assert main(["study", "analyze", str(d), "--resamples", "30", "--no-plots", "--results", str(tmp_path / "r")]) == 2
    assert "excluded all 4 raters" in capsys.readouterr().err
    assert main(["study", "analyze", str(d), "--resamples", "30", "--out", str(tmp_path / "a"), "--no-plots",
                 "--min-catch-trials", "0", "--min-catch-accuracy", "0", "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "== overall" in out and "side A chosen 1.00" in out and (tmp_path / "a" / "summary.json").is_file()
    # 4 raters on 2 clips: the arena table has no interval, says why, and the thresholds warn
    assert "95% CI" in out and "[  n/a ,   n/a ]  1-3" in out
    assert "warning: overall: 4 raters, fewer than the 10" in out and "interval undefined: only 4 raters" in out
    arena = pd.read_csv(tmp_path / "a" / "arena.csv")
    assert list(arena.columns[:4]) == ["question", "system", "votes", "strength"] and arena["ci_lo"].isna().all()
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["warnings"] and summary["questions"]["overall"]["ci_note"].startswith("interval undefined")
    assert f"summary registered for `vm-eval results` and the leaderboard: {tmp_path / 'r' / 'studies'}" in out
    assert main(["results", "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert f"listening study {d.name}" in out and "Krippendorff's alpha" in out
    assert not list((tmp_path / "a").glob("*.png"))
    res = analyze_study(AnalyzeRequest(d, out=tmp_path / "p", settings={"resamples": 20, "splits": 5,
                                                                        "exclusion": {"enabled": False}},
                                       register=False))
    rep, out_dir = res.report, res.out
    assert res.registered is None
    pngs = sorted(p.name for p in out_dir.glob("*.png"))
    assert pngs == sorted([f"bt-{q}.png" for q in rep.questions] + [f"winrate-{q}.png" for q in rep.questions])
    with pytest.raises(StudyAnalyzeError, match="no votes database"):
        analyze_study(AnalyzeRequest(build_study(tmp_path / "empty", (d / "stimuli").iterdir().__next__().read_bytes())))
    with pytest.raises(SystemExit):  # argparse refuses it before any work
        main(["study", "analyze", str(d), "--ties", "sometimes"])
