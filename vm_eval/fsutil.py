"""File-system helpers every module shares: atomic writes and content hashes."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_HASH_MEMO: dict[tuple, str] = {}
_RACY_NS = 3_000_000_000  # files changed this recently are hashed every time


@contextmanager
def atomic_target(path: str | Path) -> Iterator[str]:
    """Yield a temporary path beside `path`; on success it is renamed over `path`, on error removed.

    A reader therefore sees either the old file or the complete new one, never a half-written file, even if the
    process is killed (rename is atomic within a file system).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=p.suffix, dir=p.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results and datasets are meant to be shared
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_target(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, memoised per process by (path, size, mtime, ctime, inode) so re-hashing is free.

    A file changed within the last few seconds is not memoised: file-system timestamps are coarse, so a same-size
    rewrite within one tick would keep its stat key and return the old hash ("racy git" problem).
    """
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if key in _HASH_MEMO:
        return _HASH_MEMO[key]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _RACY_NS:
        _HASH_MEMO[key] = digest
    return digest


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def json_sha256(obj) -> str:
    """Hash of a JSON-serialisable object in canonical form (sorted keys, no whitespace)."""
    return text_sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str))


def span_key(path: str | Path, start_s: float, end_s: float) -> str:
    """Content key of a time span of a media file: its sha256 plus the span in seconds (never its name)."""
    return f"{file_sha256(path)}:{start_s:.6f}:{end_s:.6f}"
