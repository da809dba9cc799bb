"""Crowd-platform parts of the study server (`studies.server.crowd`, `studies.screening`): the Huggins-pitch
signal itself, the Prolific entry (validated ids stored with the rater) and completion redirect, the panel
completion-code page, the headphone-screening step (answer key kept on the server, equal files, result stored once
and marked in the export), the practice trial (not counted, marked) and what the instructions state. Through
FastAPI's TestClient on a tiny hand-built study; the real-browser walk is in tests/test_study_browser.py."""
from __future__ import annotations

import io
import wave
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_study_server import Clock, media_bytes  # noqa: F401  (media_bytes: a fixture)

import studies.layout as layout
from studies import screening
from studies.config import StudyConfig, save_config
from studies.design import Design, design_for_config, design_report, make_design
from studies.server import create_app
from studies.server.crowd import screening_seed
from vm_eval.fsutil import atomic_write_json, file_sha256, json_sha256

SYSTEMS = ["sys-alpha", "sys-beta", "sys-gamma"]
CLIPS = ["clip-000", "clip-001"]
MIN_LISTEN = 2.0
PID, STUDY, SESSION = "5f9a1c2b3d4e5f60718293a4", "60aa11bb22cc33dd44ee55ff", "0123456789abcdef01234567"
CODE = "C7Q2XK9P"


def _wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels()) / 32768.0
        return x, w.getframerate()


def _ipd(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frequencies, interaural phase difference left - right per bin, cross-spectrum)."""
    cross = np.fft.rfft(x[:, 0]) * np.conj(np.fft.rfft(x[:, 1]))
    return np.fft.rfftfreq(len(x), 1.0 / sr), np.angle(cross), cross


# -- the signal ---------------------------------------------------------------------------------------------------
def test_huggins_pitch_signal():
    spec = screening.HugginsSpec()
    lo, hi = spec.band_hz
    assert (lo, hi) == pytest.approx((564.0, 636.0))

    # the construction, without fades: IPD exactly pi on every bin of the band and 0 on every other bin
    exact = screening.HugginsSpec(fade_s=0.0)
    x = screening.huggins_interval(11, 0, 2, True, exact)
    f, ipd, _ = _ipd(x, exact.sample_rate)
    band = (f >= lo) & (f <= hi)
    assert band.sum() == 73  # 1 Hz bins of a 1 s interval
    assert np.allclose(np.abs(ipd[band]), np.pi, atol=1e-6)
    assert np.allclose(ipd[~band & (f > 0)], 0.0, atol=1e-6)
    # each ear alone: the same magnitude spectrum (no monaural cue of the pitch)
    assert np.allclose(np.abs(np.fft.rfft(x[:, 0])), np.abs(np.fft.rfft(x[:, 1])), rtol=1e-9, atol=1e-9)

    # the served files (fades, 16-bit): inside the band the phase is pi, outside 0, within the fades' smearing
    seed, rounds = 20240607, 6
    tg = screening.targets(seed, rounds)
    sizes, headers = set(), set()
    for r in range(rounds):
        for i in range(screening.INTERVALS):
            data = screening.interval_wav(seed, r, i, rounds, spec)
            sizes.add(len(data))
            headers.add(data[:44])
            x, sr = _wav(data)
            f, ipd, cross = _ipd(x, sr)
            band = (f >= lo) & (f <= hi)
            outside = ((f < lo - 20) | (f > hi + 20)) & (f > 20)
            if i == tg[r]:
                assert abs(abs(np.angle(cross[band].sum())) - np.pi) < 0.05  # power-weighted mean IPD
                assert np.mean(np.abs(np.abs(ipd[band]) - np.pi) < 0.25) > 0.85
                assert abs(np.angle(cross[outside].sum())) < 0.01
                assert np.percentile(np.abs(ipd[outside]), 99) < 0.05
            else:  # diotic: both ears get the identical signal, so there is no pitch cue at all
                assert np.array_equal(x[:, 0], x[:, 1])
            rms = np.sqrt(np.mean(x ** 2, axis=0))
            assert np.allclose(20 * np.log10(rms), spec.level_dbfs, atol=0.5)  # same level in every interval
    assert len(sizes) == 1 and len(headers) == 1, "the target interval must not show in file sizes or headers"
    assert screening.interval_wav(seed, 1, 1, rounds, spec) == screening.interval_wav(seed, 1, 1, rounds, spec)
    assert screening.interval_wav(seed, 1, 1, rounds, spec) != screening.interval_wav(seed, 1, 2, rounds, spec)
    assert screening.score(tg, seed) == rounds and screening.score([(t + 1) % 3 for t in tg], seed) == 0
    many = screening.targets(1, 3000)
    assert all(abs(many.count(i) / 3000 - 1 / 3) < 0.04 for i in range(3))


def test_practice_trial_in_the_design():
    kw = dict(catch_rate=0.25, seed=9)
    plain = make_design(CLIPS + ["clip-002"], SYSTEMS, 3, 4, **kw)
    with_practice = make_design(CLIPS + ["clip-002"], SYSTEMS, 3, 4, practice=True, **kw)
    assert with_practice.practice and Design.from_json(with_practice.to_json()) == with_practice
    for a, b in zip(plain.trials, with_practice.trials):
        first, rest = b[0], b[1:]
        assert first.is_practice and first.position == 0 and not first.is_catch
        assert first.system_left in SYSTEMS and first.system_right in SYSTEMS
        assert (first.clip_id, frozenset((first.system_left, first.system_right))) not in \
            {(t.clip_id, frozenset((t.system_left, t.system_right))) for t in rest}  # a cell not shown again
        assert [t.position for t in rest] == list(range(1, 5)) and not any(t.is_practice for t in rest)
        # the analysed trials are those of the design without practice, in the same order
        assert [(t.clip_id, t.system_left, t.system_right, t.is_catch) for t in rest] == \
            [(t.clip_id, t.system_left, t.system_right, t.is_catch) for t in a]
    assert design_report(with_practice).summary() == design_report(plain).summary()


# -- a tiny served study ------------------------------------------------------------------------------------------
def build_study(d: Path, media: bytes, **extra) -> Path:
    """A complete STUDY_DIR written the way `study create` writes it (see tests/test_study_server.py), with
    the crowd options `extra` in its config."""
    d.mkdir(parents=True)
    config = StudyConfig(systems=SYSTEMS, min_listen_s=MIN_LISTEN, catch_rate=0.0, raters=2, trials_per_rater=2,
                         seed=5, **extra)
    design = design_for_config(config, CLIPS)
    (d / layout.STIMULI_DIR).mkdir()
    stimuli = []
    for i, (clip, system) in enumerate(sorted({(t.clip_id, s) for t in design.all_trials()
                                               for s in (t.system_left, t.system_right)})):
        key = json_sha256([clip, system, str(d)])
        path = d / layout.STIMULI_DIR / f"{key}.mp4"
        path.write_bytes(media + bytes([i]))
        stimuli.append({"key": key, "file": f"stimuli/{key}.mp4", "sha256": file_sha256(path), "clip_id": clip,
                        "system": system, "run_id": f"run-{system}", "duration_s": 10.0})
    save_config(config, d / "study.yaml")
    atomic_write_json(d / "design.json", design.to_json())
    atomic_write_json(d / "stimuli.json", {"version": 1, "stimuli": stimuli})
    atomic_write_json(d / "systems.json", {s: {"run_id": f"run-{s}", "role": "compared"} for s in SYSTEMS})
    files = layout.files_hash(d)
    atomic_write_json(d / layout.COMPLETE_FILE, {"version": 1, "files": files, "content_sha256": json_sha256(files),
                                                 "summary": {}})
    return d


CROWD = dict(practice_trial=True, screening={"interval_s": 0.3, "gap_s": 0.1},
             prolific={"completion_code": CODE, "completion_url": "https://app.prolific.com/submissions/complete"})


@pytest.fixture(scope="module")
def crowd_study(tmp_path_factory, media_bytes) -> Path:
    return build_study(tmp_path_factory.mktemp("crowd") / "study", media_bytes, **CROWD)


@pytest.fixture
def client(crowd_study, tmp_path):
    clock = Clock()
    app = create_app(crowd_study, db_url=f"sqlite:///{tmp_path / 'votes.sqlite'}", admin_token="adm", clock=clock)
    with TestClient(app) as c:
        c.clock = clock
        c.ctx = app.state.ctx
        yield c


def _loc(r) -> str:
    assert r.status_code == 303, (r.status_code, r.text)
    return r.headers["location"]


def _to_trials(c, rid: str, correct: bool = True) -> list[int]:
    """Consent, volume check and the screening (answered right or all wrong); returns the answers sent."""
    assert c.post(f"/api/raters/{rid}/consent").status_code == 200
    assert c.post(f"/api/raters/{rid}/volume-check").status_code == 200
    targets = screening.targets(screening_seed(c.ctx, rid), c.ctx.study.config.screening.trials)
    answers = [t + 1 if correct else (t + 1) % 3 + 1 for t in targets]
    r = c.post(f"/api/raters/{rid}/screening", json={"answers": answers})
    assert r.status_code == 200 and r.json() == {"done": True}, r.text
    return answers


def _answer(c, rid: str, token: str) -> dict:
    for side in ("A", "B"):
        for ev in ("play", "pause"):
            body = {"events": [{"side": side, "event": ev, "media_time": 0.0 if ev == "play" else MIN_LISTEN + 1}]}
            assert c.post(f"/api/raters/{rid}/trials/{token}/events", json=body).status_code == 200
            c.clock.t += MIN_LISTEN + 1 if ev == "play" else 0.1
    r = c.post(f"/api/raters/{rid}/trials/{token}/votes",
               json={"answers": {q.id: "A" for q in c.ctx.study.config.questions}, "submission_id": token[:16]})
    assert r.status_code == 200, r.text
    return r.json()


# -- Prolific -----------------------------------------------------------------------------------------------------
def test_prolific_entry_validated_and_completion_redirect(client):
    c = client
    bad = [{"PROLIFIC_PID": "5f9a_b-C", "STUDY_ID": STUDY, "SESSION_ID": SESSION},  # not 24 hex digits
           {"PROLIFIC_PID": PID, "STUDY_ID": STUDY},  # SESSION_ID missing
           {"PROLIFIC_PID": PID, "STUDY_ID": "{{%STUDY_ID%}}", "SESSION_ID": SESSION},  # placeholder not filled in
           {"PROLIFIC_PID": PID + "0", "STUDY_ID": STUDY, "SESSION_ID": SESSION}]
    for params in bad:
        r = c.get("/", params=params, follow_redirects=False)
        assert r.status_code == 400 and "Invalid Prolific link" in r.text and "Prolific ids are 24" in r.text, params
    assert c.ctx.repo.crowd_all() == {}

    r = c.get("/", params={"PROLIFIC_PID": PID.upper(), "STUDY_ID": STUDY, "SESSION_ID": SESSION},
              follow_redirects=False)
    assert _loc(r) == f"/consent?rater={PID}"
    row = c.ctx.repo.crowd(PID)
    assert (row.prolific_pid, row.prolific_study_id, row.prolific_session_id) == (PID, STUDY, SESSION)

    _to_trials(c, PID)
    st = c.get(f"/api/raters/{PID}/state").json()
    first = st["trial"]
    assert first["practice"] and first["index"] == 0 and first["total"] == 2 and st["total"] == 3
    assert "Practice trial" in open(Path(__file__).parents[1] / "studies/server/static/trial.js").read()
    out = _answer(c, PID, first["token"])
    nxt = c.get(f"/api/raters/{PID}/state").json()["trial"]
    assert not nxt["practice"] and (nxt["index"], nxt["total"]) == (1, 2) and out["next"] == nxt["token"]
    while out["next"]:
        out = _answer(c, PID, out["next"])
    assert out["complete"]
    # the end: back to Prolific with the study's completion code, also when the participant returns later
    target = _loc(c.get(f"/done?rater={PID}", follow_redirects=False))
    u = urlsplit(target)
    assert (u.scheme, u.netloc, u.path) == ("https", "app.prolific.com", "/submissions/complete")
    assert parse_qs(u.query) == {"cc": [CODE]}
    assert _loc(c.get("/", params={"PROLIFIC_PID": PID, "STUDY_ID": STUDY, "SESSION_ID": SESSION},
                      follow_redirects=False)) == f"/done?rater={PID}"

    prog = c.get("/admin/progress", headers={"Authorization": "Bearer adm"}).json()
    (me,) = [r for r in prog["raters"] if r["rater_id"] == PID]
    assert (me["prolific_pid"], me["prolific_session_id"], me["screening_score"], me["screening_passed"]) == \
        (PID, SESSION, 6, True)
    # the export marks the practice votes and the screening result
    rows = c.get("/admin/export?format=json", headers={"Authorization": "Bearer adm"}).json()
    n_q = len(c.ctx.study.config.questions)
    assert len(rows) == 3 * n_q and sum(r["is_practice"] for r in rows) == n_q
    assert {r["trial_id"] for r in rows if r["is_practice"]} == \
        {t.trial_id for t in c.ctx.study.design.all_trials() if t.is_practice and t.rater == first_slot(c, PID)}
    assert {r["screening_passed"] for r in rows} == {True}
    csv = c.get("/admin/export", headers={"Authorization": "Bearer adm"}).text.splitlines()
    assert csv[0].endswith(",is_practice,screening_passed") and csv[1].endswith(",True")


def first_slot(c, rid: str) -> int:
    return c.ctx.repo.rater(rid).slot


# -- headphone screening ------------------------------------------------------------------------------------------
def test_screening_step_scored_on_the_server_and_stored_once(client):
    c = client
    rid = "screen-fail"
    assert c.post(f"/api/raters/{rid}/consent").status_code == 200
    assert c.post(f"/api/raters/{rid}/screening", json={"answers": [1] * 6}).status_code == 409  # volume first
    c.post(f"/api/raters/{rid}/volume-check")
    assert _loc(c.get(f"/?rater={rid}", follow_redirects=False)) == f"/screening?rater={rid}"
    assert _loc(c.get(f"/trials?rater={rid}", follow_redirects=False)) == f"/screening?rater={rid}"
    page = c.get(f"/screening?rater={rid}").text
    assert 'src="/static/screening.js"' in page and "6 rounds" in page

    info = c.get(f"/api/raters/{rid}/screening").json()
    assert (info["rounds"], info["intervals"], info["done"]) == (6, 3, False)
    token = c.ctx.study.token_of[c.ctx.study.trials(c.ctx.repo.rater(rid).slot)[0].trial_id]
    r = c.post(f"/api/raters/{rid}/trials/{token}/votes", json={"answers": {"overall": "A"}, "submission_id": "s"})
    assert r.status_code == 409 and r.json()["detail"]["error"] == "screening_required"

    # every noise of every round: same length, same headers; nothing in the responses names the target
    responses = [c.get(url) for rnd in info["media"] for url in rnd]
    assert {r.status_code for r in responses} == {200}
    assert len({len(r.content) for r in responses}) == 1 and len({r.content[:44] for r in responses}) == 1
    assert len({tuple(sorted((k, v) for k, v in r.headers.items() if k != "date")) for r in responses}) == 1
    assert "etag" not in responses[0].headers and "last-modified" not in responses[0].headers
    assert c.get(f"/api/raters/{rid}/screening/7/1.wav").status_code == 404
    assert c.get(f"/api/raters/{rid}/screening/1/4.wav").status_code == 404
    assert c.get(f"/api/raters/{rid}/screening/1/1.wav", headers={"Authorization": "Bearer forged"}).status_code == 403
    assert c.get(f"/api/raters/{rid}/screening/1/1.wav").content == responses[0].content  # stable on reload
    assert screening_seed(c.ctx, rid) != screening_seed(c.ctx, "someone-else")  # a key per rater
    for bad in ([1] * 5, [0] * 6, [4] * 6, ["1"] * 6):
        assert c.post(f"/api/raters/{rid}/screening", json={"answers": bad}).status_code == 422, bad

    seed = screening_seed(c.ctx, rid)
    wrong = [(t + 1) % 3 + 1 for t in screening.targets(seed, 6)]
    assert c.post(f"/api/raters/{rid}/screening", json={"answers": wrong}).json() == {"done": True}
    row = c.ctx.repo.crowd(rid)
    assert (row.screening_score, row.screening_trials, row.screening_passed) == (0, 6, False)
    right = [t + 1 for t in screening.targets(seed, 6)]
    c.post(f"/api/raters/{rid}/screening", json={"answers": right})  # a retry cannot replace the first result
    assert c.ctx.repo.crowd(rid).screening_passed is False
    assert c.get(f"/api/raters/{rid}/screening").json()["done"]
    # failing does not stop the rater (the analysis drops their votes when the config says so)
    assert _loc(c.get(f"/?rater={rid}", follow_redirects=False)) == f"/trials?rater={rid}"

    # a pass needs pass_min of 6: 5 right passes, 4 do not
    for n_right, passed in ((5, True), (4, False)):
        other = f"screen-{n_right}"
        c.post(f"/api/raters/{other}/consent")
        c.post(f"/api/raters/{other}/volume-check")
        key = screening.targets(screening_seed(c.ctx, other), 6)
        ans = [t + 1 if i < n_right else (t + 1) % 3 + 1 for i, t in enumerate(key)]
        c.post(f"/api/raters/{other}/screening", json={"answers": ans})
        assert (c.ctx.repo.crowd(other).screening_score, c.ctx.repo.crowd(other).screening_passed) == (n_right, passed)


def test_instructions_state_trials_and_time(client):
    c = client
    rid = "reader"
    c.post(f"/api/raters/{rid}/consent")
    text = " ".join(c.get(f"/instructions?rater={rid}").text.split())
    # 2 trials + practice of 10 s clips: 2 min setup + 3 x (2 x 10 s + 4 x 6 s) + 6 x (3 x 0.3 + 2 x 0.1 + 4 s)
    minutes = int(np.ceil((120 + 3 * (20 + 24) + 6 * (0.9 + 0.2 + 4)) / 60))
    assert f"This study has 2 trials, after one practice trial that is not counted, and takes about {minutes} " \
           "minutes, including a short headphone check (6 rounds)" in text
    assert f"at least {MIN_LISTEN:g} s" in text and f"shorter than {2 * MIN_LISTEN:g} s" in text
    assert "<kbd>Enter</kbd>" in text
    consent_page = " ".join(c.get("/consent?rater=newcomer").text.split())
    assert f"This study has 2 trials (plus one practice trial) and takes about {minutes} minutes." in consent_page


# -- panels -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fixed", [None, "PANEL-42"])
def test_panel_completion_code_page(tmp_path, media_bytes, fixed):
    d = build_study(tmp_path / "study", media_bytes, panel={"completion_code": fixed, "name": "MTurk"},
                    prolific={"completion_code": CODE})
    clock = Clock()
    app = create_app(d, db_url=f"sqlite:///{tmp_path / 'v.sqlite'}", admin_token="adm", clock=clock)
    with TestClient(app) as c:
        c.clock, c.ctx = clock, app.state.ctx
        rid = "panel-rater"  # not from Prolific: the page shows a code even though the study has `prolific:`
        c.post(f"/api/raters/{rid}/consent")
        c.post(f"/api/raters/{rid}/volume-check")
        out = {"next": c.get(f"/api/raters/{rid}/state").json()["trial"]["token"]}
        while out["next"]:
            out = _answer(c, rid, out["next"])
        page = c.get(f"/done?rater={rid}")
        assert page.status_code == 200
        assert (fixed or out["completion_code"]) in page.text and "submit it on MTurk" in page.text
    with TestClient(app) as stranger:  # knows the id, not the session: a rater's own code stays hidden
        page = stranger.get(f"/done?rater={rid}").text
        assert (fixed in page) if fixed else (out["completion_code"] not in page and "Show my completion code" in page)
