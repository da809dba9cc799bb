"""`dir:` outputs: a clip with two candidate files fails naming both (others are scored), the ambiguous stems are
listed once when the folder is opened, the identity hashes every candidate, the match rule is in the info."""
from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np

from vm_eval.data import resolve_dataset
from vm_eval.fsutil import file_sha256
from vm_eval.media import Audio, write_video, write_wav
from vm_eval.models.directory import AmbiguousOutput, DirectoryOutputs
from vm_eval.runner import RunConfig, execute

SR = 16000


def _tone(duration_s: float, freq: float = 0.05) -> Audio:
    return Audio((0.2 * np.sin(np.arange(int(duration_s * SR)) * freq))[None].astype(np.float32), SR)


def test_two_files_for_one_clip_fail_that_clip_alone(data_dir, results, tmp_path, capsys):
    x, y = resolve_dataset("demo", data_dir).split("test")[:2]
    out = tmp_path / "outputs"
    write_wav(out / f"{x.id}.wav", _tone(x.duration))
    write_wav(out / f"{x.id}.flac", _tone(x.duration, 0.03))
    write_wav(out / f"{y.id}.wav", _tone(y.duration))
    outcome = execute(RunConfig(model=f"dir:{out}", split="test", dataset="demo", data=data_dir, results=results,
                                metrics=["duration-error"], progress=False))
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "several output files" in line]
    assert len(warnings) == 1 and f"{x.id} ({x.id}.flac, {x.id}.wav)" in warnings[0] and y.id not in warnings[0]
    recs = {rec["clip_id"]: rec for rec in outcome.run.generation}
    assert recs[x.id]["status"] == "failed"
    assert str(out / f"{x.id}.wav") in recs[x.id]["reason"] and str(out / f"{x.id}.flac") in recs[x.id]["reason"]
    assert recs[y.id]["status"] == "done"
    scored = {rec["clip_id"] for rec in outcome.run.scores if rec.get("metric") == "duration-error"}
    assert y.id in scored and x.id not in scored
    assert outcome.counts["failed"] == 1 and outcome.counts["done"] == 1
    meta = outcome.run.meta()
    assert meta["model_info"]["extra"]["match"] == "file stem = clip id"
    assert meta["model_info"]["extra"]["ambiguous"] == [x.id]


def test_audio_and_video_of_one_stem_are_ambiguous_too(tmp_path, capsys):
    out = tmp_path / "outputs"
    write_wav(out / "a.wav", _tone(0.5))
    write_video(out / "a.mp4", (np.zeros((16, 16, 3), np.uint8) for _ in range(5)), 10, _tone(0.5))
    write_wav(out / "b.wav", _tone(0.5))
    model = DirectoryOutputs(str(out))
    assert capsys.readouterr().err.count("several output files") == 1
    a, b = model.generate([SimpleNamespace(id="a"), SimpleNamespace(id="b")])
    assert isinstance(a, AmbiguousOutput) and "a.mp4" in str(a) and "a.wav" in str(a)
    assert isinstance(b, Audio)


def test_identity_hashes_every_candidate(tmp_path, capsys):
    out = tmp_path / "outputs"
    write_wav(out / "a.wav", _tone(0.5))
    write_wav(out / "b.wav", _tone(0.5, 0.03))
    (out / "notes.txt").write_text("ignored")
    plain = DirectoryOutputs(str(out))
    assert capsys.readouterr().err == ""  # nothing ambiguous, nothing said
    # a folder without duplicates keeps the identity it always had: (name, sha256) of each file, by stem
    expected = hashlib.sha256(b"".join(f"{n}\0{file_sha256(out / n)}\n".encode() for n in ("a.wav", "b.wav")))
    assert plain.checkpoints() == [{"name": "outputs", "path": str(out.resolve()), "sha256": expected.hexdigest(),
                                    "files": 2}]
    assert plain.info.extra["ambiguous"] == []
    write_wav(out / "a.flac", _tone(0.5, 0.01))
    first = DirectoryOutputs(str(out)).checkpoints()[0]
    write_wav(out / "a.flac", _tone(0.5, 0.02))  # the file that is not scored still names the run
    second = DirectoryOutputs(str(out)).checkpoints()[0]
    assert first["files"] == 3 and len({plain.checkpoints()[0]["sha256"], first["sha256"], second["sha256"]}) == 3


def test_describe_gives_the_identity_and_leaves_the_warning_to_the_model(tmp_path, capsys):
    from vm_eval.models.identity import describe

    out = tmp_path / "outputs"
    for name in ("a.wav", "a.flac", "b.wav"):
        write_wav(out / name, _tone(0.2))
    ident = describe(f"dir:{out}")
    assert capsys.readouterr().err == "" and ident.model is None
    model = DirectoryOutputs(str(out))
    assert ident.info == model.info and ident.checkpoints == model.checkpoints()
    assert capsys.readouterr().err.count("several output files") == 1


def test_warning_lists_at_most_ten_stems(tmp_path, capsys):
    out = tmp_path / "outputs"
    for i in range(12):
        for ext in (".wav", ".flac"):
            write_wav(out / f"c{i:02d}{ext}", _tone(0.1))
    model = DirectoryOutputs(str(out))
    (line,) = capsys.readouterr().err.splitlines()
    assert "12 clip id(s)" in line and "c09 (c09.flac, c09.wav)" in line and "c10 (" not in line
    assert line.endswith("and 2 more") and len(model.duplicates) == 12 and model.files == {}
