"""Checkpoint lookup order, identity hashes, the missing-weights message, the default weights folder and the lock
file's checks (verified, changed files refused), in an isolated file system."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from vm_eval import weights as W
from vm_eval.fsutil import file_sha256


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """No real checkpoint is reachable: weights folder, HF cache and torch hub all point into tmp_path."""
    root = tmp_path / "weights"
    root.mkdir()
    for k in list(os.environ):
        if k.startswith("VM_EVAL_WEIGHT"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("VM_EVAL_WEIGHTS", str(root))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    try:  # huggingface_hub reads its cache folder once, at import
        import huggingface_hub.constants as hf_constants

        monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    except ImportError:
        pass
    return root


def put(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


T5 = {"config.json": b"{}", "model.safetensors": b"weights-bytes", "spiece.model": b"sentencepiece"}
VGGISH_FILE = "vggish-10086976.pth"


def test_env_var_names():
    assert W.env_var("clip-vit-b-32") == "VM_EVAL_WEIGHT_CLIP_VIT_B_32"
    assert W.env_var("vggish") == "VM_EVAL_WEIGHT_VGGISH"


def test_weights_folder_is_found(isolated):
    put(isolated / "t5-base", T5)
    loc = W.locate("t5-base")
    assert loc.path == isolated / "t5-base"
    assert loc.via == "weights folder"
    assert W.require("t5-base") == isolated / "t5-base"


def test_incomplete_folder_is_not_found(isolated):
    put(isolated / "t5-base", {k: v for k, v in T5.items() if k != "spiece.model"})
    assert W.locate("t5-base").path is None
    with pytest.raises(W.WeightsMissing) as e:
        W.require("t5-base")
    assert "spiece.model" in str(e.value)


def test_one_file_checkpoint_at_the_top_of_the_weights_folder(isolated):
    put(isolated, {VGGISH_FILE: b"vggish"})
    loc = W.locate("vggish")
    assert loc.path == isolated / VGGISH_FILE and loc.via == "weights folder"


def test_identity_follows_the_bytes(isolated):
    put(isolated / "t5-base", T5)
    first = W.identity("t5-base")
    assert first["name"] == "t5-base" and first["path"] == str(isolated / "t5-base")
    assert len(first["sha256"]) == 64 and int(first["sha256"], 16) >= 0
    assert W.identity("t5-base") == first  # stable
    (isolated / "t5-base" / "model.safetensors").write_bytes(b"weights-bytez")  # same size, other bytes
    second = W.identity("t5-base")
    assert second["sha256"] != first["sha256"]
    (isolated / "t5-base" / "model.safetensors").write_bytes(b"weights-bytes")  # back to the original bytes
    assert W.identity("t5-base")["sha256"] == first["sha256"]


def test_identity_sees_a_rewrite_that_keeps_size_and_mtime(isolated):
    """A coarse file-system clock can leave size and mtime unchanged by a rewrite; the hash must still change."""
    f = put(isolated / "vggish", {VGGISH_FILE: b"AAAA"}) / VGGISH_FILE
    st = f.stat()
    before = W.identity("vggish")["sha256"]
    with open(f, "r+b") as fh:  # in place: same inode, same size
        fh.write(b"BBBB")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime, as within one clock tick
    assert f.stat().st_mtime_ns == st.st_mtime_ns
    after = W.identity("vggish")["sha256"]
    assert after == hashlib.sha256(b"BBBB").hexdigest() != before


def test_one_file_identity_is_the_file_hash_wherever_it_is_found(isolated, tmp_path, monkeypatch):
    data = b"the vggish checkpoint"
    expected = hashlib.sha256(data).hexdigest()
    put(isolated / "vggish", {VGGISH_FILE: data})
    in_folder = W.identity("vggish")
    assert W.locate("vggish").path == isolated / "vggish"
    explicit = put(tmp_path / "elsewhere", {VGGISH_FILE: data}) / VGGISH_FILE
    monkeypatch.setenv("VM_EVAL_WEIGHT_VGGISH", str(explicit))
    as_file = W.identity("vggish")
    assert W.locate("vggish").path == explicit
    assert in_folder["sha256"] == as_file["sha256"] == expected
    assert W.sha256_of(explicit) == file_sha256(explicit) == expected


def test_explicit_env_var_wins(isolated, tmp_path, monkeypatch):
    put(isolated / "t5-base", T5)
    mine = put(tmp_path / "my-t5", {**T5, "model.safetensors": b"fine-tuned"})
    monkeypatch.setenv("VM_EVAL_WEIGHT_T5_BASE", str(mine))
    loc = W.locate("t5-base")
    assert loc.path == mine and loc.via == "explicit path"
    assert W.identity("t5-base")["path"] == str(mine)
    assert W.identity("t5-base")["sha256"] != W.identity("t5-base", isolated / "t5-base")["sha256"]
    # a one-file checkpoint may be named by its file
    put(isolated / "vggish", {VGGISH_FILE: b"folder copy"})
    f = put(tmp_path / "x", {"my-vggish.pth": b"explicit copy"}) / "my-vggish.pth"
    monkeypatch.setenv("VM_EVAL_WEIGHT_VGGISH", str(f))
    assert W.locate("vggish").path == f
    assert W.identity("vggish")["sha256"] == hashlib.sha256(b"explicit copy").hexdigest()


def test_explicit_env_var_to_nothing_falls_back_and_is_reported(isolated, tmp_path, monkeypatch):
    monkeypatch.setenv("VM_EVAL_WEIGHT_T5_BASE", str(tmp_path / "no-such-folder"))
    assert W.locate("t5-base").path is None
    with pytest.raises(W.WeightsMissing) as e:
        W.require("t5-base")
    assert str(tmp_path / "no-such-folder") in str(e.value)
    put(isolated / "t5-base", T5)
    assert W.locate("t5-base").path == isolated / "t5-base"


@pytest.mark.parametrize("name", sorted(W.KNOWN))
def test_absent_checkpoint_message(isolated, name):
    ck = W.KNOWN[name]
    assert W.locate(name).path is None
    with pytest.raises(W.WeightsMissing) as e:
        W.require(name)
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    assert repr(name) in msg
    for f in ck.files:
        assert f in msg
    assert W.env_var(name) in msg and "VM_EVAL_WEIGHTS" in msg  # where to put it
    if ck.hub_id:
        assert ck.hub_id in msg and "huggingface-cli download" in msg
    else:
        assert ck.url in msg


def test_hugging_face_cache_is_searched(isolated, tmp_path):
    """A hub snapshot in the (isolated) HF cache counts, without any network access."""
    ck = W.KNOWN["t5-base"]
    repo = tmp_path / "hf" / "hub" / ("models--" + ck.hub_id.replace("/", "--"))
    rev = "0123456789abcdef0123456789abcdef01234567"
    put(repo / "refs", {"main": rev.encode()})
    snap = put(repo / "snapshots" / rev, T5)
    loc = W.locate("t5-base")
    assert loc.via == "hub cache" and loc.path == snap


def test_torch_hub_cache_is_searched(isolated, tmp_path):
    ck = W.KNOWN["vggish"]
    f = put(tmp_path / "torch" / "hub" / "checkpoints", {ck.files[0]: b"hub copy"}) / ck.files[0]
    loc = W.locate("vggish")
    assert loc.path == f and loc.via == "torch hub cache"
    assert W.identity("vggish")["sha256"] == hashlib.sha256(b"hub copy").hexdigest()


def lock(root: Path, name: str, files: dict[str, bytes]) -> None:
    """Records as `vm-eval weights download` writes them."""
    for f, data in files.items():
        W.record_lock(root, name, f, {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                      "source": "test", "time": "2024-01-01T00:00:00+00:00"})


def test_default_weights_folder_when_the_variable_is_unset(isolated, tmp_path, monkeypatch):
    monkeypatch.delenv("VM_EVAL_WEIGHTS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert W.weights_root() == tmp_path / "xdg" / "vm-eval" / "weights"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert W.weights_root() == tmp_path / "home" / ".cache" / "vm-eval" / "weights"
    folder = put(W.weights_root() / "t5-base", T5)
    loc = W.locate("t5-base")
    assert loc.path == folder and loc.via == "weights folder"
    with pytest.raises(W.WeightsMissing, match="default weights folder; set VM_EVAL_WEIGHTS"):
        W.require("vggish")


def test_verified_only_when_every_file_matches_the_lock(isolated):
    folder = put(isolated / "t5-base", T5)
    assert W.locate("t5-base", verify=True).verified is None  # not downloaded by vm-eval: nothing to compare with
    lock(isolated, "t5-base", {k: v for k, v in T5.items() if k != "spiece.model"})
    assert W.locate("t5-base", verify=True).verified is None  # one file without a record
    lock(isolated, "t5-base", T5)
    loc = W.locate("t5-base", verify=True)
    assert loc.verified is True and loc.path == folder
    assert W.locate("t5-base").verified is None  # without verify only sizes are compared


def test_a_changed_file_is_refused_naming_both_hashes(isolated):
    folder = put(isolated / "t5-base", T5)
    lock(isolated, "t5-base", T5)
    (folder / "model.safetensors").write_bytes(b"weights-bytez")  # same size
    assert W.locate("t5-base").path == folder  # a stat cannot tell; availability listings stay cheap
    with pytest.raises(W.WeightsChanged) as e:
        W.require("t5-base")
    msg = str(e.value)
    assert hashlib.sha256(b"weights-bytes").hexdigest() in msg and hashlib.sha256(b"weights-bytez").hexdigest() in msg
    assert "vm-eval weights download t5-base" in msg and not isinstance(e.value, W.WeightsMissing)
    (folder / "model.safetensors").write_bytes(b"longer weights")
    loc = W.locate("t5-base")
    assert loc.path is None and "changed since it was downloaded" in loc.changed
    put(folder, T5)  # the recorded bytes again
    assert W.require("t5-base") == folder and W.locate("t5-base", verify=True).verified


def test_an_unreadable_lock_is_a_user_error(isolated):
    put(isolated / "t5-base", T5)
    (isolated / W.LOCK_FILE).write_text("{not json")
    with pytest.raises(W.UserError, match=r"weights\.lock\.json is unreadable"):
        W.locate("t5-base")


def test_listing_shows_absent_present_and_verified(isolated, capsys):
    from vm_eval.cli import main

    put(isolated / "t5-base", T5)
    lock(isolated, "t5-base", T5)
    put(isolated / "vggish", {VGGISH_FILE: b"vggish"})
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    state = {line.split()[0]: lines[i + 1] for i, line in enumerate(lines) if line[:1].strip() and
             line.split()[0] in W.KNOWN}  # each checkpoint's line, then its files and state
    assert "present (weights folder" in state["t5-base"] and "verified: sha256 matches the lock" in state["t5-base"]
    assert "not verified" in state["vggish"]
    assert all(state[n].endswith("absent") for n in W.KNOWN if n not in ("t5-base", "vggish"))
    assert str(isolated / W.LOCK_FILE) in out
