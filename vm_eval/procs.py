"""Child processes that end with their parent.

Nothing vm-eval starts may outlive it: not a Streamlit server still serving after `vm-eval leaderboard` was
stopped, not a scoring worker still scoring after `vm-eval run` was killed. Two mechanisms, since neither covers
every case:

- `die_with_parent` (Linux): the kernel signals the process when its parent dies, `kill -9` included
  (PR_SET_PDEATHSIG). The signal comes when the parent *thread* that started the child ends, so children are
  started from a thread that outlives them (vm-eval starts them from its main thread). `watch_parent` is the
  portable fallback: a thread that exits the process once its parent has gone.
- `run_child`: the parent forwards SIGTERM, SIGINT and SIGHUP to the child's process group, waits for it, and
  kills the group when it has not exited within a grace period.
"""
from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# What run_child forwards. Windows has no SIGHUP (nor SIGKILL), and this module must import there: the local
# executor uses it.
FORWARDED = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, n))


@functools.cache
def _prctl():
    """libc's prctl, or None off Linux. Resolved once, in the parent: a preexec_fn must not dlopen after fork."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent(parent_pid: int, sig: int | None = None) -> bool:
    """Ask the kernel to send `sig` (default SIGKILL) to this process when its parent dies (Linux). `parent_pid` is
    the process that started this one: if it is already gone (it died before the request was in place), exit now
    with 128 + `sig`. Returns False where there is no such mechanism; `watch_parent` still works there."""
    prctl = _prctl()
    if prctl is None:
        return False
    sig = signal.SIGKILL if sig is None else sig
    # prctl is variadic and reads unsigned longs: pass them as such, not as C ints.
    if prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(sig), ctypes.c_ulong(0), ctypes.c_ulong(0),
             ctypes.c_ulong(0)) != 0:
        return False
    if os.getppid() != parent_pid:
        os._exit(128 + sig)
    return True


def watch_parent(parent_pid: int, interval_s: float = 0.5) -> threading.Thread:
    """Start a daemon thread that exits this process (code 1, no clean-up) within `interval_s` seconds of its
    parent `parent_pid` dying, seen as a change of parent (orphans are re-parented to init or a subreaper). Works
    on every platform, and even when the parent died before this was called; it cannot interrupt code that
    holds the GIL, which `die_with_parent` can."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        os._exit(1)

    thread = threading.Thread(target=watch, name="vm-eval-watch-parent", daemon=True)
    thread.start()
    return thread


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):  # the group has already gone
        pass


def _child_setup(parent_pid: int) -> None:
    """preexec_fn: a process group of its own (signals reach it only through us, once), and SIGTERM, which lets
    it shut down cleanly, if we die without forwarding one."""
    os.setpgid(0, 0)
    die_with_parent(parent_pid, signal.SIGTERM)


def run_child(cmd: Sequence[str], env: Mapping[str, str] | None = None, grace_s: float = 10.0) -> int:
    """Run `cmd` in its own process group until it exits; return its exit code (128 + N when signal N ended it).

    SIGTERM, SIGINT and SIGHUP sent to this process are forwarded to the child's group, which then has `grace_s`
    seconds to exit before the group is killed (SIGKILL). Where `die_with_parent` works the child also gets SIGTERM
    when this process dies without forwarding anything (`kill -9`). Call from the main thread: it installs signal
    handlers (the previous ones are restored on return)."""
    _prctl()  # resolve before forking
    child = subprocess.Popen(list(cmd), env=None if env is None else dict(env),
                             preexec_fn=functools.partial(_child_setup, os.getpid()))
    killer: list[threading.Timer] = []

    def forward(sig: int, frame) -> None:
        _signal_group(child.pid, sig)
        if not killer:  # the first signal starts the grace period; later ones are only forwarded
            killer.append(threading.Timer(grace_s, _signal_group, (child.pid, signal.SIGKILL)))
            killer[0].daemon = True
            killer[0].start()

    # Installed after the fork, so the child never runs them. A signal before this line ends us with the default
    # action, and the child gets SIGTERM from the kernel.
    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        code = child.wait()  # a forwarded signal interrupts the wait only to run `forward`
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if killer:
            killer[0].cancel()
        if child.returncode is None:  # an exception ended the wait: take the child with us
            _signal_group(child.pid, signal.SIGKILL)
            child.wait()
    return 128 - code if code < 0 else code
