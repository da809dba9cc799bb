"""The listening-test server on PostgreSQL with several worker processes (issue 16 part 5), against a throwaway
server (tests/pg.py; skipped only when Debian's PostgreSQL binaries are absent).

- Several OS processes enrol at once behind a barrier: one new rater id arriving in all of them stays one rater
  with one slot, distinct new raters arriving together still fill the slots evenly (the advisory lock serialises
  slot choice across processes), and the token secret every worker reads is one.
- `vm-eval study serve --workers 2` on PostgreSQL under a small load (real HTTP, replays and double clicks): the
  votes acknowledged are the votes stored, none twice, one rater per id even when its first requests arrive at
  once on separate connections, and no worker process is left behind after the server stops.
- More than one worker on SQLite is refused with one clear line.
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from pg import postgres  # noqa: F401
from test_study_server import build_study, media_bytes  # noqa: F401

from studies.server.loadtest import free_port, simulate, wait_until_serving
from studies.server.storage import Assignment, DatabaseUnavailable, Rater, Repository
from studies.server.workers import WorkersNeedPostgres, check_workers
from vm_eval.cli import main

ROOT = Path(__file__).resolve().parents[1]
PROCS = 3
ROUNDS = 12
SLOTS = 5


def _enrol_in_process(url: str, barrier, who: int, out) -> None:  # noqa: ANN001
    """One OS process: read the token secret, then per round enrol the shared id and its own id, each right after
    all processes meet at the barrier (so the first requests for one id really coincide)."""
    repo = Repository(url)
    barrier.wait()
    got = {"secret": repo.meta("token_secret", lambda: secrets.token_hex(32))}
    for k in range(ROUNDS):
        barrier.wait()
        got[f"same-{k}"] = repo.enrol(f"same-{k}", SLOTS, "m", time.time()).slot
        barrier.wait()
        got[f"own-{who}-{k}"] = repo.enrol(f"own-{who}-{k}", SLOTS, "m", time.time()).slot
    repo.engine.dispose()
    out.put(got)


def test_one_new_rater_in_several_processes_stays_one_rater(postgres):  # noqa: F811
    url = postgres.create_database("enrol")
    # fork: the children start at once with this process's modules; this process holds no database connection
    # to hand down (each child opens its own engine)
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(PROCS), ctx.Queue()
    procs = [ctx.Process(target=_enrol_in_process, args=(url, barrier, i, out)) for i in range(PROCS)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len({r["secret"] for r in results}) == 1  # every worker signs with the same secret
    for k in range(ROUNDS):  # the same id, arriving in every process at once: one slot seen by all
        assert len({r[f"same-{k}"] for r in results}) == 1
    repo = Repository(url)
    with repo.sessions() as s:
        raters = s.query(Rater).all()
        assignments = s.query(Assignment).all()
    expected = ROUNDS + ROUNDS * PROCS
    assert len(raters) == len(assignments) == expected
    assert Counter(a.rater_id for a in assignments).most_common(1)[0][1] == 1
    assert {r.id: r.slot for r in raters} == {a.rater_id: a.slot for a in assignments}
    # enrolments serialised across processes, each taking the emptiest slot: counts differ by at most one
    per_slot = Counter(a.slot for a in assignments)
    assert len(per_slot) == SLOTS and max(per_slot.values()) - min(per_slot.values()) <= 1
    for r in results:  # what each process was told is what is stored
        assert all(r[k] == next(x.slot for x in raters if x.id == k) for k in r if k != "secret")
    repo.engine.dispose()


def _worker_pids(log: Path) -> list[int]:
    return [int(m) for m in re.findall(r"Started server process \[(\d+)\]", log.read_text(errors="replace"))]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


async def _first_requests_at_once(url: str, ids: list[str], copies: int) -> list[tuple[str, int]]:
    """The first request (consent) for each id sent `copies` times at once, each on its own connection (so they
    spread over the worker processes): (id, status) per request."""
    import httpx

    async def one(rid: str) -> tuple[str, int]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            return rid, (await c.post(f"/api/raters/{rid}/consent")).status_code

    return list(await asyncio.gather(*(one(rid) for rid in ids for _ in range(copies))))


def test_workers_on_postgres_store_every_acknowledged_vote_once(tmp_path, postgres, media_bytes):  # noqa: F811
    workers, raters, trials = 2, 16, 2
    study = build_study(tmp_path / "study", media_bytes, raters=raters + 8, trials=trials, min_listen=0.2)
    url = postgres.create_database("load")
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        server = subprocess.Popen(
            [sys.executable, "-m", "vm_eval.cli", "study", "serve", str(study), "--db", url, "--port", str(port),
             "--workers", str(workers), "--admin-token", "admin"],
            stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, server, lambda: log.read_text(errors="replace"), workers=workers)
        pids = _worker_pids(log)
        assert len(pids) == workers
        first = [f"first-{i}" for i in range(8)]
        replies = asyncio.run(_first_requests_at_once(base, first, 4))
        # one copy per id enrols it; the others get the same rater or, once it holds a session credential, 403
        assert {status for _, status in replies} <= {200, 403}
        assert {rid for rid, status in replies if status == 200} == set(first)
        result = simulate(base, raters, listen_s=0.3, replay=0.3, seed=2)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    assert not result.errors, result.error_examples
    assert result.completed == raters
    repo = Repository(url)
    votes = repo.votes()
    stored_raters = repo.raters()
    repo.engine.dispose()
    n_questions = len({v.question for v in votes})
    assert len(votes) == result.acknowledged == raters * trials * n_questions
    assert result.duplicate_acks > 0  # replays and double clicks happened and were answered as duplicates
    assert max(Counter((v.rater_id, v.trial_id, v.question) for v in votes).values()) == 1
    assert sorted(r.id for r in stored_raters if r.id.startswith("first-")) == first  # one rater per id
    per_slot = Counter(r.slot for r in stored_raters)
    assert max(per_slot.values()) - min(per_slot.values()) <= 1
    deadline = time.monotonic() + 20  # the supervisor stops its workers before it exits: none left behind
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in pids if _alive(p)]


def test_several_workers_on_sqlite_are_refused(tmp_path, capsys):
    assert main(["study", "serve", str(tmp_path), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "--workers 2 needs PostgreSQL" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(WorkersNeedPostgres):
        check_workers("sqlite:///x.sqlite", 4)
    check_workers("sqlite:///x.sqlite", 1)
    check_workers("postgresql+psycopg://u@h/db", 4)


def test_plain_postgresql_url_and_unreachable_server(postgres):  # noqa: F811
    url = postgres.create_database("plain")
    repo = Repository(url.replace("postgresql+psycopg://", "postgresql://"))  # psycopg, not the absent psycopg2
    assert repo.engine.url.drivername == "postgresql+psycopg" and repo.meta("k", lambda: "v") == "v"
    repo.engine.dispose()
    with pytest.raises(DatabaseUnavailable, match="cannot open the votes database .*127.0.0.1:1/"):
        Repository("postgresql://nobody@127.0.0.1:1/votes")  # port 1: nothing listens
