"""`dir:` outputs: one file per clip or per source video (cropped to each clip's span), mixed in one folder; a clip
with two candidate files fails naming both (others are scored), the ambiguous stems are listed once when the folder
is opened, the identity hashes every candidate, the match rule is in the info and each clip's match in its record;
outputs off their span's length or below 16 kHz are scored and flagged (for every model)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vm_eval.data import resolve_dataset
from vm_eval.data.manifest import Clip, Manifest, save_manifest
from vm_eval.fsutil import file_sha256
from vm_eval.media import Audio, load_audio, write_video, write_wav
from vm_eval.models.api import ClipInput
from vm_eval.models.directory import MATCH, AmbiguousOutput, DirectoryOutputs
from vm_eval.runner import RunConfig, execute, length_tolerance_s

SR = 16000
VIDEO_S, CLIP_S = 30.0, 15.0  # each source video of `two_videos` and each of its two clips


def _tone(duration_s: float, freq: float = 0.05) -> Audio:
    return Audio((0.2 * np.sin(np.arange(int(duration_s * SR)) * freq))[None].astype(np.float32), SR)


def _noise(duration_s: float, seed: int, sr: int = SR) -> Audio:
    """Distinct content per file, so a stored crop can be told from any other span."""
    rng = np.random.default_rng(seed)
    return Audio(rng.uniform(-0.5, 0.5, (1, round(duration_s * sr))).astype(np.float32), sr)


@pytest.fixture(scope="module")
def two_videos(tmp_path_factory) -> Path:
    """Manifest of two real 30 s mp4s, alpha and beta, each in two 15 s clips: <video>-000 [0, 15), -001 [15, 30)."""
    root = tmp_path_factory.mktemp("two-videos")
    clips = []
    for stem in ("alpha", "beta"):
        write_video(root / "videos" / f"{stem}.mp4", (np.zeros((16, 16, 3), np.uint8) for _ in range(30)), 1.0)
        clips += [Clip(id=f"{stem}-{k:03d}", video=f"videos/{stem}.mp4", start=k * CLIP_S, end=(k + 1) * CLIP_S,
                       split="test") for k in range(2)]
    return save_manifest(root / "manifest.jsonl", clips)


def _run(manifest: Path, outputs: Path, results: Path):
    return execute(RunConfig(model=f"dir:{outputs}", split="test", dataset=str(manifest), results=results,
                             metrics=["duration-error"], progress=False))


def _records(outcome) -> dict[str, dict]:
    return {rec["clip_id"]: rec for rec in outcome.run.generation}


def _stored(outcome, clip_id: str) -> np.ndarray:
    return load_audio(outcome.run.audio_path(clip_id)).samples


def _span(audio: Audio, start_s: float, end_s: float) -> np.ndarray:
    return audio.samples[:, round(start_s * audio.sample_rate):round(end_s * audio.sample_rate)]


def _inputs(root: Path, *rows: tuple[str, str, float, float]) -> list[ClipInput]:
    """ClipInputs of (clip id, video, start s, end s) rows; finding outputs needs no video file."""
    clips = [Clip(id=i, video=v, start=a, end=b, split="test") for i, v, a, b in rows]
    manifest = Manifest(root / "manifest.jsonl", clips)
    return [ClipInput(c, manifest, 0, root / "media") for c in clips]


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
    assert recs[y.id]["match"] == "clip id" and recs[y.id]["source_file"] == str(out / f"{y.id}.wav")
    meta = outcome.run.meta()
    assert meta["model_info"]["extra"]["match"] == MATCH
    assert meta["model_info"]["extra"]["ambiguous"] == [x.id]


def test_audio_and_video_of_one_stem_are_ambiguous_too(tmp_path, capsys):
    out = tmp_path / "outputs"
    write_wav(out / "a.wav", _tone(0.5))
    write_video(out / "a.mp4", (np.zeros((16, 16, 3), np.uint8) for _ in range(5)), 10, _tone(0.5))
    write_wav(out / "b.wav", _tone(0.5))
    model = DirectoryOutputs(str(out))
    assert capsys.readouterr().err.count("several output files") == 1
    a, b = model.generate(_inputs(tmp_path, ("a", "v/a.mp4", 0.0, 0.5), ("b", "v/b.mp4", 0.0, 0.5)))
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
    assert "12 file stem(s)" in line and "c09 (c09.flac, c09.wav)" in line and "c10 (" not in line
    assert line.endswith("and 2 more") and len(model.duplicates) == 12


def test_one_file_per_source_video_is_cropped_to_each_clip_span(two_videos, results, tmp_path):
    out = tmp_path / "outputs"
    music = {"alpha": _noise(VIDEO_S, 1), "beta": _noise(VIDEO_S, 2)}  # BGM909-style: <video stem>.wav, 30 s each
    for stem, audio in music.items():
        write_wav(out / f"{stem}.wav", audio)
    outcome = _run(two_videos, out, results)
    assert outcome.counts["done"] == 4 and outcome.failed == 0
    for cid, rec in _records(outcome).items():
        stem, k = cid.split("-")
        start = int(k) * CLIP_S
        assert np.array_equal(_stored(outcome, cid), _span(music[stem], start, start + CLIP_S))
        assert rec["match"] == "video stem" and rec["source_file"] == str(out / f"{stem}.wav")
        assert not (rec["too_long"] or rec["too_short"] or rec["low_sample_rate"])
    meta = outcome.run.meta()
    assert meta["counts"]["matched_video_stem"] == 4 and "matched_clip_id" not in meta["counts"]
    assert meta["model_info"]["extra"]["match"] == MATCH
    assert outcome.aggregates["duration-error"]["n"] == 4 and outcome.aggregates["duration-error"]["mean"] == 0.0


def test_files_per_clip_and_per_video_mix_in_one_folder(two_videos, results, tmp_path):
    out = tmp_path / "outputs"
    per_clip = {"alpha-000": _noise(CLIP_S, 3), "alpha-001": _noise(CLIP_S, 4)}
    for cid, audio in per_clip.items():
        write_wav(out / f"{cid}.wav", audio)
    beta = _noise(VIDEO_S, 5)
    write_wav(out / "beta.wav", beta)
    outcome = _run(two_videos, out, results)
    recs = _records(outcome)
    assert outcome.counts["done"] == 4 and outcome.failed == 0
    for cid, audio in per_clip.items():  # a clip-named file is the clip's output whole
        assert np.array_equal(_stored(outcome, cid), audio.samples)
        assert recs[cid]["match"] == "clip id" and recs[cid]["source_file"] == str(out / f"{cid}.wav")
    assert np.array_equal(_stored(outcome, "beta-001"), _span(beta, CLIP_S, VIDEO_S))
    assert recs["beta-000"]["match"] == recs["beta-001"]["match"] == "video stem"
    counts = outcome.run.meta()["counts"]
    assert counts["matched_clip_id"] == 2 and counts["matched_video_stem"] == 2
    table = pd.read_parquet(outcome.run.dir / "clips.parquet").set_index("clip_id")
    assert table["match"].to_dict() == {"alpha-000": "clip id", "alpha-001": "clip id", "beta-000": "video stem",
                                        "beta-001": "video stem"}


def test_a_clip_named_and_a_video_named_file_fail_that_clip_listing_both(two_videos, results, tmp_path, capsys):
    out = tmp_path / "outputs"
    alpha = _noise(VIDEO_S, 6)
    write_wav(out / "alpha.wav", alpha)
    write_wav(out / "alpha-000.wav", _noise(CLIP_S, 7))
    outcome = _run(two_videos, out, results)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: dir:")]
    assert len(warnings) == 1 and "1 clip(s)" in warnings[0] and "alpha-000 (alpha-000.wav, alpha.wav)" in warnings[0]
    recs = _records(outcome)
    assert recs["alpha-000"]["status"] == "failed"
    assert all(str(out / name) in recs["alpha-000"]["reason"] for name in ("alpha-000.wav", "alpha.wav"))
    assert recs["alpha-001"]["status"] == "done" and recs["alpha-001"]["match"] == "video stem"
    assert np.array_equal(_stored(outcome, "alpha-001"), _span(alpha, CLIP_S, VIDEO_S))
    assert recs["beta-000"]["status"] == "skipped" and "beta-000.* or beta.*" in recs["beta-000"]["reason"]
    assert (outcome.counts["failed"], outcome.counts["done"], outcome.counts["skipped"]) == (1, 1, 2)


def test_lengths_off_the_span_and_low_rates_are_scored_and_flagged(two_videos, results, tmp_path, capsys):
    from vm_eval.commands import _print_outcome

    out = tmp_path / "outputs"
    write_wav(out / "alpha-000.wav", _noise(12.0, 8))  # 3 s short of its 15 s clip
    write_wav(out / "alpha-001.wav", _noise(18.0, 9))  # 3 s long
    write_wav(out / "beta.wav", _noise(25.0, 10, sr=8000))  # 8 kHz; covers [0, 15) but only 10 s of [15, 30)
    outcome = _run(two_videos, out, results)
    flags = {cid: {f for f in ("too_long", "too_short", "low_sample_rate") if rec[f]}
             for cid, rec in _records(outcome).items()}
    assert flags == {"alpha-000": {"too_short"}, "alpha-001": {"too_long"}, "beta-000": {"low_sample_rate"},
                     "beta-001": {"too_short", "low_sample_rate"}}
    assert outcome.counts["done"] == 4 and outcome.aggregates["duration-error"]["n"] == 4  # flagged, still scored
    counts = outcome.run.meta()["counts"]
    assert (counts["too_long"], counts["too_short"], counts["low_sample_rate"]) == (1, 2, 2)
    capsys.readouterr()
    _print_outcome(outcome)
    assert "flagged outputs: 1 too long, 2 too short, 2 low sample rate" in capsys.readouterr().err
    # the tolerance is max(0.1 s, 1 % of the span)
    assert length_tolerance_s(CLIP_S) == pytest.approx(0.15) and length_tolerance_s(5.0) == 0.1


def test_every_model_is_flagged_against_its_clip_span(data_dir, results):
    import testsystems  # noqa: F401  registers test-noise

    outcome = execute(RunConfig(model="test-noise", model_args={"seconds": 2.0}, split="test", dataset="demo",
                                data=data_dir, results=results, metrics=["duration-error"], limit=1, progress=False))
    (rec,) = outcome.run.generation
    assert rec["too_short"] and not rec["too_long"] and not rec["low_sample_rate"] and outcome.counts["too_short"] == 1


def test_a_video_stem_shared_by_two_source_videos_names_neither(tmp_path, capsys):
    out = tmp_path / "outputs"
    write_wav(out / "x.wav", _tone(2.0))
    write_wav(out / "solo-000.wav", _tone(1.0))
    model = DirectoryOutputs(str(out))
    pool = _inputs(tmp_path, ("promo-000", "promo/x.mp4", 0.0, 1.0), ("ad-000", "ads/x.mp4", 0.0, 1.0),
                   ("solo-000", "solo.mp4", 0.0, 1.0))
    model.prepare(pool)
    (line,) = capsys.readouterr().err.splitlines()
    assert "1 file stem(s) name several source videos" in line and "promo/x.mp4" in line and "ads/x.mp4" in line
    promo, ad, solo = model.generate(pool)
    for failed in (promo, ad):
        assert isinstance(failed, AmbiguousOutput) and "ads/x.mp4" in str(failed) and "promo/x.mp4" in str(failed)
    assert isinstance(solo, Audio) and solo.record_fields == {"source_file": str(out / "solo-000.wav"),
                                                              "match": "clip id"}
