"""Real-browser helpers for the end-to-end tests: Debian's headless Chromium driven by Selenium, and a uvicorn
server on a loopback socket in a background thread.

Chromium and chromedriver come from Debian (scripts/install.sh installs `chromium` and `chromium-driver`); Selenium's
own browser download cannot work here (no network), so the binary and driver paths are given explicitly. A missing
browser fails the test with the install command instead of skipping it: a skipped browser test proves nothing.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("VM_EVAL_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("VM_EVAL_CHROMEDRIVER", "/usr/bin/chromedriver")


def _need_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).is_file() or shutil.which(p))]
    if missing:
        pytest.fail(f"browser test needs {', '.join(missing)}: run scripts/install.sh (Debian packages chromium and "
                    "chromium-driver) or point VM_EVAL_CHROMIUM / VM_EVAL_CHROMEDRIVER at them", pytrace=False)


@contextlib.contextmanager
def chrome(width: int = 1280, height: int = 1000) -> Iterator:
    """A headless Chromium that may autoplay media (no user gesture in a driven session) with its sound muted."""
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--mute-audio",
                "--autoplay-policy=no-user-gesture-required", f"--window-size={width},{height}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1, what: str = "condition", state=None):
    """Poll `predicate()` until it returns something truthy; fail with `what` (and `state()`, the page's state
    at that moment, when given) after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}"
                                 + (f"; state: {state()}" if state else ""))
        time.sleep(interval)


@contextlib.contextmanager
def serve(app) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 30, what="uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
