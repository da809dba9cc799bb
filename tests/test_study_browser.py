"""A whole rater session in a real browser: headless Chromium (Debian) driven by Selenium against `vm-eval study
serve`'s app on loopback, on a study built from demo runs. What the API tests cannot see is checked in the page:
the answers stay locked until both soundtracks have played for the minimum time (counted by the page from the
video's progress), only one soundtrack plays at a time, the playing one follows the video's clock, the video is
muted, and the page never shows a system name or run id."""
from __future__ import annotations

import re

import pytest
from browser import chrome, serve, wait_until

from studies.create import CreateRequest, create_study
from studies.server import create_app
from studies.server.storage import Repository
from vm_eval.runner import RunConfig, execute

MODELS = ("ground-truth", "random-retrieval", "beat-sync")
MIN_LISTEN = 1.0

# The page's state, read in one round trip: which soundtracks are playing, where each clock is, the lock.
PAGE_STATE = """
const v = document.getElementById('video'), a = document.getElementById('audio-A'),
      b = document.getElementById('audio-B');
return {video_t: v.currentTime, video_paused: v.paused, video_muted: v.muted,
        a_playing: !a.paused, b_playing: !b.paused, a_t: a.currentTime, b_t: b.currentTime,
        locked: Array.from(document.querySelectorAll('#questions fieldset')).map(f => f.disabled),
        next_disabled: document.getElementById('next').disabled,
        progress: document.getElementById('progress-text').textContent,
        error: document.getElementById('error').hidden ? '' : document.getElementById('error').textContent};
"""


@pytest.fixture(scope="module")
def study(data_dir, tmp_path_factory):
    results = tmp_path_factory.mktemp("browser-results")
    for m in MODELS:
        execute(RunConfig(model=m, split="test", dataset="demo", data=data_dir, results=results,
                          metrics=["duration-error"], limit=2, progress=False))
    out = tmp_path_factory.mktemp("browser-study") / "study"
    create_study(CreateRequest(runs=["random-retrieval", "beat-sync", "ground-truth"], out=out, results=results,
                               data=data_dir, raters=1, trials_per_rater=3, catch_rate=0.34,
                               min_listen_s=MIN_LISTEN, allow_ties=True, progress=False, log=lambda msg: None))
    return out


def _answer_trial(driver, index: int, total: int) -> None:
    wait_until(lambda: driver.execute_script(PAGE_STATE)["progress"] == f"Trial {index} of {total}",
               what=f"trial {index} to load", state=lambda: driver.execute_script(PAGE_STATE))
    s = driver.execute_script(PAGE_STATE)
    assert s["locked"] and all(s["locked"]) and s["next_disabled"], "answers must be locked before listening"
    assert not s["a_playing"] and not s["b_playing"]

    driver.find_element("id", "play-A").click()
    wait_until(lambda: driver.execute_script(PAGE_STATE)["a_playing"], what="soundtrack A to play")
    wait_until(lambda: driver.execute_script(PAGE_STATE)["video_t"] > 0.4, what="the video to advance")
    s = driver.execute_script(PAGE_STATE)
    assert s["a_playing"] and not s["b_playing"] and not s["video_paused"] and s["video_muted"]
    assert abs(s["a_t"] - s["video_t"]) < 0.35, s  # A follows the video's clock
    assert all(s["locked"]), "one soundtrack heard: still locked"

    driver.find_element("id", "play-B").click()
    wait_until(lambda: driver.execute_script(PAGE_STATE)["b_playing"], what="soundtrack B to play")
    s = driver.execute_script(PAGE_STATE)
    assert s["b_playing"] and not s["a_playing"], "switching must stop A: one soundtrack at a time"
    assert abs(s["b_t"] - s["video_t"]) < 0.35, s

    # Unlocks once both have played MIN_LISTEN s; the page may have needed A again if the clip ended early.
    def unlocked() -> bool:
        st = driver.execute_script(PAGE_STATE)
        if st["a_playing"] and st["b_playing"]:
            raise AssertionError(f"both soundtracks playing at once: {st}")
        if not st["a_playing"] and not st["b_playing"]:  # the clip ended: play A again from the start
            driver.find_element("id", "play-A").click()
        return not any(st["locked"])

    wait_until(unlocked, timeout=30, interval=0.05, what="the answers to unlock")
    assert driver.find_element("id", "next").get_property("disabled"), "next needs every question answered"
    for fs in driver.find_elements("css selector", "#questions fieldset"):
        fs.find_element("css selector", "input[value='A']").click()
    wait_until(lambda: not driver.find_element("id", "next").get_property("disabled"), what="next to enable")
    driver.find_element("id", "next").click()


def test_a_whole_rater_session_in_chromium(study):
    app = create_app(study, admin_token="admin")
    with serve(app) as url, chrome() as driver:
        driver.get(f"{url}/?rater=browser-rater-1")
        wait_until(lambda: "/consent" in driver.current_url, what="the consent page")
        driver.find_element("id", "agree").click()
        wait_until(lambda: "/instructions" in driver.current_url, what="the instructions page")
        driver.find_element("css selector", "a.button.primary").click()
        wait_until(lambda: "/volume" in driver.current_url, what="the volume check")
        heard = driver.find_element("id", "heard")
        assert heard.get_property("disabled"), "the volume check unlocks only once the tone has played"
        driver.execute_script("document.getElementById('tone').play()")
        wait_until(lambda: not heard.get_property("disabled"), what="the tone to play")
        heard.click()
        wait_until(lambda: "/trials" in driver.current_url, what="the trials page")

        total = int(wait_until(lambda: re.search(r"Trial 1 of (\d+)", driver.execute_script(PAGE_STATE)["progress"]),
                               what="the first trial").group(1))
        assert total == 3
        page_text = []
        for i in range(1, total + 1):
            _answer_trial(driver, i, total)
            page_text.append(driver.page_source)
        wait_until(lambda: "/done" in driver.current_url, what="the completion page",
                   state=lambda: (driver.current_url, driver.execute_script(PAGE_STATE)))
        code = driver.find_element("id", "completion-code").text.strip()
        assert len(code) >= 6

        driver.get(f"{url}/?rater=browser-rater-1")  # coming back: still done, same code
        wait_until(lambda: "/done" in driver.current_url, what="the completion page on return")
        assert driver.find_element("id", "completion-code").text.strip() == code

    html = "\n".join(page_text)
    for name in (*MODELS, "run_id", "results"):
        assert name not in html, f"{name!r} visible to the rater"
    repo = Repository(f"sqlite:///{study / 'votes.sqlite'}")
    votes = repo.votes()
    n_questions = len({v.question for v in votes})
    assert len(votes) == total * n_questions and {v.answer for v in votes} == {"A"}
    assert len({v.trial_id for v in votes}) == total
    for v in votes:  # the server's own count of the page's play / pause events met the minimum on both sides
        events = repo.events("browser-rater-1", v.trial_id)
        assert {e.side for e in events if e.event == "play"} == {"A", "B"}


# -- a Prolific rater: entry, headphone check, practice trial, trials by keyboard, completion redirect -----------------
PID, STUDY_ID, SESSION_ID = "64b0c1d2e3f405162738a9b0", "65c1d2e3f405162738a9b0c1", "66d2e3f405162738a9b0c1d2"
CC = "CRWD2024"

# Where the Next button sits in the viewport, and whether it is the element actually shown at its centre.
NEXT_GEOMETRY = """
const b = document.getElementById('next').getBoundingClientRect();
const hit = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
return {top: b.top, bottom: b.bottom, height: b.height, inner_h: window.innerHeight, inner_w: window.innerWidth,
        scroll_y: window.scrollY, on_top: hit !== null && hit.closest('#next') !== null};
"""
BADGES = "return ['A', 'B'].map(s => document.getElementById('listened-' + s).textContent);"


@pytest.fixture(scope="module")
def crowd_study(study, tmp_path_factory):
    """A Prolific study on the same runs: practice trial, a short headphone check, completion URL on the server."""
    import json
    from pathlib import Path

    import yaml

    systems = json.loads((study / "systems.json").read_text())
    results = Path(next(iter(systems.values()))["run_path"]).parents[3]  # RESULTS/dataset/split/model/run
    cfg = tmp_path_factory.mktemp("crowd-config") / "study.yaml"
    cfg.write_text(yaml.safe_dump({
        "practice_trial": True, "screening": {"interval_s": 0.3, "gap_s": 0.1},
        "prolific": {"completion_code": CC, "completion_url": "/prolific-finished"}}))
    out = tmp_path_factory.mktemp("crowd-study") / "study"
    create_study(CreateRequest(runs=["random-retrieval", "beat-sync"], out=out, results=results, config=cfg,
                               raters=1, trials_per_rater=2, catch_rate=0.0, min_listen_s=MIN_LISTEN,
                               progress=False, log=lambda msg: None))
    return out


def _answer_by_keyboard(driver, label: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    keys = ActionChains(driver)
    wait_until(lambda: driver.execute_script(PAGE_STATE)["progress"] == label, what=f"{label!r} to load",
               state=lambda: driver.execute_script(PAGE_STATE))
    s = driver.execute_script(PAGE_STATE)
    assert all(s["locked"]) and s["next_disabled"]
    assert driver.find_element("id", "practice-note").is_displayed() == (label == "Practice trial")
    assert driver.find_element("id", "listen-hint").text == \
        f"Listen to each soundtrack for at least {MIN_LISTEN:g} s to unlock the answers."
    geo = driver.execute_script(NEXT_GEOMETRY)  # without scrolling, at 1366 x 768
    assert geo["scroll_y"] == 0 and geo["inner_h"] <= 768 and geo["inner_w"] <= 1366, geo
    assert 0 <= geo["top"] and geo["bottom"] <= geo["inner_h"] and geo["height"] >= 40 and geo["on_top"], geo

    keys.send_keys("a").perform()
    wait_until(lambda: driver.execute_script(PAGE_STATE)["a_playing"], what="key A to play soundtrack A")
    wait_until(lambda: driver.execute_script(BADGES)[0].startswith("\u2713"), timeout=15,
               what="soundtrack A's listened mark", state=lambda: driver.execute_script(BADGES))
    assert not driver.execute_script(BADGES)[1].startswith("\u2713")
    assert driver.find_element("id", "listen-hint").text == \
        f"Listen to soundtrack B for at least {MIN_LISTEN:g} s to unlock the answers."
    keys.send_keys("b").perform()
    wait_until(lambda: driver.execute_script(PAGE_STATE)["b_playing"], what="key B to play soundtrack B")
    assert not driver.execute_script(PAGE_STATE)["a_playing"]

    def unlocked() -> bool:
        st = driver.execute_script(PAGE_STATE)
        if not st["a_playing"] and not st["b_playing"]:  # the clip ended before B had its minimum: replay B
            keys.send_keys("b").perform()
        return not any(st["locked"])

    wait_until(unlocked, timeout=30, interval=0.05, what="the answers to unlock")
    assert [b.startswith("\u2713") for b in driver.execute_script(BADGES)] == [True, True]
    keys.send_keys(" ").perform()  # Space pauses
    wait_until(lambda: not (st := driver.execute_script(PAGE_STATE))["a_playing"] and not st["b_playing"],
               what="Space to pause")
    n_questions = len(s["locked"])
    for _ in range(n_questions):
        keys.send_keys("2").perform()  # answers the highlighted question with B, then the next one is highlighted
    checked = driver.execute_script("return Array.from(document.querySelectorAll('#questions input:checked'))"
                                    ".map(i => i.value);")
    assert checked == ["B"] * n_questions
    wait_until(lambda: not driver.find_element("id", "next").get_property("disabled"), what="next to enable")
    keys.send_keys("\ue007").perform()  # Enter


def test_prolific_rater_in_chromium(crowd_study):
    from fastapi.responses import HTMLResponse
    from selenium.webdriver.common.action_chains import ActionChains

    from studies import screening
    from studies.server.crowd import screening_seed

    app = create_app(crowd_study, admin_token="admin")
    app.add_api_route("/prolific-finished", lambda: HTMLResponse("<h1>Prolific: submission complete</h1>"))
    ctx = app.state.ctx
    with serve(app) as url, chrome(width=1366, height=768) as driver:
        driver.get(f"{url}/?PROLIFIC_PID={PID}&STUDY_ID={STUDY_ID}&SESSION_ID={SESSION_ID}")
        wait_until(lambda: "/consent" in driver.current_url, what="the consent page")
        driver.find_element("id", "agree").click()
        wait_until(lambda: "/instructions" in driver.current_url, what="the instructions page")
        outline = driver.find_element("id", "study-outline").text
        assert "This study has 2 trials, after one practice trial that is not counted" in outline
        assert re.search(r"takes about \d+ minutes, including a short headphone check \(6 rounds\)", outline)
        driver.find_element("css selector", "a.button.primary").click()
        wait_until(lambda: "/volume" in driver.current_url, what="the volume check")
        driver.execute_script("document.getElementById('tone').play()")
        heard = driver.find_element("id", "heard")
        wait_until(lambda: not heard.get_property("disabled"), what="the tone to play")
        heard.click()

        # the headphone check (answered right: the test knows the server's key, the page does not)
        wait_until(lambda: "/screening" in driver.current_url, what="the headphone check")
        key = screening.targets(screening_seed(ctx, PID), 6)
        for rnd, target in enumerate(key):
            wait_until(lambda: driver.find_element("id", "round-text").text == f"Round {rnd + 1} of 6",
                       what=f"screening round {rnd + 1}")
            choice = driver.find_element("css selector", f".interval[data-interval='{target + 1}']")
            assert choice.get_property("disabled"), "answers open only once the round has played"
            driver.find_element("id", "play-round").click()
            wait_until(lambda: not choice.get_property("disabled"), what=f"round {rnd + 1} to play")
            choice.click()

        # practice trial, then the two trials; keyboard only
        wait_until(lambda: "/trials" in driver.current_url, what="the trials page")
        wait_until(lambda: driver.execute_script(PAGE_STATE)["progress"] == "Practice trial", what="the practice")
        driver.execute_script("const i = document.createElement('input'); i.type = 'text'; i.id = 'typing';"
                              "document.body.prepend(i);")
        driver.find_element("id", "typing").click()
        ActionChains(driver).send_keys("ab12 ").perform()  # typing in a text field triggers no shortcut
        st = driver.execute_script(PAGE_STATE)
        assert not st["a_playing"] and not st["b_playing"] and all(st["locked"])
        assert driver.find_element("id", "typing").get_property("value") == "ab12 "
        driver.execute_script("document.getElementById('typing').remove(); document.activeElement.blur();")
        _answer_by_keyboard(driver, "Practice trial")
        for i in (1, 2):
            _answer_by_keyboard(driver, f"Trial {i} of 2")

        wait_until(lambda: "/prolific-finished" in driver.current_url, what="the completion redirect",
                   state=lambda: driver.current_url)
        assert driver.current_url == f"{url}/prolific-finished?cc={CC}"
        assert "submission complete" in driver.page_source

    crowd = ctx.repo.crowd(PID)
    assert (crowd.prolific_study_id, crowd.prolific_session_id) == (STUDY_ID, SESSION_ID)
    assert (crowd.screening_score, crowd.screening_passed) == (6, True)
    from studies.server.crowd import vote_records

    rows = vote_records(ctx.repo, ctx.study.design, ctx.study.manifest_sha256)
    n_q = len(ctx.study.config.questions)
    assert len(rows) == 3 * n_q and sum(r["is_practice"] for r in rows) == n_q
    assert {r["answer"] for r in rows} == {"B"} and {r["screening_passed"] for r in rows} == {True}
