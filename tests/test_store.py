"""Journals, atomic files, the feature cache and run-store bookkeeping."""
from __future__ import annotations

import json
import os
import stat

import numpy as np

from vm_eval.fsutil import atomic_target, atomic_write_json
from vm_eval.store.feature_cache import ExtractorId, FeatureCache
from vm_eval.store.journal import Journal
from vm_eval.store.run import RunSpec, RunStore, slug


def test_journal_drops_a_torn_last_line_and_keeps_appending(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    j.append({"clip_id": "a", "v": 1})
    with open(j.path, "a") as f:
        f.write('{"clip_id": "b", "v"')  # a writer killed mid-line
    assert [r["clip_id"] for r in j] == ["a"] and j.dropped == 1
    j.append({"clip_id": "c", "v": 3})
    assert [r["clip_id"] for r in j] == ["a", "c"]
    j.append({"clip_id": "a", "v": 9})
    assert j.latest("clip_id")[("a",)]["v"] == 9


def test_atomic_target_leaves_old_file_on_error_and_shares_permissions(tmp_path):
    p = tmp_path / "x.json"
    atomic_write_json(p, {"a": 1})
    try:
        with atomic_target(p) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("killed")
    except RuntimeError:
        pass
    assert json.loads(p.read_text()) == {"a": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask


def test_feature_cache_is_keyed_by_content_and_extractor(tmp_path):
    cache = FeatureCache(tmp_path)
    ext = ExtractorId("emb", 1, {"sr": 16000})
    calls = []

    def compute(v):
        calls.append(v)
        return np.full(3, v, dtype=np.float32)

    a = cache.get_or_compute(ext, "sha-a", lambda: compute(1.0))
    a2 = cache.get_or_compute(ext, "sha-a", lambda: compute(2.0))
    assert np.array_equal(a, a2) and calls == [1.0]
    b = cache.get_or_compute(ext, "sha-b", lambda: compute(2.0))  # same file name, new content -> recomputed
    assert b[0] == 2.0 and calls == [1.0, 2.0]
    for other in (ExtractorId("emb", 2, {"sr": 16000}), ExtractorId("emb", 1, {"sr": 32000}), ExtractorId("x", 1, {"sr": 16000})):
        cache.get_or_compute(other, "sha-a", lambda: compute(3.0))
    assert calls == [1.0, 2.0, 3.0, 3.0, 3.0]
    cache.path(ext, "sha-a").write_bytes(b"\x93NUMPY garbage")  # a torn entry is recomputed, not trusted
    assert cache.get_or_compute(ext, "sha-a", lambda: compute(4.0))[0] == 4.0
    assert cache.hits == 1 and cache.misses == 6


def test_run_identity_excludes_checkpoint_paths_but_not_hashes(tmp_path):
    base = dict(dataset="demo", split="test", model="m", seed=0, manifest_sha256="abc")
    a = RunSpec(**base, checkpoints=({"name": "w", "path": "/a", "sha256": "1"},))
    b = RunSpec(**base, checkpoints=({"name": "w", "path": "/b", "sha256": "1"},))
    c = RunSpec(**base, checkpoints=({"name": "w", "path": "/a", "sha256": "2"},))
    d = RunSpec(**{**base, "model_args": {"k": 1}}, checkpoints=a.checkpoints)
    assert a.run_id == b.run_id and len({a.run_id, c.run_id, d.run_id}) == 3
    store = RunStore(tmp_path)
    assert store.path_for(a).relative_to(tmp_path).parts == ("demo", "test", "m", a.run_id)
    assert slug("dir:/x/my outputs").startswith("dir-my_outputs-")
