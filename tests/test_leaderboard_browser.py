"""The leaderboard in a real browser: `vm-eval leaderboard` (Streamlit, headless) on a results folder, loaded by
Debian's headless Chromium; the results table in the DOM (the data grid's accessible table) has one row per
stored run. A screenshot is saved for people to look at ($VM_EVAL_ARTIFACTS, default ./artifacts)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from browser import chrome, wait_until
from leaderboard_results import make_results

REPO = Path(__file__).resolve().parents[1]
ROWS = ("return Array.from(document.querySelectorAll(\"[data-testid='stDataFrame'] [role='row']\"))"
        ".filter(r => r.querySelector(\"[role='gridcell']\")).length")  # body rows: the header has no gridcell


@pytest.fixture(scope="module")
def results(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("lb-browser") / "results"
    make_results(data_dir, out)
    return out


def test_table_rows_equal_stored_runs(results, cli_env):
    from vm_eval.store.run import RunStore

    stored = len(RunStore(results).runs())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(results.parent / "leaderboard.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "vm_eval.cli", "leaderboard", "--results", str(results),
                               "--port", str(port)], env=cli_env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        with chrome(1400, 1000) as driver:
            def page_up() -> bool:
                if server.poll() is not None:
                    raise AssertionError(f"vm-eval leaderboard exited: {(results.parent / 'leaderboard.log').read_text()}")
                try:
                    driver.get(f"http://127.0.0.1:{port}/?view=runs")
                    return True
                except Exception:  # noqa: BLE001 - not listening yet
                    return False

            wait_until(page_up, 90, 0.5, what="the leaderboard to answer")
            rows = wait_until(lambda: driver.execute_script(ROWS), 90, 0.5, what="the results table",
                              state=lambda: driver.page_source[-2000:])
            header = driver.execute_script("return Array.from(document.querySelectorAll(\"[data-testid='stDataFrame'] "
                                           "[role='columnheader']\")).map(e => e.textContent)")
            artifacts = Path(os.environ.get("VM_EVAL_ARTIFACTS", REPO / "artifacts"))
            artifacts.mkdir(parents=True, exist_ok=True)
            shot = artifacts / "leaderboard-runs.png"
            driver.save_screenshot(str(shot))
            print(f"screenshot: {shot}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        log.close()
    assert rows == stored == 3
    assert "run" in header and any(h.startswith("duration-error") for h in header)
    assert shot.stat().st_size > 10_000
