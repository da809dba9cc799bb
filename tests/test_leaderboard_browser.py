"""The leaderboard in a real browser: `vm-eval leaderboard` (Streamlit, headless) on a results folder, loaded by
Debian's headless Chromium at 1366 px. The summary (what a bare URL opens) has one ranked row per trained,
non-reference system, the references in a table of their own, a forest plot, no Deploy button and no horizontal
scrolling; the full table (the data grid's accessible table) has one row per stored run. Then Ctrl-C (SIGINT to
`vm-eval leaderboard` alone) stops its Streamlit child too (tests/test_processes.py does SIGTERM and kill -9).
Screenshots are saved for people to look at ($VM_EVAL_ARTIFACTS, default ./artifacts)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from browser import chrome, wait_until
from leaderboard_results import shared_results

REPO = Path(__file__).resolve().parents[1]
ROWS = ("return Array.from(document.querySelectorAll(\"[data-testid='stDataFrame'] [role='row']\"))"
        ".filter(r => r.querySelector(\"[role='gridcell']\")).length")  # body rows: the header has no gridcell
SUMMARY = """
const rows = id => Array.from(document.querySelectorAll(`table[data-testid='${id}'] tbody tr`));
const ranked = rows('summary-ranked'), refs = rows('summary-references');
const plots = Array.from(document.querySelectorAll("[data-testid='stVegaLiteChart'] canvas, "
                                                  + "[data-testid='stVegaLiteChart'] svg.marks"));
const tables = Array.from(document.querySelectorAll("table.vmsum"));
return {ranked: ranked.map(r => r.dataset.run), untrained: ranked.filter(r => r.textContent.includes('untrained'))
          .map(r => r.dataset.run), references: refs.map(r => r.dataset.run),
        plots: plots.filter(p => p.getBoundingClientRect().width > 100).length,
        pageOverflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
        tableOverflow: Math.max(0, ...tables.map(t => t.scrollWidth - t.parentElement.clientWidth)),
        plotOverflow: Math.max(0, ...plots.map(p => p.getBoundingClientRect().right - window.innerWidth)),
        deploy: Array.from(document.querySelectorAll('button')).some(b => b.textContent.trim() === 'Deploy')};
"""


def _children(pid: int) -> list[int]:
    """Live child processes of `pid` (from /proc)."""
    out = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            text = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        state, ppid = text[text.rindex(")") + 2:].split()[:2]
        if int(ppid) == pid and state not in "ZX":
            out.append(int(p))
    return out


def _alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2:].split()[0] not in "ZX"


@pytest.fixture(scope="module")
def results(data_dir, tmp_path_factory):
    return shared_results(data_dir, tmp_path_factory)  # the AppTest module's folder when both run


def test_summary_and_full_table_in_a_browser(results, cli_env):
    from vm_eval.store.run import RunStore

    results, runs = results
    stored = len(RunStore(results).runs())
    metas = [r.meta() for r in runs.values()]
    ranked = {m["run_id"] for m in metas if m["model_info"]["trained"] and m["model_info"]["family"] != "reference"}
    untrained = {m["run_id"] for m in metas if not m["model_info"]["trained"]}
    references = {m["run_id"] for m in metas if m["model_info"]["family"] == "reference"}
    assert len(ranked) == 2 and len(untrained) == 1 and len(references) == 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(results.parent / "leaderboard.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "vm_eval.cli", "leaderboard", "--results", str(results),
                               "--port", str(port)], env=cli_env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    artifacts = Path(os.environ.get("VM_EVAL_ARTIFACTS", REPO / "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    try:
        with chrome(1366, 900) as driver:
            def page_up(url: str) -> bool:
                if server.poll() is not None:
                    log_text = (results.parent / "leaderboard.log").read_text()
                    raise AssertionError(f"vm-eval leaderboard exited: {log_text}")
                try:
                    driver.get(url)
                    return True
                except Exception:  # noqa: BLE001 - not listening yet
                    return False

            wait_until(lambda: page_up(f"http://127.0.0.1:{port}/"), 90, 0.5, what="the leaderboard to answer")
            summary = wait_until(lambda: (lambda d: d if d["ranked"] and d["plots"] else None)(
                driver.execute_script(SUMMARY)), 90, 0.5, what="the summary table and a forest plot",
                state=lambda: driver.page_source[-2000:])
            shot = artifacts / "leaderboard-summary.png"
            driver.save_screenshot(str(shot))
            print(f"screenshot: {shot}")
            driver.get(f"http://127.0.0.1:{port}/?view=runs")
            rows = wait_until(lambda: driver.execute_script(ROWS), 90, 0.5, what="the full table",
                              state=lambda: driver.page_source[-2000:])
            header = driver.execute_script("return Array.from(document.querySelectorAll(\"[data-testid='stDataFrame'] "
                                           "[role='columnheader']\")).map(e => e.textContent)")
            driver.save_screenshot(str(artifacts / "leaderboard-runs.png"))
        streamlit = _children(server.pid)
        server.send_signal(signal.SIGINT)  # to vm-eval only, as Ctrl-C in its terminal would (run_child forwards)
        code = server.wait(30)
        stopped = wait_until(lambda: not any(_alive(p) for p in streamlit), 10, 0.1, what="Streamlit to stop")
    finally:
        if server.poll() is None or any(_alive(p) for p in _children(server.pid)):
            os.killpg(server.pid, signal.SIGKILL)  # never leak a server into other tests
        server.wait(30)
        log.close()
    assert len(streamlit) == 1 and stopped and code == 0
    # one ranked row per trained non-reference system, then the untrained run badged; references apart
    assert set(summary["ranked"]) == ranked | untrained and set(summary["untrained"]) == untrained
    assert summary["ranked"][-1] in untrained  # badged runs come after the ranked ones
    assert set(summary["references"]) == references
    assert summary["plots"] >= 1 and not summary["deploy"]
    assert summary["pageOverflow"] <= 0 and summary["tableOverflow"] <= 0 and summary["plotOverflow"] <= 0, summary
    assert rows == stored == 5
    assert "run" in header and any(h.startswith("duration-error") for h in header)
    assert shot.stat().st_size > 10_000
