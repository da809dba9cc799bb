"""`vm-eval weights download`: fetch known checkpoints into the weights folder, resumably and atomically, and record
each file's sha256 in the folder's lock file, which :mod:`vm_eval.weights` checks on every load.

- Hub checkpoints come through ``huggingface_hub.hf_hub_download`` into the Hugging Face cache, so HF_ENDPOINT,
  HF_TOKEN and HF_HUB_CACHE / HF_HOME apply and a file the cache already holds is not fetched again; a connection cut
  mid-file is resumed by huggingface_hub with a Range request. The cached file is then hard-linked (copied across
  file systems) into the weights folder. huggingface_hub 2.x keeps no partial file when the command itself is
  interrupted, so that hub file starts over.
- URL checkpoints are fetched with urllib into ``<file>.part``; a cut connection, and the next command after an
  interrupted one, resume from the bytes already there with a Range request.
- A file takes its name ``<weights folder>/<name>/<file>`` by one rename, after its sha256 is in the lock: a
  ``.part`` file (or huggingface_hub's ``.incomplete`` one) is never taken for a checkpoint.
- Offline mode (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE: huggingface_hub's switch, which this project sets to mean "no
  network here") stops the whole command, URL checkpoints included, and prints one line per checkpoint saying what
  to fetch where. The command does not override it: ``HF_HUB_OFFLINE=0 vm-eval weights download ...`` lifts it for
  one command, and no library is patched at run time.
"""
from __future__ import annotations

import difflib
import fcntl
import http.client
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from vm_eval import weights as W
from vm_eval.errors import BadArgument, MissingPackage, UserError
from vm_eval.fsutil import file_sha256

CHUNK = 1 << 20
TIMEOUT_S = 30.0  # per socket operation
RETRIES = 5  # consecutive attempts that bring no new byte before giving up (huggingface_hub's http_get also uses 5)
RETRY_WAIT_S = 1.0
RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DownloadFailed(UserError):
    """A checkpoint file could not be fetched: network, HTTP status, or bytes other than the source announced."""


class _CutShort(ConnectionError):
    """The body ended before its announced length: the connection was cut."""


@dataclass
class FilePlan:
    file: str
    target: Path  # <weights folder>/<name>/<file>
    action: str  # "fetch" | "link" (in the Hugging Face cache) | "verified" | "kept" (present, not in the lock)
    size: int | None = None
    resume_at: int = 0  # bytes of a URL file's .part left by an earlier command


@dataclass
class CheckpointPlan:
    ck: W.Checkpoint
    folder: Path
    files: list[FilePlan] = field(default_factory=list)
    elsewhere: str = ""  # found outside the weights folder (explicit path, torch's cache): nothing to fetch
    problem: str = ""  # why it cannot be fetched

    @property
    def to_fetch(self) -> list[FilePlan]:
        return [f for f in self.files if f.action in ("fetch", "link")]


def resolve(names: Iterable[str], for_names: Iterable[str] = (), everything: bool = False) -> list[str]:
    """Checkpoint names in order, each once: the NAMEs, then what each --for metric or model needs; or every one."""
    names, for_names = list(names), list(for_names)
    if everything:
        return list(W.KNOWN)
    if not names and not for_names:
        raise BadArgument("name the checkpoints to fetch (see `vm-eval weights`), or --for METRIC_OR_MODEL, or --all")
    out: list[str] = []
    for n in names:
        if n not in W.KNOWN:
            raise BadArgument(_unknown("checkpoint", n, list(W.KNOWN)) + " (see `vm-eval weights`)")
        out.append(n)
    for n in for_names:
        needed = _needed_by(n)
        print(f"--for {n}: {', '.join(needed) or 'needs no pretrained checkpoint'}")
        out.extend(needed)
    return list(dict.fromkeys(out))


def _needed_by(name: str) -> tuple[str, ...]:
    """The checkpoints a metric, a model or a metric set (@NAME, a published table's columns) needs."""
    from vm_eval.metric_sets import SET_PREFIX, expand_metric_names
    from vm_eval.registries import METRICS, MODELS
    from vm_eval.registry import RegistryError

    if name.startswith(SET_PREFIX):
        return tuple(dict.fromkeys(w for m in expand_metric_names(name) for w in METRICS.get(m).weights))
    for registry in (METRICS, MODELS):
        try:
            return registry.get(name).weights
        except RegistryError:
            continue
    hint = "; it is a checkpoint name: give checkpoint names before --for" if name in W.KNOWN else ""
    raise BadArgument(_unknown("metric or model", name, [*METRICS.names(), *MODELS.names()]) + hint)


def _unknown(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f"unknown {kind} {name!r}" + (f"; did you mean {', '.join(close)}?" if close else "")


def human(n: int | None) -> str:
    if n is None:
        return "size unknown"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def download(names: list[str], dry_run: bool = False) -> int:
    """Fetch the named checkpoints into the weights folder. Exit code 0 when every one is present afterwards (for a
    dry run: when every one could be fetched), else 1; 130 when interrupted."""
    root = W.weights_root()
    offline = _offline_switch()
    print(f"weights folder: {root} (sha256 of every file fetched recorded in {root / W.LOCK_FILE})")
    if not names:
        print("nothing to fetch")
        return 0
    try:
        with nullcontext() if dry_run or offline else _exclusive(root):
            return _download(names, root, dry_run, offline)
    except KeyboardInterrupt:
        print("\ninterrupted: the same command resumes URL files from their .part; a hub file it was fetching "
              "starts over (huggingface_hub keeps no partial file)", file=sys.stderr)
        return 130


def _download(names: list[str], root: Path, dry_run: bool, offline: str) -> int:
    plans = [plan(name, root, online=not offline) for name in names]
    for p in plans:  # every licence and size before the first byte
        print(_offline_line(p, offline) if offline and p.to_fetch and not p.problem else _describe(p))
    fetch = [p for p in plans if p.to_fetch and not p.problem]
    failed = sum(bool(p.problem) for p in plans)
    if dry_run:
        total = sum(f.size or 0 for p in fetch for f in p.to_fetch if f.action == "fetch")
        print("dry run: nothing fetched" + (f" ({human(total)} to fetch)" if fetch and not offline else ""))
        return 1 if failed else 0
    if offline:
        return 1 if failed or fetch else 0
    for p in fetch:
        failed += not _fetch(p, root)
    return 1 if failed else 0


def plan(name: str, root: Path, online: bool = True) -> CheckpointPlan:
    """What fetching `name` would do, per file; sizes, and whether the Hugging Face cache holds a hub file, only when
    online (a HEAD request per file)."""
    ck = W.KNOWN[name]
    p = CheckpointPlan(ck, root / name)
    loc = W.locate(name)
    if loc.path is not None and loc.path != p.folder and (loc.via != "hub cache" or not online):
        # online, a checkpoint in the Hugging Face cache is linked into the weights folder (no bytes fetched)
        p.elsewhere = f"{loc.path} ({loc.via})"
        return p
    p.problem = W.check_lock(name, p.folder)[1]
    if p.problem:
        return p
    records = W.read_lock(root).get(name, {})
    for f in ck.files:
        target = p.folder / f
        if target.is_file():
            p.files.append(FilePlan(f, target, "verified" if f in records else "kept", target.stat().st_size))
        elif not (ck.hub_id or (ck.url and f == ck.files[0])):
            p.problem = f"no download source for {f}; {W.how_to_get(name)}"
            return p
        else:
            p.files.append(FilePlan(f, target, "fetch"))
    if online:
        try:
            for fp in p.to_fetch:
                _size_up(ck, fp)
        except Exception as e:  # noqa: BLE001  transfer errors only, see _transfer_error
            p.problem = _transfer_error(e, ck.hub_id or ck.url)
    return p


def _size_up(ck: W.Checkpoint, fp: FilePlan) -> None:
    """Size of a file to fetch (for the hub also whether its cache holds it), by a HEAD request; for a URL file also
    the bytes an earlier command left in its .part."""
    if ck.hub_id:
        info = _hub().hf_hub_download(ck.hub_id, fp.file, dry_run=True)
        fp.size = info.file_size
        fp.action = "link" if info.is_cached else "fetch"
        return
    part = _part(fp.target)
    fp.resume_at = part.stat().st_size if part.is_file() else 0
    try:
        with urllib.request.urlopen(urllib.request.Request(ck.url, method="HEAD"), timeout=TIMEOUT_S) as r:
            length = r.headers.get("Content-Length")
            fp.size = int(length) if length else None
    except urllib.error.HTTPError as e:
        if e.code not in (405, 501):  # a server that does not answer HEAD may still serve GET
            raise DownloadFailed(f"{ck.url}: HTTP {e.code} {e.reason}") from None


def _describe(p: CheckpointPlan) -> str:
    ck = p.ck
    if p.problem:
        return f"{ck.name}: cannot fetch: {p.problem}"
    if p.elsewhere:
        return f"{ck.name}: present at {p.elsewhere}: nothing to fetch"
    if not p.to_fetch:
        kept = sum(f.action == "kept" for f in p.files)
        return f"{ck.name}: present in {p.folder}/ " + (f"({kept} file(s) not in the lock, kept as they are)" if kept
                                                        else "(sha256 matches the lock)")
    lines = [f"{ck.name} (licence {ck.licence or 'not stated'}): {ck.role}; from "
             + (f"the hub, {ck.hub_id}" if ck.hub_id else ck.url) + f" into {p.folder}/"]
    for f in p.files:
        what = {"fetch": "to fetch", "link": "in the Hugging Face cache: linked, not fetched again",
                "verified": "present, sha256 matches the lock", "kept": "present, not in the lock: kept"}[f.action]
        resume = f", resumes at {human(f.resume_at)}" if f.resume_at else ""
        lines.append(f"  {f.file}: {human(f.size)}, {what}{resume}")
    return "\n".join(lines)


def _offline_line(p: CheckpointPlan, switch: str) -> str:
    ck = p.ck
    source = f"{_hub().constants.ENDPOINT}/{ck.hub_id}" if ck.hub_id else ck.url
    files = ", ".join(f.file for f in p.to_fetch)
    return (f"{ck.name}: not fetched, offline mode is on ({switch}): fetch {files} from {source} into {p.folder}/ "
            f"(`HF_HUB_OFFLINE=0 vm-eval weights download {ck.name}` lifts it for one command; licence "
            f"{ck.licence or 'not stated'})")


def _offline_switch() -> str:
    """What put huggingface_hub in offline mode ("" when online). It is the one switch hf_hub_download obeys, read
    once when huggingface_hub is imported; URL downloads obey it too."""
    if not _hub().constants.is_offline_mode():
        return ""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var):
            return f"{var}={os.environ[var]}"
    return "huggingface_hub.constants.HF_HUB_OFFLINE"


def _fetch(p: CheckpointPlan, root: Path) -> bool:
    """Fetch every missing file of one checkpoint; print its outcome. False when a file could not be fetched."""
    ck = p.ck
    try:
        for fp in p.to_fetch:
            part, progress = _part(fp.target), progress_class(f"{ck.name}/{fp.file}")
            if ck.hub_id:
                source, announced = _fetch_hub(ck, fp, part, progress)
            else:
                source, announced = ck.url, None
                _fetch_url(ck.url, part, progress)
            sha = _install(root, ck.name, fp.target, part, source, announced)
            print(f"  {fp.file}: {human(fp.target.stat().st_size)}, sha256 {sha}")
    except Exception as e:  # noqa: BLE001  transfer errors only, see _transfer_error
        print(f"{ck.name}: FAILED: {_transfer_error(e, ck.hub_id or ck.url)}")
        return False
    print(f"{ck.name}: ready in {p.folder}/")
    return True


def _fetch_hub(ck: W.Checkpoint, fp: FilePlan, part: Path, progress: type) -> tuple[str, str | None]:
    """The file through the Hugging Face cache, then linked as `part`. Returns (source URL, announced sha256)."""
    hub = _hub()
    # the default revision, not the commit the plan saw: the cache then also gets refs/main, which offline readers need
    cached = Path(hub.hf_hub_download(ck.hub_id, fp.file, tqdm_class=progress))
    commit = cached.parents[len(Path(fp.file).parts) - 1].name  # .../snapshots/<commit>/<file>
    blob = cached.resolve()
    etag = blob.name if blob.parent.name == "blobs" else ""  # the cache names a blob by its etag: sha256 for LFS files
    part.parent.mkdir(parents=True, exist_ok=True)
    part.unlink(missing_ok=True)
    try:
        os.link(blob, part)  # no second copy of a multi-GB file
    except OSError:  # another file system, or no hard links there
        shutil.copyfile(blob, part)
    source = hub.hf_hub_url(ck.hub_id, fp.file, revision=commit)
    return source, (etag if _SHA256.fullmatch(etag) else None)


def _fetch_url(url: str, part: Path, progress: type) -> None:
    """Complete `part` from `url`, resuming with a Range request from the bytes already there."""
    part.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    while True:
        have = _size(part)
        try:
            _transfer(url, part, have, progress)
            return
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # the Range starts at or past the end
                if _range_total(e.headers.get("Content-Range")) == have:
                    return  # the .part already holds every byte (its command died before the rename)
                part.unlink()  # larger than the file: not a prefix of it
                error = "partial file larger than the file: starting over"
            elif e.code in RETRY_STATUS:
                error = f"HTTP {e.code} {e.reason}"
            else:
                raise DownloadFailed(f"{url}: HTTP {e.code} {e.reason}") from None
        except (OSError, http.client.HTTPException) as e:  # refused, reset, timed out, cut short
            error = str(e) or type(e).__name__
        failures = 0 if _size(part) > have else failures + 1
        if failures > RETRIES:
            raise DownloadFailed(f"{url}: {error}; gave up after {RETRIES} retries without progress. {_size(part)} "
                                 f"bytes are kept in {part}: the same command resumes from them")
        print(f"  {part.name}: {error} at byte {_size(part)}; resuming with a Range request", file=sys.stderr)
        time.sleep(RETRY_WAIT_S)


def _transfer(url: str, part: Path, have: int, progress: type) -> None:
    """One GET appending to `part` from byte `have`; :class:`_CutShort` when the body ends before its length."""
    headers = {"User-Agent": "vm-eval weights download", **({"Range": f"bytes={have}-"} if have else {})}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S) as resp:
        if have and resp.status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != have:
                raise DownloadFailed(f"{url}: asked for bytes from {have}, the server sent them from {start}")
        else:  # 200: the whole file (a server may ignore Range)
            have, length = 0, resp.headers.get("Content-Length")
            total = int(length) if length else None
        received = 0
        with open(part, "ab" if have else "wb") as out, progress(total=total, initial=have, unit="B",
                                                                unit_scale=True) as bar:
            for chunk in iter(lambda: resp.read(CHUNK), b""):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and have + received != total:  # http.client returns b"" at an early end instead of raising
        raise _CutShort(f"connection closed after {have + received} of {total} bytes")


def _content_range(value: str | None) -> tuple[int, int | None]:
    m = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (value or "").strip())
    if not m:
        raise DownloadFailed(f"unexpected Content-Range {value!r} in a 206 answer")
    return int(m.group(1)), None if m.group(2) == "*" else int(m.group(2))


def _range_total(value: str | None) -> int | None:
    m = re.fullmatch(r"bytes \*/(\d+)", (value or "").strip())
    return int(m.group(1)) if m else None


def _install(root: Path, name: str, target: Path, part: Path, source: str, announced: str | None) -> str:
    """Hash `part`, record it in the lock, then rename it to `target` (the record first: a file under its final name
    always has one). Returns the sha256."""
    sha = file_sha256(part)
    if announced and sha != announced:
        part.unlink()
        raise DownloadFailed(f"{target.name}: the bytes received have sha256 {sha}, the source announced {announced} "
                             "(a damaged copy in the Hugging Face cache? delete it there and retry)")
    W.record_lock(root, name, target.name, {"sha256": sha, "size": part.stat().st_size, "source": source,
                                            "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    os.replace(part, target)
    return sha


def _part(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def _size(p: Path) -> int:
    return p.stat().st_size if p.is_file() else 0


def _transfer_error(e: Exception, source: str | None) -> str:
    """The one-line reason for a network, HTTP or storage failure; anything else is a bug and is raised again.
    huggingface_hub's errors are OSErrors; its HTTP client's (httpx2, httpx) and hf_xet's are not."""
    if isinstance(e, (DownloadFailed, OSError, http.client.HTTPException)) or \
            type(e).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "hf_xet"):
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return first if isinstance(e, DownloadFailed) else f"{source}: {type(e).__name__}: {first}"
    raise e


def _hub():
    try:
        import huggingface_hub
        import huggingface_hub.constants  # noqa: F401  the offline switch and the endpoint
    except ImportError:
        raise MissingPackage("huggingface_hub is not installed: run `make install` (scripts/install.sh)") from None
    return huggingface_hub


@contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    """One download command per weights folder at a time (the lock file is read, modified and rewritten); the OS
    releases it when the process dies."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / ".download.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UserError(f"cannot write to the weights folder {root}: {e.strerror}; set VM_EVAL_WEIGHTS") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"another `vm-eval weights download` is writing to {root}: wait for it to finish") from None
    try:
        yield
    finally:
        os.close(fd)  # closing releases the flock


def progress_class(label: str) -> type:
    """tqdm on a terminal, plain lines in a log or a pipe (where tqdm's carriage returns make one unreadable line),
    labelled `label` (huggingface_hub would label a bar with the tail of the file's URL)."""
    if sys.stderr.isatty():
        from tqdm import tqdm as base
    else:
        base = LineProgress

    class Progress(base):
        def __init__(self, *args: object, **kwargs: object):
            super().__init__(*args, **{**kwargs, "desc": label})

    return Progress


class LineProgress:
    """The part of tqdm's interface huggingface_hub and _transfer use, printing a line to stderr per tenth of the
    file (per 64 MiB when its size is unknown) and one at the end."""

    def __init__(self, total: int | None = None, initial: int = 0, desc: str = "", **_: object):
        self.total, self.n, self.desc = total, initial, desc
        self._shown = initial

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n - self._shown >= (max(self.total // 10, 1) if self.total else 64 << 20):
            self._show()

    def _show(self) -> None:
        self._shown = self.n
        of = f" of {human(self.total)} ({100 * self.n // self.total}%)" if self.total else ""
        print(f"  {self.desc}: {human(self.n)}{of}", file=sys.stderr, flush=True)

    def set_postfix_str(self, *_: object, **__: object) -> None:  # huggingface_hub's Xet downloads show a rate
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if self.n != self._shown:
            self._show()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
