"""The load test of the listening-test server: 100 simulated raters at once against uvicorn on loopback (real
HTTP, one worker, SQLite in WAL mode), with replayed and doubled votes. No vote is lost or counted twice: the
votes in the database are exactly the ones the server acknowledged. Latency figures come from
benchmarks/study_load.py (BENCHMARKS.md), not from assertions here."""
from __future__ import annotations

from collections import Counter

from browser import serve
from test_study_server import build_study, media_bytes  # noqa: F401

from studies.server import create_app
from studies.server.loadtest import simulate
from studies.server.storage import Repository

RATERS = 100
TRIALS = 2


def test_concurrent_raters_lose_and_duplicate_nothing(tmp_path, media_bytes):
    study = build_study(tmp_path / "study", media_bytes, raters=RATERS, trials=TRIALS, min_listen=0.2)
    db = f"sqlite:///{tmp_path / 'votes.sqlite'}"
    with serve(create_app(study, db_url=db, admin_token="admin")) as url:
        result = simulate(url, RATERS, listen_s=0.3, replay=0.3, seed=1)
    assert not result.errors, result.error_examples
    assert result.completed == RATERS
    votes = Repository(db).votes()
    n_questions = len({v.question for v in votes})
    assert len(votes) == result.acknowledged == RATERS * TRIALS * n_questions
    assert result.duplicate_acks > 0  # replays and double clicks happened and were answered as duplicates
    keys = Counter((v.rater_id, v.trial_id, v.question) for v in votes)
    assert max(keys.values()) == 1
    assert len({v.rater_id for v in votes}) == RATERS
    lat = result.percentiles()
    assert lat["vote"]["n"] >= RATERS * TRIALS and lat["all"]["n"] == result.requests
