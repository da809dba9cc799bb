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
