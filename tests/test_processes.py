"""No process outlives the command that started it: the local executor's scoring workers and multiprocessing's
resource tracker end when the driver is killed (`kill -9`, while units run, one of them holding the GIL, and before
the workers have started); the portable fallback (`procs.watch_parent`) works alone; `vm-eval leaderboard` stops
its Streamlit child on SIGTERM and on `kill -9`; `vm-eval study serve` starts no child and stops within seconds of
SIGTERM even while a client holds a request open. Processes are found through /proc (Linux)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser import wait_until
from test_study_server import build_study, media_bytes  # noqa: F401  media_bytes is a fixture used below

REPO = Path(__file__).resolve().parents[1]
GONE_S = 5.0  # how long a process may take to go once its parent has

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes through /proc")

# A driver of the local executor: 2 workers on units that mark their start, then sleep or spin far longer than the
# test. `running`: waits for the test's kill -9 once both units run. `early`: kills itself as soon as both workers
# are forked, before they have imported anything, so they meet a dead parent when they start. Either way it prints
# the pids to watch first.
DRIVER = '''
import json, os, signal, sys, threading, time
from multiprocessing import resource_tracker
from pathlib import Path
from vm_eval.executors import Unit, WorkerSpec, get_executor


def sleeper(marks):
    def run(name):
        (Path(marks) / name).touch()
        if name == "1":  # one C loop that never lets go of the GIL: no thread of this worker runs, only the kernel
            sum(range(10 ** 11))  # can stop it
        time.sleep(120)
    return run


def report_then(executor, mode, marks):
    while executor._pool is None or len(executor._pool._processes) < 2 or (
            mode == "running" and len(os.listdir(marks)) < 2):
        time.sleep(0.01)
    tracker = resource_tracker._resource_tracker._pid
    print(json.dumps({"workers": sorted(executor._pool._processes), "tracker": tracker}), flush=True)
    if mode == "early":
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    mode, marks = sys.argv[1:]
    executor = get_executor("local", 2)
    threading.Thread(target=report_then, args=(executor, mode, marks), daemon=True).start()
    for _ in executor.map(WorkerSpec(sleeper, (marks,)), [Unit(str(i), str(i)) for i in range(4)]):
        pass
'''


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None once it has been reaped."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = text[text.rindex(")") + 2:].split()[:2]  # the name in parentheses may hold spaces
    return state, int(ppid)


def alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in "ZX"  # a zombie has ended (an orphan's may wait long for its reaper)


def children(pid: int) -> list[int]:
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and (st := _stat(int(p))) is not None
                  and st[1] == pid and st[0] not in "ZX")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def assert_gone(pids: list[int], what: str) -> None:
    """All of `pids` end within GONE_S seconds; else they are killed (no leak into other tests) and the test fails."""
    try:
        wait_until(lambda: not any(alive(p) for p in pids), GONE_S, 0.05, what=f"{what} to exit",
                   state=lambda: {p: cmdline(p)[:100] for p in pids if alive(p)})
    finally:
        for p in pids:
            if alive(p):
                os.kill(p, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def answers(url: str, proc: subprocess.Popen, log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"the command exited ({proc.returncode}): {log.read_text()[-3000:]}")
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:  # not listening yet
        return False


def env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize("mode", ["running", "early"])
def test_kill_9_of_the_driver_ends_its_workers_and_resource_tracker(mode, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    marks = tmp_path / "marks"
    marks.mkdir()
    err = tmp_path / "driver.err"
    with open(err, "w") as f:
        proc = subprocess.Popen([sys.executable, str(driver), mode, str(marks)], env=env(), stdout=subprocess.PIPE,
                                stderr=f, text=True)
    try:
        pids = json.loads(proc.stdout.readline() or "null")  # printed once both workers exist (and run, if running)
        assert pids is not None, f"the driver exited ({proc.wait()}) before its workers started: {err.read_text()}"
        watched = pids["workers"] + [pids["tracker"]]
        if mode == "running":  # what /proc shows: two spawned workers and the tracker, all children of the driver
            kids = children(proc.pid)
            assert sorted(watched) == kids and all("multiprocessing" in cmdline(p) for p in kids)
            assert "resource_tracker" in cmdline(pids["tracker"]) and sorted(os.listdir(marks)) == ["0", "1"]
            proc.kill()
        assert proc.wait(30) == -signal.SIGKILL
        assert_gone(watched, "the orphaned workers and resource tracker")
    finally:
        proc.kill()
        proc.wait()


def test_watch_parent_alone_ends_an_orphan():
    """The portable fallback on its own (no prctl): a process watching its parent exits soon after it is killed."""
    leaf = ("import os, time; from vm_eval.procs import watch_parent; watch_parent(os.getppid()); print(flush=True); "
            "time.sleep(120)")
    middle = (f"import subprocess, sys, time; leaf = subprocess.Popen([sys.executable, '-c', {leaf!r}], "
              "stdout=subprocess.PIPE, text=True); leaf.stdout.readline(); print(leaf.pid, flush=True); "
              "time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", middle], env=env(), stdout=subprocess.PIPE, text=True)
    try:
        pid = int(proc.stdout.readline())  # once the leaf is watching
        assert children(proc.pid) == [pid]
        proc.kill()
        proc.wait(30)
        assert_gone([pid], "the orphan")
    finally:
        proc.kill()
        proc.wait()


def test_run_child_kills_a_child_that_ignores_sigterm_after_the_grace_period():
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(120)"
    parent = ("import sys; from vm_eval.procs import run_child; "
              f"sys.exit(run_child([sys.executable, '-c', {stubborn!r}], grace_s=0.5))")
    proc = subprocess.Popen([sys.executable, "-c", parent], env=env(), stdout=subprocess.PIPE, text=True)
    kids: list[int] = []
    try:
        proc.stdout.readline()  # the child has started ignoring SIGTERM
        kids = children(proc.pid)
        assert len(kids) == 1 and os.getpgid(kids[0]) == kids[0] != os.getpgid(proc.pid)  # a group of its own
        proc.terminate()
        assert proc.wait(GONE_S) == 128 + signal.SIGKILL  # forwarded, ignored, killed: the child's code, 128 + 9
        assert not alive(kids[0])
    finally:
        proc.kill()
        proc.wait()
        for p in kids:
            if alive(p):
                os.kill(p, signal.SIGKILL)


def _start(args: list[str], tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "command.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "vm_eval.cli", *args], env=env(), stdout=f,
                                stderr=subprocess.STDOUT)
    return proc, log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_stopping_the_leaderboard_stops_streamlit(sig, tmp_path):
    results = tmp_path / "results"
    results.mkdir()  # an empty results folder: the app still starts and answers its health check
    port = free_port()
    proc, log = _start(["leaderboard", "--results", str(results), "--port", str(port)], tmp_path)
    streamlit: list[int] = []
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/_stcore/health", proc, log), 90, 0.2,
                   what="Streamlit to answer")
        streamlit = children(proc.pid)
        assert len(streamlit) == 1 and "streamlit" in cmdline(streamlit[0])
        proc.send_signal(sig)  # to vm-eval only, as a service manager or `kill` would send it
        assert_gone(streamlit, "Streamlit")
        # On SIGTERM Streamlit stopped cleanly (code 0) and vm-eval returned its code, rather than dying of the signal.
        assert proc.wait(GONE_S) == (0 if sig == signal.SIGTERM else -signal.SIGKILL) and port_closed(port)
    finally:
        proc.kill()
        proc.wait()
        for p in streamlit:
            if alive(p):
                os.kill(p, signal.SIGKILL)


def test_study_serve_starts_no_child_and_stops_on_sigterm_despite_a_stalled_request(
        tmp_path, media_bytes):  # noqa: F811  the fixture imported above
    study = build_study(tmp_path / "study", media_bytes)
    port = free_port()
    proc, log = _start(["study", "serve", str(study), "--port", str(port), "--admin-token", "t"], tmp_path)
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/tone.wav", proc, log), 60, 0.2,
                   what="the study server to answer")
        assert children(proc.pid) == []  # uvicorn with one worker serves in this process
        with socket.create_connection(("127.0.0.1", port)) as client:
            # One whole request first, so the server is reading this connection; then a vote whose body never
            # arrives (a rater's stalled upload): the server waits on it.
            client.settimeout(10)
            client.sendall(b"GET /tone.wav HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.recv(65536).startswith(b"HTTP/1.1 200")
            client.sendall(b"POST /api/raters/r1/trials/t1/votes HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           b"application/json\r\nContent-Length: 1000\r\n\r\n{")
            time.sleep(0.3)  # for the server to parse the headers (nothing to observe before the body is read)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(GONE_S + 3)  # uvicorn's bounded graceful shutdown (3 s), then exit
            except subprocess.TimeoutExpired:
                raise AssertionError(f"still serving after SIGTERM: {log.read_text()[-2000:]}") from None
        assert port_closed(port)
    finally:
        proc.kill()
        proc.wait()
