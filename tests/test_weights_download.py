"""`vm-eval weights download` against servers these tests start on 127.0.0.1: a hub-like one answering what
huggingface_hub asks (HEAD/GET /{repo}/resolve/{revision}/{file} with X-Repo-Commit, ETag, Content-Length, Range)
and a plain file server with Range. Faults are injected there: a connection closed half-way, a file that never
gets past a byte. Every connection and name lookup is held to 127.0.0.1 (`loopback_only`); the files are a few kB.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vm_eval import weights as W
from vm_eval import weights_download as D
from vm_eval.cli import main

TESTS = Path(__file__).resolve().parent
COMMIT = "0123456789abcdef0123456789abcdef01234567"
HUB_FILES = {"config.json": b'{"tiny": true}\n', "model.bin": bytes(range(256)) * 24}  # 6 kB
URL_FILE = "tiny-classifier.pth"
URL_BYTES = hashlib.sha256(b"seed").digest() * 160  # 5 kB
LOCAL = {"127.0.0.1", "localhost", "::1"}


def fake_checkpoints(files_url: str) -> list[W.Checkpoint]:
    return [W.Checkpoint("tiny-hub", "test: hub checkpoint", tuple(HUB_FILES), hub_id="test-org/tiny",
                         licence="TEST-HUB-LICENCE"),
            W.Checkpoint("tiny-url", "test: URL checkpoint", (URL_FILE,), url=f"{files_url}/files/{URL_FILE}",
                         licence="TEST-URL-LICENCE")]


def guard_loopback(setattr_) -> None:
    """Refuse any connection or name lookup beyond this machine's loopback interface."""
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(sock, address):
        if isinstance(address, tuple) and address[0] not in LOCAL:
            raise AssertionError(f"a test tried to reach {address}")
        return connect(sock, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host not in LOCAL:
            raise AssertionError(f"a test tried to look up {host}")
        return getaddrinfo(host, *args, **kwargs)

    setattr_(socket.socket, "connect", guarded_connect)
    setattr_(socket, "getaddrinfo", guarded_getaddrinfo)


class Served:
    """What a server holds, what it was asked, and the faults it injects."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[tuple[str, str | None, dict[str, str]]] = []  # method, served file (None: another path),
        # headers (names in lower case)
        self.cut_once: set[str] = set()  # next GET of these keys sends half the body, then closes the connection
        self.stall_at: dict[str, int] = {}  # never serve a byte at or past this offset

    def gets(self, name: str = "") -> list[dict[str, str]]:
        """Headers of every GET of a served file whose key ends with `name`."""
        return [h for m, key, h in self.requests if m == "GET" and key is not None and key.endswith(name)]


class FileHandler(BaseHTTPRequestHandler):
    """Plain file server: /files/<name>, HEAD and GET with `Range: bytes=N-`. HTTP/1.0: the connection closes after
    each answer, so a short body is what a client sees of a cut connection."""

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def key(self) -> str | None:
        return self.path.removeprefix("/files/") if self.path.startswith("/files/") else None

    def extra_headers(self, data: bytes) -> dict[str, str]:
        return {}

    def _serve(self, body: bool) -> None:
        st: Served = self.server.served
        key = self.key()
        data = st.files.get(key) if key else None
        st.requests.append((self.command, key if data is not None else None,
                            {k.lower(): v for k, v in self.headers.items()}))
        if data is None:
            self.send_error(404)
            return
        start = int(re.fullmatch(r"bytes=(\d+)-", self.headers["Range"]).group(1)) if self.headers["Range"] else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        for k, v in self.extra_headers(data).items():
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if body:
            end = start + (len(data) - start) // 2 if key in st.cut_once else len(data)
            st.cut_once.discard(key)
            self.wfile.write(data[start:max(start, min(end, st.stall_at.get(key, end)))])


class HubHandler(FileHandler):
    """The hub's resolve endpoint: /{org}/{repo}/resolve/{main|commit}/{file}, answered with the headers
    huggingface_hub's file_download reads (X-Repo-Commit, ETag = the sha256 of an LFS file, Content-Length)."""

    def key(self) -> str | None:
        m = re.fullmatch(r"/([\w.-]+/[\w.-]+)/resolve/(main|[0-9a-f]{40})/(.+)", self.path)
        return f"{m.group(1)}/{m.group(3)}" if m and m.group(2) in ("main", COMMIT) else None

    def extra_headers(self, data: bytes) -> dict[str, str]:
        return {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}


def _start(handler: type, files: dict[str, bytes]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.served = Served(files)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def servers():
    hub, hub_url = _start(HubHandler, {f"test-org/tiny/{k}": v for k, v in HUB_FILES.items()})
    files, files_url = _start(FileHandler, {URL_FILE: URL_BYTES})
    yield hub.served, hub_url, files.served, files_url
    for s in (hub, files):
        s.shutdown()
        s.server_close()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    guard_loopback(monkeypatch.setattr)


@pytest.fixture
def env(tmp_path, monkeypatch, servers):
    """Weights folder, Hugging Face cache and torch cache in tmp_path; huggingface_hub online and pointed at the
    test hub (its constants are read at import, so they are set here as HF_ENDPOINT would set them); the fake
    checkpoints known; retries without waiting."""
    import huggingface_hub.constants as C

    hub, hub_url, files, files_url = servers
    for k in list(os.environ):
        if k.startswith("VM_EVAL_WEIGHT") or k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
            monkeypatch.delenv(k)
    root = tmp_path / "weights"
    monkeypatch.setenv("VM_EVAL_WEIGHTS", str(root))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(C, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(C, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(C, "ENDPOINT", hub_url)
    monkeypatch.setattr(C, "HUGGINGFACE_CO_URL_TEMPLATE", hub_url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(D, "RETRY_WAIT_S", 0.0)
    for ck in fake_checkpoints(files_url):
        monkeypatch.setitem(W.KNOWN, ck.name, ck)
    return root, hub, files, tmp_path


def test_download_by_name_from_the_hub_and_the_cache_is_honoured(env, capsys, monkeypatch):
    root, hub, _, tmp = env
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    assert main(["weights", "download", "tiny-hub"]) == 0
    out = capsys.readouterr()
    folder = root / "tiny-hub"
    for f, data in HUB_FILES.items():
        assert (folder / f).read_bytes() == data
        rec = W.read_lock(root)["tiny-hub"][f]
        assert rec["sha256"] == hashlib.sha256(data).hexdigest() and rec["size"] == len(data)
        assert rec["source"].endswith(f"/test-org/tiny/resolve/{COMMIT}/{f}") and rec["time"]
    # licence and sizes before the first file is fetched; progress in plain lines off a terminal
    assert "licence TEST-HUB-LICENCE" in out.out
    assert out.out.index("model.bin: 6.1 kB, to fetch") < out.out.index("config.json: 15 B, sha256")
    assert "tiny-hub: ready in" in out.out and "(100%)" in out.err and "\r" not in out.err
    resolves = [h for _, key, h in hub.requests if key]  # huggingface_hub also asks for /api/agent-harnesses
    assert resolves and all(h.get("authorization") == "Bearer hf_test_token" for h in resolves)  # HF_TOKEN honoured
    assert list((tmp / "hf-cache").glob("models--test-org--tiny/blobs/*"))  # through the Hugging Face cache
    loc = W.locate("tiny-hub", verify=True)
    assert loc.path == folder and loc.via == "weights folder" and loc.verified is True
    assert W.require("tiny-hub") == folder

    n = len(hub.requests)
    assert main(["weights", "download", "tiny-hub"]) == 0  # present and verified: no request at all
    assert len(hub.requests) == n and "sha256 matches the lock" in capsys.readouterr().out
    for f in HUB_FILES:
        (folder / f).unlink()
    assert main(["weights", "download", "tiny-hub"]) == 0  # in the hub cache: linked in again, never re-fetched
    assert "in the Hugging Face cache: linked" in capsys.readouterr().out
    assert not hub.gets()[len(HUB_FILES):] and (folder / "model.bin").read_bytes() == HUB_FILES["model.bin"]


def test_download_for_a_metric_and_a_model(env, capsys):
    from vm_eval.registries import METRICS, MODELS
    from vm_eval.registry import Entry

    root, hub, files, _ = env
    METRICS.add(Entry("tiny-metric", lambda: None, "test metric", weights=("tiny-url",)))
    MODELS.add(Entry("tiny-model", lambda: None, "test model", weights=("tiny-hub", "tiny-url")))
    try:
        assert main(["weights", "download", "--for", "tiny-metric", "tiny-model"]) == 0
        out = capsys.readouterr().out
        assert "--for tiny-metric: tiny-url" in out and "--for tiny-model: tiny-hub, tiny-url" in out
        assert (root / "tiny-url" / URL_FILE).read_bytes() == URL_BYTES and len(files.gets()) == 1  # fetched once
        assert W.locate("tiny-url", verify=True).verified and W.locate("tiny-hub", verify=True).verified
        assert W.read_lock(root)["tiny-url"][URL_FILE]["source"] == W.KNOWN["tiny-url"].url
        assert "licence TEST-URL-LICENCE" in out
        assert main(["weights", "download", "--for", "tiny-metrc"]) == 2
        assert "did you mean tiny-metric" in capsys.readouterr().err
        assert main(["weights", "download", "--for", "tiny-metric", "tiny-hub"]) == 2  # a name after --for
        assert "give checkpoint names before --for" in capsys.readouterr().err
    finally:
        METRICS.remove("tiny-metric")
        MODELS.remove("tiny-model")


def test_for_a_metric_set_means_every_column_it_can_compute(capsys):
    from vm_eval.metric_sets import SETS
    from vm_eval.registries import METRICS

    for name, s in SETS.items():
        want = [w for m in s.metric_names() for w in METRICS.get(m).weights]
        assert D.resolve([], [f"@{name}"]) == list(dict.fromkeys(want))
    assert D.resolve(["musicgen-small"], ["@vidmuse"])[0] == "musicgen-small"


@pytest.mark.parametrize("name", ["tiny-url", "tiny-hub"])
def test_a_cut_connection_resumes_with_a_range_request(env, capsys, monkeypatch, name):
    """The server closes the connection half-way once; the second GET asks for the rest and the file is whole.
    On the hub huggingface_hub's own retry does it (after its fixed 1 s pause), from the last whole chunk it
    received: its 10 MB chunks are made 1 kB here, in proportion to the few-kB file."""
    import huggingface_hub.constants as C

    monkeypatch.setattr(C, "DOWNLOAD_CHUNK_SIZE", 1024)
    root, hub, files, _ = env
    served, key, data = (files, URL_FILE, URL_BYTES) if name == "tiny-url" else \
        (hub, "test-org/tiny/model.bin", HUB_FILES["model.bin"])
    served.cut_once.add(key)
    assert main(["weights", "download", name]) == 0
    first, second = served.gets(key)
    assert "range" not in first and second.get("range") == f"bytes={len(data) // 2}-"
    target = root / name / key.rsplit("/", 1)[-1]
    assert target.read_bytes() == data and not target.with_name(target.name + ".part").exists()
    assert W.read_lock(root)[name][target.name]["sha256"] == hashlib.sha256(data).hexdigest()


def test_an_interrupted_download_is_never_a_checkpoint_and_the_next_command_resumes(env, capsys):
    root, _, files, _ = env
    files.stall_at[URL_FILE] = 2000  # the connection keeps dying at byte 2000: no progress, the command gives up
    assert main(["weights", "download", "tiny-url"]) == 1
    out = capsys.readouterr()
    part = root / "tiny-url" / (URL_FILE + ".part")
    assert "FAILED" in out.out and "the same command resumes" in out.out and part.stat().st_size == 2000
    assert W.locate("tiny-url").path is None and not W.read_lock(root)
    with pytest.raises(W.WeightsMissing):
        W.require("tiny-url")
    del files.stall_at[URL_FILE]
    n = len(files.gets())
    assert main(["weights", "download", "tiny-url", "--dry-run"]) == 0
    assert "resumes at 2.0 kB" in capsys.readouterr().out and len(files.gets()) == n
    assert main(["weights", "download", "tiny-url"]) == 0
    assert files.gets()[-1].get("range") == "bytes=2000-"
    assert (root / "tiny-url" / URL_FILE).read_bytes() == URL_BYTES and not part.exists()


def test_partial_files_are_never_located(env):
    root = env[0]
    (root / "tiny-url").mkdir(parents=True)
    (root / "tiny-url" / (URL_FILE + ".part")).write_bytes(URL_BYTES)  # complete bytes, but not renamed yet
    (root / (URL_FILE + ".part")).write_bytes(URL_BYTES)  # the one-file form at the top of the folder
    (root / "tiny-hub").mkdir()
    (root / "tiny-hub" / "config.json").write_bytes(HUB_FILES["config.json"])
    (root / "tiny-hub" / "model.bin.part").write_bytes(HUB_FILES["model.bin"])
    for name in ("tiny-url", "tiny-hub"):
        assert W.locate(name).path is None
        with pytest.raises(W.WeightsMissing):
            W.require(name)


def test_a_file_changed_after_download_is_refused_naming_both_hashes(env, capsys):
    root = env[0]
    assert main(["weights", "download", "tiny-url"]) == 0
    capsys.readouterr()
    target = root / "tiny-url" / URL_FILE
    good, bad = hashlib.sha256(URL_BYTES).hexdigest(), hashlib.sha256(URL_BYTES[::-1]).hexdigest()
    target.write_bytes(URL_BYTES[::-1])  # same size: only the hash tells
    assert W.locate("tiny-url").path == target.parent  # an availability check compares sizes only (a stat)
    with pytest.raises(W.WeightsChanged) as e:
        W.require("tiny-url")  # a load hashes
    assert good in str(e.value) and bad in str(e.value) and isinstance(e.value, W.UserError)
    assert main(["weights"]) == 1
    assert f"CHANGED, refused: {target} changed since it was downloaded" in capsys.readouterr().out
    assert main(["weights", "download", "tiny-url"]) == 1  # never overwritten behind the user's back
    assert bad in capsys.readouterr().out and target.read_bytes() == URL_BYTES[::-1]
    target.write_bytes(URL_BYTES[:100])  # another size: even the cheap check refuses it
    loc = W.locate("tiny-url")
    assert loc.path is None and good in loc.changed and hashlib.sha256(URL_BYTES[:100]).hexdigest() in loc.changed


def test_dry_run_fetches_nothing(env, capsys):
    root, hub, files, tmp = env
    assert main(["weights", "download", "tiny-hub", "tiny-url", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "licence TEST-HUB-LICENCE" in out and "licence TEST-URL-LICENCE" in out
    assert f"{URL_FILE}: 5.1 kB, to fetch" in out and "model.bin: 6.1 kB, to fetch" in out
    assert f"dry run: nothing fetched ({D.human(len(URL_BYTES) + sum(map(len, HUB_FILES.values())))} to fetch)" in out
    assert not hub.gets() and not files.gets() and {m for m, _, _ in hub.requests + files.requests} == {"HEAD"}
    assert not root.exists() and not list((tmp / "hf-cache").rglob("blobs/*"))


def child_main() -> int:
    """`vm-eval` in a fresh process (huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE from the environment at
    import), with the fake checkpoints known and connections held to the loopback interface."""
    from vm_eval.cli import main as cli_main

    guard_loopback(setattr)
    W.KNOWN.update({ck.name: ck for ck in fake_checkpoints(os.environ["TEST_FILES_URL"])})
    return cli_main(sys.argv[1:])


def run_child(env_vars: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import {Path(__file__).stem} as t; "
            "sys.exit(t.child_main())")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VM_EVAL_WEIGHT", "HF_"))}
    return subprocess.run([sys.executable, "-c", code, *args], env={**base, **env_vars}, capture_output=True,
                          text=True, timeout=120)


def test_the_command_honours_hf_endpoint_from_the_environment(servers, tmp_path):
    hub, hub_url, files, files_url = servers
    r = run_child({"HF_ENDPOINT": hub_url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"),
                   "HF_HUB_CACHE": str(tmp_path / "hf-cache"), "TORCH_HOME": str(tmp_path / "torch"),
                   "VM_EVAL_WEIGHTS": str(tmp_path / "w"), "TEST_FILES_URL": files_url},
                  "weights", "download", "tiny-hub", "tiny-url")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "w" / "tiny-hub" / "model.bin").read_bytes() == HUB_FILES["model.bin"]
    assert (tmp_path / "w" / "tiny-url" / URL_FILE).read_bytes() == URL_BYTES and hub.gets() and files.gets()


def test_offline_prints_one_clear_line_per_checkpoint(servers, tmp_path):
    hub, _, files, files_url = servers
    root = tmp_path / "w"
    (root / "tiny-url").mkdir(parents=True)
    (root / "tiny-url" / URL_FILE).write_bytes(URL_BYTES)  # present: said so, not fetched
    r = run_child({"HF_HUB_OFFLINE": "1", "VM_EVAL_WEIGHTS": str(root), "TEST_FILES_URL": files_url,
                   "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
                   "TORCH_HOME": str(tmp_path / "torch")}, "weights", "download", "--all")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = r.stdout.splitlines()[1:]  # after the weights folder line
    assert len(lines) == len(W.KNOWN) + 2
    by_name = {line.split(":", 1)[0]: line for line in lines}
    assert "present in" in by_name["tiny-url"]
    hub_line = by_name["tiny-hub"]
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in hub_line and "HF_HUB_OFFLINE=0 vm-eval weights download tiny-hub" \
        in hub_line and "config.json, model.bin from https://huggingface.co/test-org/tiny" in hub_line \
        and f"into {root / 'tiny-hub'}/" in hub_line
    for name, ck in W.KNOWN.items():
        assert "offline mode is on" in by_name[name] and (ck.hub_id or ck.url) in by_name[name]
    assert not hub.requests and not files.requests and not (root / "tiny-hub").exists()
