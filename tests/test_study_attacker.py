"""The study server against a hostile rater (issue 16 parts 1-3).

Blinding: a study is created from two demo runs whose music differs in every way a file can (ground truth:
44.1 kHz stereo; beat-sync: 32 kHz synthesised), served, and the attacker sees only what a rater's browser gets:
the HTTP headers and bytes of each trial's two media responses, probed with PyAV. Each simple rule ("the bigger
file is ground truth", "the earlier Last-Modified", "the higher sample rate", ...) predicts whether side A is
ground truth; a rule that cannot tell (equal values) scores half right. Every observation is a function of the
two stimuli, so the independent units are the clips (trials of one clip repeat one verdict), and the stated
bound is over them: no rule may be right (or wrong) on so many of the n clips that a fair coin would do as well
with two-sided binomial probability <= 2% (with the demo's 7 clips both runs have music for: right on all 7,
p = 2/128; a rule that is a coin flip per clip, like the ETag, trips it with that probability). That
bound is weak for a rule that is only somewhat informative, so where the responses should be identical (sizes,
stream parameters, headers) the test says so directly as well.

Listening time and inputs: the batch bypass, the event cap, body limits, NaN / Infinity, the admin token and the
rater credential.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
from email.utils import parsedate_to_datetime
from pathlib import Path

import av
import pytest
from browser import wait_until
from fastapi.testclient import TestClient
from test_study_server import QIDS, Clock, RaterClient, build_study, media_bytes  # noqa: F401

from studies.create import CreateRequest, create_study
from studies.layout import STIMULI_DIR
from studies.server import create_app
from studies.server.app import MAX_BODY_BYTES
from studies.server.listening import MAX_EVENTS_PER_TRIAL
from vm_eval.runner import RunConfig, execute

GT, OTHER = "ground-truth", "beat-sync"
ALPHA = 0.02  # two-sided binomial probability at or under which a rule counts as telling the systems apart


@pytest.fixture(scope="module")
def blind_study(data_dir, tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("attacker-results")
    for m in (GT, OTHER):
        execute(RunConfig(model=m, split="test", dataset="demo", data=data_dir, results=results,
                          metrics=["duration-error"], limit=10, progress=False))
    out = tmp_path_factory.mktemp("attacker-study") / "study"
    create_study(CreateRequest(runs=[OTHER, GT], out=out, results=results, data=data_dir, raters=2,
                               trials_per_rater=9, catch_rate=0.0, min_listen_s=1.0, seed=11, progress=False,
                               log=lambda msg: None))
    return out


def _probe(content: bytes) -> dict:
    """What a rater can read from the media bytes: container and audio stream parameters, packet sizes."""
    with av.open(io.BytesIO(content)) as c:
        a = c.streams.audio[0]
        out = {"format": c.format.name, "codec": a.codec_context.name, "profile": a.codec_context.profile,
               "sample_rate": a.rate, "channels": a.channels, "stream_bit_rate": a.bit_rate or 0,
               "container_bit_rate": c.bit_rate or 0,
               "duration": float(a.duration * a.time_base) if a.duration is not None else 0.0,
               "frames": a.frames, "metadata": sorted(c.metadata.items()) + sorted(a.metadata.items())}
        sizes = [p.size for p in c.demux(a) if p.size]
    out["audio_bytes"] = sum(sizes)
    out["largest_packet"] = max(sizes)
    out["packet_size_spread"] = max(sizes) - min(sizes)
    return out


def _observe(client: TestClient, url: str) -> dict:
    r = client.get(url)
    assert r.status_code == 200, r.text
    h = r.headers
    lm = h.get("last-modified")
    return {"url": url, "bytes": r.content, "headers": dict(h), "size": len(r.content),
            "content_length": int(h.get("content-length", len(r.content))),
            "last_modified": parsedate_to_datetime(lm).timestamp() if lm else None,
            "etag": h.get("etag", ""), **_probe(r.content)}


def _attack(study: Path) -> tuple[list[tuple[dict, dict, bool]], dict[str, int]]:
    """Go through every rater's trials as a rater would (listening on the fake clock) and observe both media
    responses of each trial. Returns [(observation A, observation B, A is ground truth)] and the write order."""
    stimuli = json.loads((study / "stimuli.json").read_text())["stimuli"]
    system_of = {s["key"]: s["system"] for s in stimuli}
    # the order the files were written in (not HTTP, but what Last-Modified leaked; create must randomise it)
    mtime = {s["key"]: (study / STIMULI_DIR / f"{s['key']}.mp4").stat().st_mtime_ns for s in stimuli}
    rank = {k: i for i, k in enumerate(sorted(mtime, key=mtime.get))}
    raters = json.loads((study / "design.json").read_text())["raters"]
    clock = Clock()
    seen = []
    app = create_app(study, db_url=f"sqlite:///{study.parent / 'attack.sqlite'}", admin_token="t", clock=clock)
    for i in range(raters):
        with TestClient(app) as client:
            rid = f"attacker-{i}"
            api = f"/api/raters/{rid}"
            assert client.post(f"{api}/consent").status_code == 200
            assert client.post(f"{api}/volume-check").status_code == 200
            st = client.get(f"{api}/state").json()
            while st["trial"] is not None:
                t = st["trial"]
                a, b = _observe(client, t["media"]["A"]), _observe(client, t["media"]["B"])
                key_a = t["media"]["A"].rsplit("/", 1)[1][:-4]
                key_b = t["media"]["B"].rsplit("/", 1)[1][:-4]
                assert {system_of[key_a], system_of[key_b]} == {GT, OTHER}
                a["write_rank"], b["write_rank"] = rank[key_a], rank[key_b]
                seen.append((a, b, system_of[key_a] == GT))
                tp = f"{api}/trials/{t['token']}"
                need = t["min_listen_s"] + 0.2
                for side, t0 in (("A", 0.0), ("B", need)):
                    ev = {"events": [{"side": side, "event": "play", "media_time": t0}]}
                    assert client.post(f"{tp}/events", json=ev).status_code == 200
                    clock.advance(need)
                    ev = {"events": [{"side": side, "event": "pause", "media_time": t0 + need}]}
                    assert client.post(f"{tp}/events", json=ev).status_code == 200
                answers = {q["id"]: "A" for q in t["questions"]}
                r = client.post(f"{tp}/votes", json={"answers": answers, "submission_id": f"s{t['index']}"})
                assert r.status_code == 200, r.text
                st = client.get(f"{api}/state").json()
    return seen, rank


def _rules() -> dict:
    """Each rule maps (observation A, observation B) to a score: > 0 "A is ground truth", < 0 "B is", 0 no idea."""
    def cmp(field):
        def rule(a, b):
            x, y = a[field], b[field]
            if x is None or y is None or x == y:
                return 0
            return 1 if x > y else -1
        return rule

    fields = ("size", "content_length", "last_modified", "sample_rate", "channels", "stream_bit_rate",
              "container_bit_rate", "duration", "frames", "audio_bytes", "largest_packet", "packet_size_spread",
              "etag", "url", "write_rank", "codec", "profile", "metadata")
    rules = {f: cmp(f) for f in fields}
    rules["headers"] = lambda a, b: (0 if _varying(a) == _varying(b) else
                                     (1 if sorted(_varying(a).items()) > sorted(_varying(b).items()) else -1))
    return rules


def _varying(obs: dict) -> dict:
    """Response headers other than those that must differ per stimulus (the ETag, tested on its own) or per request."""
    return {k: v for k, v in obs["headers"].items() if k not in ("etag", "date")}


def _binom_upper(n: int, alpha: float) -> float:
    """Smallest k > n/2 with two-sided P(Binomial(n, 1/2) >= k or <= n - k) <= alpha (n + 1 when none)."""
    for k in range(n // 2 + 1, n + 1):
        if 2 * sum(math.comb(n, j) for j in range(k, n + 1)) / 2.0 ** n <= alpha:
            return k
    return n + 1


@pytest.fixture(scope="module")
def attacked(blind_study):
    return _attack(blind_study)


def test_simple_rules_predict_the_system_no_better_than_chance(attacked):
    seen, _ = attacked
    units = {}  # one (A, B, A is ground truth) per clip: its two stimuli, in the side order first served
    for a, b, a_gt in seen:
        units.setdefault(frozenset((a["url"], b["url"])), (a, b, a_gt))
    n = len(units)
    assert n >= 7 and len(seen) >= n
    bound = _binom_upper(n, ALPHA)
    assert bound <= n  # the test can flag a rule at all
    report = {}
    for name, rule in _rules().items():
        scores = [(rule(a, b), a_gt) for a, b, a_gt in units.values()]
        hits = sum((sc > 0) == a_gt for sc, a_gt in scores if sc != 0) + sum(sc == 0 for sc, _ in scores) / 2
        report[name] = max(hits, n - hits)
    informative = {k: v for k, v in report.items() if v >= bound}
    assert not informative, f"rules that tell the systems apart (of {n} clips; chance bound {bound}): {informative}"


def test_both_sides_of_a_trial_look_alike(attacked):
    seen, _ = attacked
    same = ("size", "content_length", "sample_rate", "channels", "stream_bit_rate", "duration", "frames", "codec",
            "format", "audio_bytes", "packet_size_spread")
    for a, b, _ in seen:
        assert {f: a[f] for f in same} == {f: b[f] for f in same}
        assert a["sample_rate"] == 48000 and a["channels"] == 2 and a["packet_size_spread"] <= 1
        assert _varying(a) == _varying(b)


def test_media_headers_carry_no_write_order(attacked):
    seen, _ = attacked
    for obs in (o for a, b, _ in seen for o in (a, b)):
        assert obs["last_modified"] is None, obs["headers"]
        assert obs["etag"] == '"' + hashlib.sha256(obs["bytes"]).hexdigest() + '"'


# -- part 2: listening time from the server's clock -------------------------------------------------------------
@pytest.fixture
def small(tmp_path, media_bytes):
    """A fresh app on a tiny hand-built study (clips of 10 s, minimum 2 s): (client, clock)."""
    clock = Clock()
    study = build_study(tmp_path / "study", media_bytes, min_listen=2.0)
    RaterClient.sessions.clear()
    with RaterClient(create_app(study, db_url=f"sqlite:///{tmp_path / 'v.sqlite'}", admin_token="adm",
                                clock=clock)) as client:
        yield client, clock


def _start(client, rid: str) -> tuple[str, dict]:
    assert client.post(f"/api/raters/{rid}/consent").status_code == 200
    trial = client.get(f"/api/raters/{rid}/state").json()["trial"]
    return f"/api/raters/{rid}/trials/{trial['token']}", trial


def _vote(client, tp: str) -> object:
    return client.post(f"{tp}/votes", json={"answers": {q: "A" for q in QIDS}, "submission_id": "s1"})


def _event(client, tp: str, side: str, event: str, media_time: float):
    return client.post(f"{tp}/events", json={"events": [{"side": side, "event": event, "media_time": media_time}]})


def test_a_batch_of_events_credits_nothing(small):
    """The bypass of issue 16: 48 play / pause events with rising media time in one request, a vote 0.12 s later."""
    client, clock = small
    tp, _ = _start(client, "batch")
    evs = [{"side": "AB"[i // 2 % 2], "event": ("play", "pause")[i % 2], "media_time": 0.25 * i}
           for i in range(48)]
    r = client.post(f"{tp}/events", json={"events": evs})
    assert r.status_code == 200 and r.json()["listened"] == {"A": 0.0, "B": 0.0}
    clock.advance(0.12)
    r = _vote(client, tp)
    assert r.status_code == 409 and r.json()["detail"]["error"] == "not_enough_listening"
    # one event per request, but faster than real time: only the server time between arrivals counts
    for side in ("A", "B"):
        _event(client, tp, side, "play", 0.0)
        clock.advance(0.5)
        assert _event(client, tp, side, "pause", 6.0).status_code == 200
    assert _vote(client, tp).status_code == 409
    # honest listening: play, 2.5 s of real time, pause, per side
    for side in ("A", "B"):
        _event(client, tp, side, "play", 0.0)
        clock.advance(2.5)
        _event(client, tp, side, "pause", 2.5)
    r = _vote(client, tp)
    assert r.status_code == 200, r.text


def test_short_clips_get_half_their_duration_as_minimum(tmp_path, media_bytes):
    clock = Clock()
    study = build_study(tmp_path / "study", media_bytes, min_listen=2.0, duration=3.0)
    RaterClient.sessions.clear()
    with RaterClient(create_app(study, db_url=f"sqlite:///{tmp_path / 'v.sqlite'}", clock=clock)) as client:
        tp, trial = _start(client, "short")
        assert trial["min_listen_s"] == 1.5  # 3 s clips < 2 x 2 s: half the clip
        for side in ("A", "B"):
            _event(client, tp, side, "play", 0.0)
            clock.advance(1.2)  # under 1.5 - JITTER_S
            _event(client, tp, side, "pause", 1.2)
        assert _vote(client, tp).status_code == 409
        _event(client, tp, "B", "play", 0.0)
        clock.advance(0.2)
        _event(client, tp, "B", "pause", 0.2)
        _event(client, tp, "A", "play", 0.0)
        clock.advance(0.2)
        _event(client, tp, "A", "ended", 0.2)
        assert _vote(client, tp).status_code == 200
        # no segment counts more than the clip lasts, however long the pause arrived after the play
        tp2 = f"/api/raters/short/trials/{client.get('/api/raters/short/state').json()['trial']['token']}"
        _event(client, tp2, "A", "play", 0.0)
        clock.advance(60)
        assert _event(client, tp2, "A", "pause", 60.0).json()["listened"]["A"] == 3.0


# -- part 3: hardened inputs --------------------------------------------------------------------------------------
def test_bodies_over_the_limit_are_413_even_chunked(small):
    client, _ = small
    tp, _ = _start(client, "big")
    pad = {"events": [{"side": "A", "event": "play", "media_time": 0.0, "client_time": 1.0}] * 3000}
    raw = json.dumps(pad).encode()
    assert len(raw) > MAX_BODY_BYTES
    r = client.post(f"{tp}/events", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["detail"]["error"] == "body_too_large"

    def chunks():  # no Content-Length: the limit is counted as the bytes arrive
        for i in range(0, len(raw), 4096):
            yield raw[i:i + 4096]

    r = client.post(f"{tp}/events", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and r.json()["detail"]["error"] == "body_too_large"
    # under the limit: answered on its merits (too many events in one request -> 422), not 413
    r = client.post(f"{tp}/events", json={"events": pad["events"][:150]})
    assert r.status_code == 422
    assert client.get(f"/api/raters/big/state").status_code == 200  # the server is fine


def test_events_per_trial_are_capped(small):
    client, clock = small
    tp, _ = _start(client, "chatty")
    ev = [{"side": "A", "event": e, "media_time": 0.0} for e in ("play", "pause")] * 50
    for _ in range(MAX_EVENTS_PER_TRIAL // len(ev)):
        assert client.post(f"{tp}/events", json={"events": ev}).status_code == 200
    r = client.post(f"{tp}/events", json={"events": ev[:1]})
    assert r.status_code == 429 and r.json()["detail"]["error"] == "too_many_events"
    assert str(MAX_EVENTS_PER_TRIAL) in r.json()["detail"]["message"]
    n = client.app.state.ctx.repo.events("chatty", client.app.state.ctx.study.trial_of[tp.rsplit("/", 1)[1]].trial_id)
    assert sum(e.event != "served" for e in n) == MAX_EVENTS_PER_TRIAL


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_422_not_500(small, number):
    client, _ = small
    tp, _ = _start(client, "nan")
    hdr = {"Content-Type": "application/json"}
    bodies = {
        "events": [f'{{"events": [{{"side": "A", "event": "play", "media_time": {number}}}]}}',
                   f'{{"events": [{{"side": "A", "event": "play", "media_time": 1, "client_time": {number}}}]}}',
                   f'{{"events": [{{"side": "A", "event": "play", "media_time": 1, "extra": {number}}}]}}'],
        "votes": [f'{{"answers": {{"overall": {number}}}, "submission_id": "s"}}',
                  f'{{"answers": {{"overall": "A"}}, "submission_id": "s", "client_time": {number}}}',
                  f'{{"answers": {{"overall": "A"}}, "submission_id": {number}}}'],
    }
    for endpoint, raws in bodies.items():
        for raw in raws:
            r = client.post(f"{tp}/{endpoint}", content=raw.encode(), headers=hdr)
            assert r.status_code == 422, (raw, r.status_code, r.text)
            json.loads(r.text)  # strict JSON back
    r = client.post("/api/raters/nan/consent", content=f'{{"x": {number}}}'.encode(), headers=hdr)
    assert r.status_code in (200, 422)


def test_admin_token_only_in_a_header_and_never_in_the_access_log(tmp_path, media_bytes):
    import logging

    import httpx

    study = build_study(tmp_path / "study", media_bytes)
    app = create_app(study, db_url=f"sqlite:///{tmp_path / 'v.sqlite'}", admin_token="sekrit-admin-token")
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    import socket
    import threading

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    # uvicorn's own logging configuration, as `vm-eval study serve` runs it (configured after create_app)
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", access_log=True))
    log = logging.getLogger("uvicorn.access")
    keep = Keep()
    log.addHandler(keep)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        wait_until(lambda: server.started, 30, what="uvicorn to start")
        if True:
            assert httpx.get(f"{url}/admin/progress?token=sekrit-admin-token").status_code == 401
            assert httpx.get(f"{url}/admin/export?format=csv&token=sekrit-admin-token").status_code == 401
            assert httpx.get(f"{url}/admin/progress", headers={"X-Admin-Token": "sekrit-admin-token"}).status_code == 200
            r = httpx.get(f"{url}/admin/progress", headers={"Authorization": "Bearer sekrit-admin-token"})
            assert r.status_code == 200
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        log.removeHandler(keep)
    assert len(lines) >= 4 and any("/admin/progress" in ln for ln in lines), lines
    assert not any("sekrit" in ln for ln in lines), lines


def test_a_rater_session_is_a_signed_cookie_issued_at_consent(tmp_path, media_bytes):
    clock = Clock()
    study = build_study(tmp_path / "study", media_bytes)
    app = create_app(study, db_url=f"sqlite:///{tmp_path / 'v.sqlite'}", clock=clock)
    with TestClient(app) as victim, TestClient(app) as attacker:
        r = victim.post("/api/raters/victim/consent")
        assert r.status_code == 200
        cookie = r.headers["set-cookie"]
        assert "vm_eval_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace(
            "SameSite=Strict", "SameSite=strict")
        assert victim.get("/api/raters/victim/state").status_code == 200
        token = victim.get("/api/raters/victim/state").json()["trial"]["token"]
        # knowing the rater id (and even the trial token) is not enough
        api = "/api/raters/victim"
        for method, path, body in (("GET", "/state", None), ("POST", "/volume-check", {}),
                                   ("GET", f"/trials/{token}", None),
                                   ("POST", f"/trials/{token}/events",
                                    {"events": [{"side": "A", "event": "play", "media_time": 0.0}]}),
                                   ("POST", f"/trials/{token}/votes",
                                    {"answers": {"overall": "A"}, "submission_id": "x"})):
            r = attacker.request(method, api + path, json=body)
            assert r.status_code == 401 and r.json()["detail"]["error"] == "no_session", (path, r.text)
        # nor is consenting again as that id, or a credential of one's own, or a forged one
        r = attacker.post(f"{api}/consent")
        assert r.status_code == 403 and r.json()["detail"]["error"] == "rater_taken"
        assert attacker.post("/api/raters/mallory/consent").status_code == 200  # the attacker's own session
        assert attacker.get(f"{api}/state").status_code == 403
        forged = [f"victim.{'0' * 40}", "victim", victim.cookies["vm_eval_session"][:-1] + "x"]
        for cred in forged:
            r = attacker.get(f"{api}/state", headers={"Authorization": f"Bearer {cred}"})
            assert r.status_code == 403 and r.json()["detail"]["error"] == "bad_session"
        # the victim's own credential still works, as a cookie or a bearer header, and survives a restart
        assert victim.post(f"{api}/consent").status_code == 200
        cred = victim.cookies["vm_eval_session"]
    with TestClient(create_app(study, db_url=f"sqlite:///{tmp_path / 'v.sqlite'}", clock=clock)) as again:
        assert again.get(f"{api}/state", headers={"Authorization": f"Bearer {cred}"}).status_code == 200
