"""A throwaway PostgreSQL server for tests and benchmarks: Debian's server binaries (scripts/install.sh installs the
`postgresql` package), a cluster made by initdb in a fresh temporary folder, listening on 127.0.0.1 at a free port
with its unix socket inside that folder, trust authentication (loopback only), stopped with ``pg_ctl stop -m fast``
and deleted afterwards.

initdb and postgres refuse to run as root; as root (CI runs the tests as root) they run as the unprivileged
``postgres`` user (created by the Debian package; else ``nobody``) through ``runuser``, with the folder given to it.

The `postgres` fixture (session scope) skips its tests, with the reason, only when the binaries cannot be found.
"""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "vm_eval"
NEEDED = ("initdb", "pg_ctl", "postgres")


def find_bindir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: $VM_EVAL_PG_BIN, else Debian's newest
    /usr/lib/postgresql/*/bin, else the PATH; None if none has all three."""
    candidates = [os.environ.get("VM_EVAL_PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                         if Path(p).parent.name.isdigit() else 0, reverse=True)
    which = shutil.which("initdb")
    candidates.append(str(Path(which).parent) if which else "")
    for c in candidates:
        if c and all((Path(c) / b).is_file() for b in NEEDED):
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    """A running throwaway server; `url(db)` is the SQLAlchemy URL of database `db` on it."""

    bindir: Path
    root: Path  # temporary folder: data/, the socket, the log
    port: int
    run_as: str | None  # unprivileged user the server runs as (when started by root)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        """Create database `name` (letters, digits, _) and return its URL."""
        import psycopg

        assert name.replace("_", "").isalnum(), name
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self) -> str:
        p = self.root / "server.log"
        return p.read_text(errors="replace") if p.exists() else ""


def _cmd(server_user: str | None, *argv: str) -> list[str]:
    return ["runuser", "-u", server_user, "--", *argv] if server_user else list(argv)


def start(bindir: Path, *, fsync: bool = False, max_connections: int = 200) -> PgServer:
    """initdb + start a server in a new temporary folder. Commits are not waited for on disk
    (synchronous_commit=off: a crash may lose the last commits, never corrupts; the durability of SQLite in WAL mode
    with synchronous=NORMAL, the server's SQLite setting). `fsync=False` (tests: a crash loses nothing that matters)
    also skips flushing to disk at all; benchmarks keep fsync on."""
    root = Path(tempfile.mkdtemp(prefix="vm-eval-pg-"))
    run_as = None
    if os.geteuid() == 0:
        run_as = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if run_as is None:
            raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists for initdb")
        pw = pwd.getpwnam(run_as)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    server = PgServer(bindir, root, _free_port(), run_as)
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
    subprocess.run(_cmd(run_as, str(bindir / "initdb"), "-D", str(server.data), "-U", SUPERUSER, "--auth=trust",
                        "-E", "UTF8", "--no-locale", "--no-sync"),
                   check=True, capture_output=True, env=env, cwd=root)
    opts = [f"-p {server.port}", "-c listen_addresses=127.0.0.1", f"-k {root}",
            f"-c max_connections={max_connections}", "-c synchronous_commit=off"]
    if not fsync:
        opts += ["-c fsync=off", "-c full_page_writes=off"]
    r = subprocess.run(_cmd(run_as, str(bindir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(server.data),
                            "-l", str(root / "server.log"), "-o", " ".join(opts)),
                       capture_output=True, text=True, env=env, cwd=root)
    if r.returncode != 0:
        log = server.log()
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {r.stderr.strip()} {log[-2000:]}")
    return server


def stop(server: PgServer) -> None:
    """Stop the server (fast shutdown: open sessions are ended) and delete its folder."""
    try:
        subprocess.run(_cmd(server.run_as, str(server.bindir / "pg_ctl"), "stop", "-m", "fast", "-w", "-t", "60",
                            "-D", str(server.data)), capture_output=True, cwd=server.root)
    finally:
        shutil.rmtree(server.root, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@contextlib.contextmanager
def running(**kwargs) -> Iterator[PgServer]:
    """A throwaway server for the duration of the block (RuntimeError if the binaries are missing)."""
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(missing_reason())
    server = start(bindir, **kwargs)
    try:
        yield server
    finally:
        stop(server)


def missing_reason() -> str:
    return (f"PostgreSQL server binaries ({', '.join(NEEDED)}) not found in $VM_EVAL_PG_BIN, "
            "/usr/lib/postgresql/*/bin or the PATH: install Debian's `postgresql` package (scripts/install.sh does)")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgServer]:
    """A throwaway PostgreSQL server shared by the session's tests; each test creates its own database."""
    if find_bindir() is None:
        pytest.skip(missing_reason())
    with running() as server:
        yield server
