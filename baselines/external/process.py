"""Running an upstream program: its own interpreter, a timeout that kills the whole process tree, a kept log."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

WRAPPERS = Path(__file__).resolve().parent / "wrappers"
LOG_TAIL_LINES = 25


class UpstreamError(RuntimeError):
    """Upstream failed on one clip: the message carries the command's fate and the tail of its log."""

    def __init__(self, system: str, problem: str, log: Path | None = None):
        self.system, self.problem, self.log = system, problem, log
        tail = log_tail(log) if log else ""
        msg = f"{system}: {problem}"
        if log:
            msg += f" (log: {log})"
        if tail:
            msg += "\n--- last lines of upstream's log ---\n" + tail
        super().__init__(msg)


class UpstreamTimeout(UpstreamError):
    pass


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = Path(log).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


@dataclass(frozen=True)
class Finished:
    returncode: int
    seconds: float
    log: Path


def run_upstream(system: str, argv: list[str], cwd: Path, log: Path, timeout_s: float,
                 env: dict[str, str] | None = None, check: bool = True) -> Finished:
    """Run `argv` in `cwd`, stdout and stderr appended to `log`; kill its process group after `timeout_s` seconds.

    Upstream scripts start workers (ffmpeg, dataloaders), so the timeout kills the whole group, not only the
    child. Raises :class:`UpstreamTimeout`, or :class:`UpstreamError` on a non-zero exit when `check`.
    """
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    t0 = time.perf_counter()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ (cd {cwd} && {' '.join(map(str, argv))})\n")
        f.flush()
        try:
            proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=full_env, stdout=f, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            raise UpstreamError(system, f"could not start {argv[0]}: {e}", log) from None
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            f.write(f"\n[vm-eval] killed after {timeout_s:g} s\n")
            f.flush()
            raise UpstreamTimeout(system, f"no result after {timeout_s:g} s (timeout); the process was killed", log)
        except BaseException:  # Ctrl-C in vm-eval must not leave an orphaned GPU job behind
            _kill_group(proc)
            raise
        f.write(f"[vm-eval] exit code {rc} after {time.perf_counter() - t0:.1f} s\n")
    if check and rc != 0:
        raise UpstreamError(system, f"upstream exited with code {rc}", log)
    return Finished(rc, time.perf_counter() - t0, log)


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def seeded_argv(python: Path, seed: int, script: Path, args: list[str], sys_path: list[Path] = ()) -> list[str]:
    """argv that runs `script args` under upstream's interpreter after seeding random / numpy / torch with `seed`."""
    argv = [str(python), str(WRAPPERS / "seeded.py"), "--seed", str(seed)]
    for p in sys_path:
        argv += ["--path", str(p)]
    return argv + ["--", str(script), *map(str, args)]
