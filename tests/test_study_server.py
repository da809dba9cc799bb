"""The listening-test server (`studies.server`) through FastAPI's TestClient on a tiny hand-built study: the rater
flow (consent -> instructions -> volume check -> trials -> completion code), resume, the listening check, request
validation, idempotent votes, media lookup against path traversal, no system names / run ids / paths in anything
a rater receives, the admin token, the export read by `studies.analysis.votes_frame`, storage, and the CLI."""
from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

import studies.layout as layout
from studies.analysis.votes import VOTE_COLUMNS, votes_frame
from studies.config import DEFAULT_QUESTIONS, StudyConfig, save_config
from studies.design import make_design
from studies.server import StudyServerError, create_app
from studies.server.listening import listened_seconds
from vm_eval.fsutil import atomic_write_json, file_sha256, json_sha256
from vm_eval.media import Audio, write_video

SYSTEMS = ["sys-alpha", "sys-beta", "sys-gamma"]
CATCH = ["ground-truth", "anchor-beat-shift", "anchor-other-category"]
CLIPS = ["clip-000", "clip-001"]
QIDS = [q.id for q in DEFAULT_QUESTIONS]
MIN_LISTEN = 2.0


class Clock:
    """A fake server clock (seconds since the epoch) the tests advance by hand."""

    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def run_id(system: str) -> str:
    return f"20240101-000000-{system}-RUNID"


@pytest.fixture(scope="module")
def media_bytes(tmp_path_factory) -> bytes:
    p = tmp_path_factory.mktemp("media") / "v.mp4"
    sr = 16000
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(sr // 2) / sr, dtype=np.float32)[None]
    write_video(p, [np.full((16, 16, 3), i * 40, np.uint8) for i in range(5)], 10, Audio(tone, sr))
    return p.read_bytes()


def build_study(d: Path, media: bytes, *, allow_ties: bool = False, raters: int = 2, trials: int = 4,
                min_listen: float = MIN_LISTEN, duration: float = 10.0) -> Path:
    """A minimal complete STUDY_DIR: config, design, one (copied) tiny mp4 per (clip, system) and the manifest
    written the way `study create` writes it, so `verify_study` passes. `duration` is the clips' recorded
    duration in seconds (the server caps listening by it; the tiny mp4 itself is 0.5 s long)."""
    d.mkdir(parents=True)
    config = StudyConfig(systems=SYSTEMS, allow_ties=allow_ties, min_listen_s=min_listen, catch_rate=0.25,
                         raters=raters, trials_per_rater=trials, seed=3)
    design = make_design(CLIPS, SYSTEMS, raters, trials, catch_rate=0.25, questions=config.questions, seed=3)
    stim_dir = d / layout.STIMULI_DIR
    stim_dir.mkdir()
    stimuli = []
    for i, (clip, system) in enumerate(sorted({(t.clip_id, s) for t in design.all_trials()
                                               for s in (t.system_left, t.system_right)})):
        key = json_sha256([clip, system, str(d)])
        (stim_dir / f"{key}.mp4").write_bytes(media + bytes([i]))  # distinct files, still a valid mp4 prefix
        stimuli.append({"key": key, "file": f"stimuli/{key}.mp4", "sha256": file_sha256(stim_dir / f"{key}.mp4"),
                        "clip_id": clip, "system": system, "run_id": run_id(system), "duration_s": duration})
    save_config(config, d / "study.yaml")
    atomic_write_json(d / "design.json", design.to_json())
    atomic_write_json(d / "stimuli.json", {"version": 1, "stimuli": stimuli})
    atomic_write_json(d / "systems.json", {s: {"run_id": run_id(s), "run_path": f"/results/{s}/{run_id(s)}",
                                               "model": s, "role": "catch" if s in CATCH else "compared"}
                                           for s in SYSTEMS + CATCH})
    files = layout.files_hash(d)
    atomic_write_json(d / layout.COMPLETE_FILE, {"version": 1, "files": files,
                                                     "content_sha256": json_sha256(files), "summary": {}})
    layout.verify_study(d)
    return d


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, media_bytes) -> Path:
    return build_study(tmp_path_factory.mktemp("served") / "study", media_bytes)


class RaterClient(TestClient):
    """A TestClient acting for many raters at once, as these tests do: one browser holds one rater's session
    cookie, so the client keeps each rater's credential from its consent response and sends it as
    ``Authorization: Bearer`` on that rater's API calls (unless the call sets the header itself). Credentials are
    kept per rater id across clients, as a browser keeps its cookie across a server restart."""

    sessions: dict[str, str] = {}

    def request(self, method, url, **kw):  # noqa: ANN001, ANN201
        m = re.match(r"^/api/raters/([^/?]+)/", str(url))
        if m and m.group(1) in self.sessions:
            headers = dict(kw.pop("headers", None) or {})
            headers.setdefault("Authorization", f"Bearer {self.sessions[m.group(1)]}")
            kw["headers"] = headers
        r = super().request(method, url, **kw)
        if m and r.status_code == 200 and "vm_eval_session" in r.cookies:
            self.sessions[m.group(1)] = r.cookies["vm_eval_session"]
        return r


@pytest.fixture
def server(study_dir, tmp_path):
    """A fresh app (own database) on the shared study: (client, clock, admin token, db url)."""
    clock = Clock()
    db = f"sqlite:///{tmp_path / 'votes.sqlite'}"
    app = create_app(study_dir, db_url=db, admin_token="admin-secret", clock=clock)
    RaterClient.sessions.clear()  # a fresh database: no rater exists yet
    with RaterClient(app) as client:
        yield client, clock, db


# -- helpers ------------------------------------------------------------------------------------------------------
def consent(client, rid: str) -> dict:
    r = client.post(f"/api/raters/{rid}/consent")
    assert r.status_code == 200, r.text
    return r.json()


def events(client, rid, token, *evs) -> dict:
    body = {"events": [{"side": s, "event": e, "media_time": float(t)} for s, e, t in evs]}
    r = client.post(f"/api/raters/{rid}/trials/{token}/events", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def listen(client, clock, rid, token, seconds: float = MIN_LISTEN + 0.5) -> dict:
    """Play A then B for `seconds` each (real-time on the fake clock); return the server's listening count."""
    for side in ("A", "B"):
        events(client, rid, token, (side, "play", 0.0))
        clock.advance(seconds)
        out = events(client, rid, token, (side, "pause", seconds))
    return out["listened"]


def vote(client, rid, token, answers=None, sid="s1"):
    answers = answers if answers is not None else {q: "A" for q in QIDS}
    return client.post(f"/api/raters/{rid}/trials/{token}/votes", json={"answers": answers, "submission_id": sid})


def state(client, rid) -> dict:
    r = client.get(f"/api/raters/{rid}/state")
    assert r.status_code == 200, r.text
    return r.json()


def answer_current(client, clock, rid, answers=None) -> dict:
    tok = state(client, rid)["trial"]["token"]
    listen(client, clock, rid, tok)
    r = vote(client, rid, tok, answers)
    assert r.status_code == 200, r.text
    return r.json()


def admin(client, path: str, **kw):
    return client.get(path, headers={"Authorization": "Bearer admin-secret"}, **kw)


# -- the rater flow -----------------------------------------------------------------------------------------------
def test_whole_rater_flow_pages_and_api(server, study_dir):
    client, clock, _ = server
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/consent?rater=r")
    rid = r.headers["location"].split("rater=")[1]
    assert client.cookies.get("vm_eval_rater") == rid
    page = client.get(f"/consent?rater={rid}")
    assert page.status_code == 200 and "listening study on music for videos" in page.text
    assert client.get(f"/trials?rater={rid}", follow_redirects=False).headers["location"] == f"/consent?rater={rid}"
    st = consent(client, rid)
    assert st["consented"] and not st["volume_checked"] and (st["done"], st["total"]) == (0, 4)
    assert client.get("/", follow_redirects=False).headers["location"] == f"/instructions?rater={rid}"  # cookie
    assert "Each page shows one video" in client.get(f"/instructions?rater={rid}").text
    assert "/tone.wav" in client.get(f"/volume?rater={rid}").text
    tone = client.get("/tone.wav")
    assert tone.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(tone.content)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768
        assert w.getnchannels() == 1 and w.getframerate() == 44100 and w.getnframes() == 3 * 44100
    mid = x[44100 // 2: -44100 // 2]
    assert 20 * np.log10(np.sqrt(np.mean(mid ** 2))) == pytest.approx(-23.0, abs=0.05)  # the loudness target
    assert client.post(f"/api/raters/{rid}/volume-check").json()["volume_checked"]
    assert client.get("/", follow_redirects=False).headers["location"] == f"/trials?rater={rid}"
    assert 'src="/static/trial.js"' in client.get(f"/trials?rater={rid}").text
    seen = []
    for i in range(4):
        st = state(client, rid)
        t = st["trial"]
        assert (t["index"], t["total"], st["done"]) == (i + 1, 4, i) and t["options"] == ["A", "B"]
        assert [q["id"] for q in t["questions"]] == QIDS and t["min_listen_s"] == MIN_LISTEN
        assert t["video"] == t["media"]["A"] and t["media"]["A"] != t["media"]["B"]
        seen.append(t["token"])
        out = answer_current(client, clock, rid, {q: "AB"[(i + j) % 2] for j, q in enumerate(QIDS)})
        assert out["stored"] == sorted(QIDS) and out["duplicate"] is False and out["done"] == i + 1
    assert out["complete"] and re.fullmatch(r"[A-Z2-9]{10}", out["completion_code"]) and out["next"] is None
    assert len(set(seen)) == 4
    st = state(client, rid)
    assert st["complete"] and st["trial"] is None and st["completion_code"] == out["completion_code"]
    assert client.get("/", follow_redirects=False).headers["location"] == f"/done?rater={rid}"
    assert out["completion_code"] in client.get(f"/done?rater={rid}").text
    prog = admin(client, "/admin/progress").json()
    (row,) = prog["raters"]
    assert row["rater_id"] == rid and row["trials_done"] == 4 and row["votes"] == 16
    assert row["completion_code"] == out["completion_code"] and row["completed_at"]


def test_rater_id_from_url_validated_and_prolific(server):
    client, _, _ = server
    pid, study, session = "5f9a1c2b3d4e5f60718293a4", "60aa11bb22cc33dd44ee55ff", "0123456789abcdef01234567"
    r = client.get(f"/?PROLIFIC_PID={pid}&STUDY_ID={study}&SESSION_ID={session}", follow_redirects=False)
    assert r.headers["location"] == f"/consent?rater={pid}"  # Prolific ids: tests/test_study_crowd.py
    for bad in ("../etc", "a" * 65, "x y", "é"):
        r = client.get("/", params={"rater": bad}, follow_redirects=False)
        assert r.status_code == 400 and "invalid" in r.text
    assert client.post("/api/raters/bad.id/consent").status_code == 422
    assert client.post(f"/api/raters/{'a' * 65}/consent").status_code == 422
    assert client.get("/trials", follow_redirects=False).headers["location"] == "/"  # no id: back to the entry


def test_resume_after_reload_and_restart(server, study_dir):
    client, clock, db = server
    consent(client, "ana")
    client.post("/api/raters/ana/volume-check")
    first = state(client, "ana")["trial"]
    answer_current(client, clock, "ana")
    tok = state(client, "ana")["trial"]["token"]
    listen(client, clock, "ana", tok)
    assert vote(client, "ana", tok, {"overall": "B", "content": "A"}).status_code == 200  # half of trial 2
    st = state(client, "ana")  # "reload": resume at the first trial not fully answered
    assert st["done"] == 1 and st["trial"]["index"] == 2 and st["trial"]["token"] == tok
    assert st["trial"]["answered"] == {"overall": "B", "content": "A"}
    assert st["trial"]["listened"]["A"] >= MIN_LISTEN  # listening already done is kept
    assert consent(client, "ana")["done"] == 1  # consenting again changes nothing
    # restart: a new app on the same database keeps the slot, the tokens and the progress
    app2 = create_app(study_dir, db_url=db, admin_token="x", clock=clock)
    with RaterClient(app2) as c2:
        st2 = state(c2, "ana")
        assert st2["trial"]["token"] == tok and st2["done"] == 1
        assert c2.get(f"/api/raters/ana/trials/{first['token']}").json()["answered"] == {q: "A" for q in QIDS}
        r = vote(c2, "ana", tok, {"rhythm": "A", "quality": "B"})
        assert r.status_code == 200 and r.json()["done"] == 2


def test_slots_least_used_first_and_kept(server):
    client, _, _ = server
    for rid in ("r1", "r2", "r3", "r4", "r5"):
        consent(client, rid)
    consent(client, "r1")
    slots = {r["rater_id"]: r["slot"] for r in admin(client, "/admin/progress").json()["raters"]}
    assert slots == {"r1": 0, "r2": 1, "r3": 0, "r4": 1, "r5": 0}
    prog = admin(client, "/admin/progress").json()
    assert [s["raters"] for s in prog["slots"]] == [3, 2]
    t1, t2 = state(client, "r1")["trial"], state(client, "r2")["trial"]
    assert t1["token"] != t2["token"]


# -- listening --------------------------------------------------------------------------------------------------
def test_vote_refused_until_both_sides_listened(server):
    client, clock, _ = server
    consent(client, "lis")
    tok = state(client, "lis")["trial"]["token"]
    r = vote(client, "lis", tok)
    assert r.status_code == 409 and r.json()["detail"]["error"] == "not_enough_listening"
    events(client, "lis", tok, ("A", "play", 0))
    clock.advance(5)
    events(client, "lis", tok, ("A", "pause", 5))
    r = vote(client, "lis", tok)
    assert r.status_code == 409 and r.json()["detail"]["listened"] == {"A": 5.0, "B": 0.0}
    # B: the client claims 10 s of media time within 1 s of real time: only the 1 s of server time counts
    events(client, "lis", tok, ("B", "play", 0))
    clock.advance(1)
    assert events(client, "lis", tok, ("B", "pause", 10))["listened"]["B"] == pytest.approx(1.0)
    assert vote(client, "lis", tok).status_code == 409
    events(client, "lis", tok, ("B", "play", 10))
    clock.advance(1)
    events(client, "lis", tok, ("B", "ended", 11))
    r = vote(client, "lis", tok)
    assert r.status_code == 200, r.text
    assert state(client, "lis")["done"] == 1


def test_listened_seconds_rules():
    class E:
        def __init__(self, side, event, media_time, server_time):
            self.side, self.event, self.media_time, self.server_time = side, event, media_time, server_time

    def credit(evs, duration=60.0, now=1000.0):
        return listened_seconds(evs, duration, now)

    ev = [E("A", "play", 0, 100), E("B", "play", 3, 103),  # switching to B closes A at media 3
          E("B", "seek", 10, 104),  # seek: B counts 1 s of server time, then plays on from 10
          E("B", "pause", 12, 106), E("A", "pause", 12, 106),  # a pause of the idle side is ignored
          E("A", "play", 0, 200), E("A", "play", 2, 202)]  # still open at the end: counts nothing more
    assert credit(ev) == {"A": 5.0, "B": 3.0}
    assert credit([E("A", "play", 0, 0), E("A", "pause", 30, 1)]) == {"A": 1.0, "B": 0.0}  # server time caps
    assert credit([E("A", "play", 0, 0), E("A", "pause", 3, 9)]) == {"A": 3.0, "B": 0.0}  # media time caps
    assert credit([E("A", "play", 5, 0), E("A", "pause", 2, 9)]) == {"A": 0.0, "B": 0.0}  # backwards
    assert credit([E("C", "play", 0, 0), E("C", "pause", 2, 9)]) == {"A": 0.0, "B": 0.0}
    assert credit([E("A", "play", 0, 0), E("A", "pause", 30, 40)], duration=8.0) == {"A": 8.0, "B": 0.0}
    # a batch (one arrival time) credits nothing, whatever media times it claims
    assert credit([E("A", "play", 0, 5), E("A", "pause", 6, 5), E("B", "play", 0, 5), E("B", "pause", 6, 5)]) \
        == {"A": 0.0, "B": 0.0}
    # nothing before the trial was served counts, and no side more than the time since then
    served = E("-", "served", 0, 50)
    assert credit([E("A", "play", 0, 40), served, E("A", "pause", 20, 60)]) == {"A": 10.0, "B": 0.0}
    assert credit([served, E("A", "play", 0, 50), E("A", "pause", 20, 70)], now=55.0) == {"A": 5.0, "B": 0.0}


# -- validation ---------------------------------------------------------------------------------------------------
def test_malformed_and_wrongly_typed_bodies_are_422(server):
    client, clock, _ = server
    consent(client, "val")
    tok = state(client, "val")["trial"]["token"]
    listen(client, clock, "val", tok)
    url = f"/api/raters/val/trials/{tok}/votes"
    hdr = {"Content-Type": "application/json"}
    assert client.post(url, content=b"{not json", headers=hdr).status_code == 422
    assert client.post(url, content=b"", headers=hdr).status_code == 422
    bad_bodies = [
        [], {"answers": {"overall": "A"}}, {"submission_id": "s"},
        {"answers": [["overall", "A"]], "submission_id": "s"},
        {"answers": {"overall": 1}, "submission_id": "s"},
        {"answers": {"overall": "a"}, "submission_id": "s"},
        {"answers": {"overall": "C"}, "submission_id": "s"},
        {"answers": {"overall": None}, "submission_id": "s"},
        {"answers": {}, "submission_id": "s"},
        {"answers": {"overall": "A"}, "submission_id": 7},
        {"answers": {"overall": "A"}, "submission_id": "has space"},
        {"answers": {"overall": "A"}, "submission_id": "s", "system_a": "sys-alpha"},
        {"answers": {"overall": "A"}, "submission_id": "s", "client_time": "now"},
    ]
    for body in bad_bodies:
        assert client.post(url, json=body).status_code == 422, body
    r = client.post(url, json={"answers": {"nonsense": "A"}, "submission_id": "s"})
    assert r.status_code == 422 and r.json()["detail"]["error"] == "unknown_question"
    r = client.post(url, json={"answers": {"overall": "tie"}, "submission_id": "s"})
    assert r.status_code == 422 and r.json()["detail"]["error"] == "ties_not_allowed"
    ev_url = f"/api/raters/val/trials/{tok}/events"
    for body in ({"events": []}, {"events": [{"side": "C", "event": "play", "media_time": 0}]},
                 {"events": [{"side": "A", "event": "stop", "media_time": 0}]},
                 {"events": [{"side": "A", "event": "play", "media_time": "0"}]},
                 {"events": [{"side": "A", "event": "play", "media_time": -1}]},
                 {"events": [{"side": "A", "event": "play", "media_time": True}]}):
        assert client.post(ev_url, json=body).status_code == 422, body
    assert client.post(ev_url, content=b"[", headers=hdr).status_code == 422
    assert state(client, "val")["done"] == 0  # nothing was stored


def test_unknown_and_foreign_trials(server):
    client, clock, _ = server
    consent(client, "own")  # slot 0
    consent(client, "other")  # slot 1
    mine, theirs = state(client, "own")["trial"]["token"], state(client, "other")["trial"]["token"]
    for path in (f"/api/raters/own/trials/{theirs}", f"/api/raters/own/trials/{theirs}/votes",
                 f"/api/raters/own/trials/{theirs}/events"):
        r = client.get(path) if path.endswith(theirs) else client.post(
            path, json={"answers": {"overall": "A"}, "submission_id": "s"} if path.endswith("votes")
            else {"events": [{"side": "A", "event": "play", "media_time": 0}]})
        assert r.status_code == 403 and r.json()["detail"]["error"] == "foreign_trial", path
    design_id = json.loads((server[0].app.state.ctx.study.dir / "design.json").read_text())["trials"][0][
        "trial_id"]
    for tok in ("x" + "0" * 24, design_id, "..", "%2e%2e"):
        r = vote(client, "own", tok)
        assert r.status_code == 404, tok
    # another rater's id: this client's session is not its own (a browser holds one rater's cookie)
    assert vote(client, "nobody", mine).status_code == 403
    assert client.get("/api/raters/nobody/state").status_code == 403
    # out of order: the rater's second trial before the first
    trials = client.app.state.ctx.study.trials(0)
    second = client.app.state.ctx.study.token_of[trials[1].trial_id]
    listen(client, clock, "own", second)
    r = vote(client, "own", second)
    assert r.status_code == 409 and r.json()["detail"]["error"] == "out_of_order"


def test_replayed_vote_counted_once_and_conflict_409(server):
    client, clock, _ = server
    consent(client, "rep")
    tok = state(client, "rep")["trial"]["token"]
    listen(client, clock, "rep", tok)
    first = vote(client, "rep", tok, sid="sub-1")
    assert first.status_code == 200 and first.json()["duplicate"] is False
    again = vote(client, "rep", tok, sid="sub-1")
    assert again.status_code == 200 and again.json()["duplicate"] is True and again.json()["stored"] == []
    assert again.json()["duplicates"] == sorted(QIDS)
    r = vote(client, "rep", tok, {"overall": "B"}, sid="sub-2")
    assert r.status_code == 409 and r.json()["detail"]["error"] == "already_answered"
    r = vote(client, "rep", tok, {"overall": "A", "content": "B"}, sid="sub-3")  # mixed: nothing stored
    assert r.status_code == 409
    rows = admin(client, "/admin/export", params={"format": "json"}).json()
    assert len(rows) == len(QIDS) and {r["answer"] for r in rows} == {"A"}
    con = sqlite3.connect(server[2].removeprefix("sqlite:///"))
    assert con.execute("select count(*) from votes").fetchone()[0] == len(QIDS)
    with pytest.raises(sqlite3.IntegrityError):  # the unique constraint itself
        con.execute("insert into votes (rater_id, trial_id, clip_id, question, answer, system_a, system_b, is_catch, "
                    "submission_id, listen_a_s, listen_b_s, manifest_sha256, created_at) select rater_id, trial_id, "
                    "clip_id, question, 'B', system_a, system_b, is_catch, 'z', 0, 0, manifest_sha256, created_at "
                    "from votes limit 1")
    con.close()


def test_ties_only_where_allowed(tmp_path, media_bytes):
    d = build_study(tmp_path / "ties", media_bytes, allow_ties=True)
    clock = Clock()
    with RaterClient(create_app(d, admin_token="t", clock=clock)) as client:
        consent(client, "tie")
        t = state(client, "tie")["trial"]
        assert t["options"] == ["A", "B", "tie"]
        listen(client, clock, "tie", t["token"])
        assert vote(client, "tie", t["token"], {q: "tie" for q in QIDS}).status_code == 200
        df = votes_frame(pd.DataFrame(client.get("/admin/export?format=json", headers={"X-Admin-Token": "t"}).json()))
        assert set(df["answer"]) == {"tie"}
    assert (d / "votes.sqlite").is_file()  # the default database lives in STUDY_DIR


# -- media --------------------------------------------------------------------------------------------------------
def test_media_by_key_only(server, study_dir):
    client, _, _ = server
    consent(client, "med")
    t = state(client, "med")["trial"]
    key = t["media"]["A"].split("/")[-1][:-4]
    r = client.get(t["media"]["A"])
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert r.content == (study_dir / "stimuli" / f"{key}.mp4").read_bytes()
    part = client.get(t["media"]["A"], headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.content) == 100  # seeking needs ranges
    (study_dir / "stimuli" / f"{key}.mp4.json").write_text("{}")  # a create cache sidecar: never served
    attempts = [
        "/media/../study.yaml", "/media/..%2fstudy.yaml", "/media/%2e%2e/study.yaml", "/media/%2e%2e%2fstudy.yaml",
        "/media/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/media/..%5cstudy.yaml", "/media//etc/passwd",
        "/media/%2fetc%2fpasswd", f"/media/{study_dir}/study.yaml", f"/media/{key}.mp4.json", f"/media/{key}",
        f"/media/{key}.MP4", f"/media/{key}.mp4%00.yaml", f"/media/{'0' * 64}.mp4", "/media/study.yaml",
        f"/media/stimuli%2f{key}.mp4", "/static/../study.yaml", "/static/%2e%2e/study.yaml", "/static/..%2fdesign.json",
    ]
    for url in attempts:
        r = client.get(url)
        assert r.status_code == 404, (url, r.status_code)
        assert "sys-alpha" not in r.text and "trials" not in r.text, url


# -- nothing revealing reaches raters -----------------------------------------------------------------------------
def test_rater_facing_output_reveals_no_systems_runs_or_paths(server, study_dir):
    client, clock, _ = server
    secrets_ = set(SYSTEMS + CATCH) | {run_id(s) for s in SYSTEMS + CATCH} | {"RUNID", "stimuli/", str(study_dir),
                                                                             "/results/", "clip-00"}
    secrets_ |= {t["trial_id"] for t in json.loads((study_dir / "design.json").read_text())["trials"]}
    texts = []

    def get(url, **kw):
        r = client.get(url, **kw)
        texts.append(r.text)
        return r

    def post(url, **kw):
        r = client.post(url, **kw)
        texts.append(r.text)
        return r

    get("/")
    post("/api/raters/leak/consent")
    post("/api/raters/leak/volume-check")
    for page in ("consent", "instructions", "volume", "trials"):
        get(f"/{page}?rater=leak")
    for f in ("common.js", "flow.js", "trial.js", "study.css"):
        assert get(f"/static/{f}").status_code == 200
    for _ in range(4):
        t = get("/api/raters/leak/state").json()["trial"]
        get(f"/api/raters/leak/trials/{t['token']}")
        post(f"/api/raters/leak/trials/{t['token']}/votes", json={"answers": {"overall": "A"}, "submission_id": "x"})
        texts.append(json.dumps(listen(client, clock, "leak", t["token"])))
        post(f"/api/raters/leak/trials/{t['token']}/votes", json={"answers": {q: "B" for q in QIDS},
                                                                   "submission_id": "y"})
        post(f"/api/raters/leak/trials/{t['token']}/votes", json={"answers": {"overall": "A"}, "submission_id": "z"})
        post(f"/api/raters/leak/trials/{t['token']}/votes", json={"answers": {"bogus": "A"}, "submission_id": "z"})
    get("/done?rater=leak")
    get("/api/raters/leak/state")
    get("/admin/progress")  # the 401 a curious rater gets
    get("/docs")
    get("/openapi.json")
    assert "Thank you" in texts[-5]
    blob = "\n".join(texts)
    leaks = sorted(s for s in secrets_ if s in blob)
    assert leaks == []
    # and the admin side does see them (sanity check of the scan)
    assert "sys-alpha" in admin(client, "/admin/export").text


def test_security_headers(server):
    client, _, _ = server
    r = client.get("/consent?rater=h")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert client.get("/api/raters/h/state").headers["cache-control"] == "no-store"
    assert "<script>" not in r.text  # no inline scripts (the CSP forbids them)


# -- admin --------------------------------------------------------------------------------------------------------
def test_admin_token_required(server):
    client, _, _ = server
    for path in ("/admin/progress", "/admin/export", "/admin/export?format=json"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(path, headers={"Authorization": "admin-secret"}).status_code == 401
        sep = "&" if "?" in path else "?"
        assert client.get(f"{path}{sep}token=wrong").status_code == 401
        assert client.get(f"{path}{sep}token=admin-secret").status_code == 401  # never in the URL
        assert admin(client, path).status_code == 200
        assert client.get(path, headers={"X-Admin-Token": "admin-secret"}).status_code == 200
    assert admin(client, "/admin/export?format=xml").status_code == 422


def test_export_is_the_analysis_votes_table(server, study_dir):
    client, clock, _ = server
    design = json.loads((study_dir / "design.json").read_text())
    by_id = {t["trial_id"]: t for t in design["trials"]}
    for rid in ("e0", "e1"):  # one rater per slot, every trial
        consent(client, rid)
        for i in range(4):
            answer_current(client, clock, rid, {q: "AB"[(i + j) % 2] for j, q in enumerate(QIDS)})
    from studies.server.crowd import export_columns

    columns = tuple(export_columns())  # the vote columns + the practice / screening marks (test_study_crowd.py)
    csv_text = admin(client, "/admin/export", params={"format": "csv"}).text
    assert csv_text.splitlines()[0] == ",".join(columns)
    from_csv = votes_frame(pd.read_csv(io.StringIO(csv_text)))
    records = admin(client, "/admin/export", params={"format": "json"}).json()
    assert all(tuple(r) == columns for r in records)
    assert not any(r["is_practice"] for r in records) and {r["screening_passed"] for r in records} == {None}
    from_json = votes_frame(pd.DataFrame(records))
    assert list(from_csv.columns) == list(VOTE_COLUMNS) and len(from_csv) == len(from_json) == 2 * 4 * len(QIDS)
    pd.testing.assert_frame_equal(from_csv.drop(columns="timestamp"), from_json.drop(columns="timestamp"))
    for _, v in from_json.iterrows():
        t = by_id[v.trial_id]
        assert (v.system_a, v.system_b, v.clip_id, v.is_catch) == (t["system_left"], t["system_right"], t["clip_id"],
                                                                   t["is_catch"])
        q = next(q for q in DEFAULT_QUESTIONS if q.id == v.question)
        expected = {"left": "A", "right": "B"}.get(t["expected"]) if t["is_catch"] and q.catch == t["catch_kind"] \
            else None
        assert v.catch_expected == expected
    assert from_json["is_catch"].any() and from_json["catch_expected"].notna().any()
    prog = admin(client, "/admin/progress").json()
    assert prog["totals"] == {"raters": 2, "consented": 2, "completed": 2, "votes": 32}
    pairs = {(p["system_1"], p["system_2"]): p for p in prog["pairs"]}
    assert sum(p["designed_trials"] for p in pairs.values()) == 8
    assert sum(p["answered_trials"] for p in pairs.values()) == 8
    assert all(p["votes"] == p["answered_trials"] * len(QIDS) for p in pairs.values())
    assert all(sum(p["votes_by_question"].values()) == p["votes"] for p in pairs.values())
    assert ("sys-alpha", "sys-beta") in pairs  # canonical order = the config's systems order


# -- storage and start-up -----------------------------------------------------------------------------------------
def test_refuses_incomplete_or_changed_study(tmp_path, media_bytes):
    d = build_study(tmp_path / "s", media_bytes)
    broken = tmp_path / "broken"
    shutil.copytree(d, broken)
    (broken / "manifest.json").unlink()
    with pytest.raises(StudyServerError, match="not a complete study"):
        create_app(broken)
    assert not (broken / "votes.sqlite").exists()
    changed = tmp_path / "changed"
    shutil.copytree(d, changed)
    (changed / "study.yaml").write_text((changed / "study.yaml").read_text().replace("seed: 3", "seed: 4"))
    with pytest.raises(StudyServerError, match="changed"):
        create_app(changed)
    gone = tmp_path / "gone"
    shutil.copytree(d, gone)
    next((gone / "stimuli").glob("*.mp4")).unlink()
    with pytest.raises(StudyServerError, match="missing"):
        create_app(gone)


def test_sqlite_wal_and_votes_tied_to_the_manifest(tmp_path, media_bytes):
    d = build_study(tmp_path / "v1", media_bytes)
    clock = Clock()
    with RaterClient(create_app(d, clock=clock)) as client:
        consent(client, "w")
        answer_current(client, clock, "w")
    con = sqlite3.connect(d / "votes.sqlite")
    assert con.execute("pragma journal_mode").fetchone()[0] == "wal"
    (man,) = {m for (m,) in con.execute("select manifest_sha256 from votes")}
    assert man == json.loads((d / "manifest.json").read_text())["content_sha256"]
    assert {r[0] for r in con.execute("select event from listen_events")} == {"served", "play", "pause"}
    assert con.execute("select min(listen_a_s), min(listen_b_s) from votes").fetchone() == (2.5, 2.5)
    assert con.execute("select slot from assignments where rater_id='w'").fetchone() == (0,)
    con.close()
    # the study re-created (another version): the old database is refused, a fresh one is fine
    other = build_study(tmp_path / "v2", media_bytes, raters=3)
    with pytest.raises(StudyServerError, match="another version"):
        create_app(other, db_url=f"sqlite:///{d / 'votes.sqlite'}")
    create_app(other, db_url="sqlite://")


def test_cli_serve_prints_url_and_token(study_dir, tmp_path, monkeypatch, capsys):
    import uvicorn

    from vm_eval.cli import main

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    assert main(["study", "serve", str(study_dir), "--port", "8765", "--db", db, "--admin-token", "tok-1"]) == 0
    out = capsys.readouterr().out
    assert "rater URL: http://127.0.0.1:8765/" in out and "admin token: tok-1" in out
    app, kw = calls[-1]
    assert kw["host"] == "127.0.0.1" and kw["port"] == 8765 and app.state.admin_token == "tok-1"
    monkeypatch.setenv("VM_EVAL_STUDY_ADMIN_TOKEN", "from-env")
    assert main(["study", "serve", str(study_dir), "--db", db, "--host", "0.0.0.0"]) == 0
    assert "admin token: from-env" in capsys.readouterr().out and calls[-1][1]["port"] == 8700
    monkeypatch.delenv("VM_EVAL_STUDY_ADMIN_TOKEN")
    assert main(["study", "serve", str(study_dir), "--db", db]) == 0
    token = re.search(r"admin token: (\S+)", capsys.readouterr().out).group(1)
    assert len(token) >= 40 and calls[-1][0].state.admin_token == token
    (tmp_path / "empty").mkdir()
    assert main(["study", "serve", str(tmp_path / "empty")]) == 2
    assert "refusing to serve" in capsys.readouterr().err
