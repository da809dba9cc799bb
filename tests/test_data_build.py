"""`vm-eval data build`: cutting, reference extraction, splits, categories, skipping bad files, ids."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest
from test_data_check import truncated_faststart

from vm_eval.cli import build_parser, main
from vm_eval.data import check
from vm_eval.data.build import (
    WINDOW_TOLERANCE_S, BuildError, assign_split, build_dataset, clip_spans, find_videos, parse_category,
    source_id, window_spans,
)
from vm_eval.data.check import check_manifest, format_problems
from vm_eval.data.manifest import load_manifest
from vm_eval.media import Audio, load_audio, probe_video, write_video

FPS = 25
SR = 16000
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")


def make_video(path: Path, seconds: float | None = None, audio: str | None = "tone", seed: int = 0,
               fps: float = FPS, n_frames: int | None = None) -> Path:
    """A 64x64 clip of `seconds` (or exactly `n_frames` frames) at `fps`; audio: 'tone' (stereo noise+tone),
    'silent' (zeros) or None (no track)."""
    n = round(seconds * fps) if n_frames is None else n_frames
    seconds = n / fps
    frames = np.zeros((n, 64, 64, 3), np.uint8)
    frames[..., 1] = (np.arange(n) * 7 % 256)[:, None, None]
    track = None
    if audio is not None:
        t = np.arange(round(seconds * SR)) / SR
        if audio == "tone":
            rng = np.random.default_rng(seed)
            left = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
            track = Audio(np.stack([left, 0.2 * np.sin(2 * np.pi * 660 * t)]), SR)
        else:
            track = Audio(np.zeros((1, t.size)), SR)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, frames, fps, audio=track)


# ------------------------------------------------------------------------------------------ pure helpers


def test_clip_spans_equal_cuts_without_tail():
    assert clip_spans(65.0, 30.0) == [(0.0, 21.667), (21.667, 43.333), (43.333, 65.0)]
    assert clip_spans(60.0, 30.0) == [(0.0, 30.0), (30.0, 60.0)]
    assert clip_spans(29.9, 30.0) == [(0.0, 29.9)]
    assert clip_spans(0.0, 30.0) == [] and clip_spans(0.0004, 30.0) == []
    for d in (0.5, 7.3333, 59.9999, 90.001, 123.4567):
        spans = clip_spans(d, 30.0)
        assert spans[0][0] == 0.0 and spans[-1][1] <= d
        assert all(b - a <= 30.0 + 1e-9 for a, b in spans)
        assert all(s1[1] == s2[0] for s1, s2 in zip(spans, spans[1:]))
        lengths = [b - a for a, b in spans]
        assert max(lengths) - min(lengths) <= 0.0015  # equal up to ms rounding: no tiny tail


def test_clip_spans_absorb_rounded_container_durations():
    assert clip_spans(30.04, 30.0) == [(0.0, 30.0)]  # BGM909's 30 s videos: one clip, trimmed to the window
    assert clip_spans(30.5, 30.0) == [(0.0, 30.0)]  # the tolerance is inclusive
    assert clip_spans(30.6, 30.0) == [(0.0, 15.3), (15.3, 30.6)]  # really longer: equal cuts, as before
    assert clip_spans(60.04, 30.0) == [(0.0, 30.0), (30.0, 60.0)]  # whole clips plus rounding, not 3 x 20.013
    assert clip_spans(30.04, 30.0, tolerance_s=0.0) == [(0.0, 15.02), (15.02, 30.04)]  # without: the old cut
    for bad in (-0.1, 30.0, float("nan")):
        with pytest.raises(BuildError, match="tolerance"):
            clip_spans(40.0, 30.0, tolerance_s=bad)


def test_window_spans_fixed_length_hop_and_tail():
    hop5 = [(0.0, 10.0), (5.0, 15.0), (10.0, 20.0), (15.0, 25.0), (20.0, 30.0)]
    assert window_spans(30.04, 10.0, 5.0) == hop5
    assert window_spans(27.0, 10.0) == [(0.0, 10.0), (10.0, 20.0)]  # the 7 s tail is dropped
    assert window_spans(30.0, 5.0, 10.0) == [(0.0, 5.0), (10.0, 15.0), (20.0, 25.0)]  # hop > window: gaps
    # 899 frames at 29.97 fps last 29.997 s: the last window misses 3 ms (within the tolerance) and ends there
    assert window_spans(899 / (30000 / 1001), 10.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 29.996)]
    assert window_spans(899 / (30000 / 1001), 10.0, tolerance_s=0.0) == [(0.0, 10.0), (10.0, 20.0)]
    assert window_spans(29.4, 10.0) == [(0.0, 10.0), (10.0, 20.0)]  # 0.6 s missing: beyond the tolerance
    assert window_spans(9.0, 10.0) == [] and window_spans(9.6, 10.0) == [(0.0, 9.6)]
    dense = window_spans(12.0, 10.0, 0.1)  # no shortened windows after the one that reaches the end
    assert len(dense) == 21 and dense[-1] == (2.0, 12.0) and all(round(b - a, 3) == 10.0 for a, b in dense)


def test_source_id_sanitising():
    assert source_id("promos/ad 1.mp4") == "promos-ad_1"
    assert source_id("My Clip (1)/Trailer #2.MOV") == "My_Clip_1-Trailer_2"
    assert source_id("café/été.mkv") == "cafe-ete"
    assert source_id("-_x.y.mp4") == "x.y"
    weird = source_id("音乐.mp4")
    assert weird != source_id("视频.mp4")
    for s in ("promos/ad 1.mp4", "a/b/c d&e.webm", "音乐.mp4", "...mp4", "__.mp4"):
        assert ID_PATTERN.match(source_id(s)), s


def test_split_assignment_is_deterministic_and_follows_ratios():
    ids = [f"video{i}" for i in range(3000)]
    first = [assign_split(i) for i in ids]
    assert first == [assign_split(i) for i in ids]
    share = {s: first.count(s) / len(ids) for s in ("train", "val", "test")}
    assert abs(share["train"] - 0.8) < 0.03 and abs(share["val"] - 0.1) < 0.02
    assert {assign_split(i, (0, 1, 0)) for i in ids[:50]} == {"val"}
    with pytest.raises(BuildError):
        assign_split("x", (1, -1, 0))


def test_parse_category():
    assert parse_category("Promos") == "promo"
    assert parse_category("commercials") == "commercial"
    assert parse_category("COMPILATION") == "compilation"
    assert parse_category("misc") is None


# ------------------------------------------------------------------------------------------ building


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """promos/ (cut into 3), Commercials/, compilations/ (silent track), misc/ (no track), one top-level."""
    root = tmp_path_factory.mktemp("videos")
    make_video(root / "promos" / "ad one.mp4", 6.52, seed=1)
    make_video(root / "Commercials" / "spot.mp4", 1.6, seed=2)
    make_video(root / "compilations" / "quiet.mp4", 1.2, audio="silent")
    make_video(root / "misc" / "mute.mp4", 1.2, audio=None)
    make_video(root / "top.mp4", 2.0, seed=3)
    (root / "notes.txt").write_text("not a video")
    (root / ".hidden.mp4").write_bytes(b"junk")
    return root


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "manifest.jsonl"
    calls = []
    report = build_dataset(corpus, out, max_clip_s=3.0, progress=lambda i, n: calls.append((i, n)))
    return report, calls


def test_build_cuts_and_manifest_roundtrip(built, corpus):
    report, calls = built
    assert calls == [(i, 5) for i in range(1, 6)]
    assert report.skipped == []
    m = load_manifest(report.manifest)
    assert sorted(c.id for c in m.clips) == [c.id for c in report.clips]
    promo = [c for c in report.clips if c.id.startswith("promos-ad_one-")]
    assert [c.id for c in promo] == ["promos-ad_one-000", "promos-ad_one-001", "promos-ad_one-002"]
    # 6.52 s at <= 3 s: three equal clips of 2.173 s (the 65 s -> 3 x 21.667 s rule, scaled down)
    assert [(c.start, c.end) for c in promo] == [(0.0, 2.173), (2.173, 4.347), (4.347, 6.52)]
    assert len({c.split for c in promo}) == 1  # one source video, one split: no leakage
    assert m.resolve(promo[0].video).resolve() == (corpus / "promos" / "ad one.mp4").resolve()
    assert all(c.source == "real" and c.end - c.start <= 3.0 for c in report.clips)


def test_build_extracts_reference_from_audio_track(built, corpus):
    report, _ = built
    m = load_manifest(report.manifest)
    promo = [c for c in m.clips if c.id.startswith("promos-ad_one-")]
    assert {c.reference for c in promo} == {"music/promos-ad_one.wav"}
    wav = load_audio(m.resolve(promo[0].reference))
    src = load_audio(corpus / "promos" / "ad one.mp4")
    assert (wav.sample_rate, wav.channels) == (SR, 2)  # native rate and channels
    assert wav.num_samples >= src.num_samples
    np.testing.assert_allclose(wav.samples[:, : src.num_samples], src.samples, atol=1e-6)
    assert abs(wav.duration_s - probe_video(corpus / "promos" / "ad one.mp4").duration_s) < 0.05


def test_build_no_reference_for_silent_or_missing_audio(built):
    report, _ = built
    by_id = {c.id: c for c in report.clips}
    assert by_id["compilations-quiet-000"].reference is None
    assert by_id["misc-mute-000"].reference is None
    assert not (report.manifest.parent / "music" / "compilations-quiet.wav").exists()
    assert by_id["top-000"].reference == "music/top.wav"


def test_build_categories_from_folders(built):
    cats = {c.id: c.category for c in built[0].clips}
    assert cats == {
        "promos-ad_one-000": "promo", "promos-ad_one-001": "promo", "promos-ad_one-002": "promo",
        "Commercials-spot-000": "commercial", "compilations-quiet-000": "compilation",
        "misc-mute-000": "other", "top-000": "other",
    }


def test_rebuild_is_identical(built, corpus):
    report, _ = built
    before = report.manifest.read_bytes()
    again = build_dataset(corpus, report.manifest, max_clip_s=3.0)
    assert again.manifest.read_bytes() == before


def test_build_without_reference_and_ai_source(corpus, tmp_path):
    report = build_dataset(corpus, tmp_path / "m.jsonl", source="ai-generated", with_reference=False,
                           max_clip_s=3.0)
    assert all(c.reference is None and c.source == "ai-generated" for c in report.clips)
    assert not (tmp_path / "music").exists()


def test_build_categories_from_csv(corpus, tmp_path):
    csv_path = tmp_path / "cats.csv"
    csv_path.write_text(
        "\ufeffVideo,Category,caption\n"
        "promos/ad one.mp4,Compilation,a long ad\n"  # relative path overrides the folder
        "spot,commercial,\n"  # bare stem
        "top.mp4,PROMOS,the top one\n"
        "missing.mp4,other,\n"  # matches nothing: ignored
    )
    report = build_dataset(corpus, tmp_path / "m.jsonl", categories_csv=csv_path, with_reference=False,
                           max_clip_s=3.0)
    by_id = {c.id: c for c in report.clips}
    assert by_id["promos-ad_one-001"].category == "compilation"
    assert by_id["promos-ad_one-001"].caption == "a long ad"
    assert by_id["Commercials-spot-000"].category == "commercial"
    assert by_id["Commercials-spot-000"].caption is None
    assert (by_id["top-000"].category, by_id["top-000"].caption) == ("promo", "the top one")
    assert by_id["misc-mute-000"].category == "other"  # no row: folder rule, then 'other'


def test_build_bad_category_in_csv_names_the_row(corpus, tmp_path):
    csv_path = tmp_path / "cats.csv"
    csv_path.write_text("video,category\ntop.mp4,promo\npromos/ad one.mp4,trailer\n")
    with pytest.raises(BuildError, match=r"line 3.*'trailer'"):
        build_dataset(corpus, tmp_path / "m.jsonl", categories_csv=csv_path, max_clip_s=3.0)
    csv_path.write_text("video,caption\ntop.mp4,x\n")
    with pytest.raises(BuildError, match="missing column"):
        build_dataset(corpus, tmp_path / "m.jsonl", categories_csv=csv_path, max_clip_s=3.0)


def test_build_skips_corrupt_and_empty_videos(tmp_path):
    src = tmp_path / "videos"
    make_video(src / "good.mp4", 1.0)
    (src / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    (src / "empty.mov").write_bytes(b"")
    report = build_dataset(src, tmp_path / "out" / "m.jsonl", max_clip_s=3.0)
    assert [c.id for c in report.clips] == ["good-000"]
    skipped = dict(report.skipped)
    assert set(skipped) == {str(src / "corrupt.mp4"), str(src / "empty.mov")}
    assert "empty" in skipped[str(src / "empty.mov")]
    assert skipped[str(src / "corrupt.mp4")]  # FFmpeg's own words; any reason will do
    assert [json.loads(x)["id"] for x in report.manifest.read_text().splitlines()] == ["good-000"]


def test_build_nothing_usable_and_no_videos(tmp_path):
    src = tmp_path / "videos"
    src.mkdir()
    with pytest.raises(BuildError, match="no video files"):
        build_dataset(src, tmp_path / "m.jsonl")
    (src / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(BuildError, match="none of the 1 video"):
        build_dataset(src, tmp_path / "m.jsonl")
    assert not (tmp_path / "m.jsonl").exists()


def test_build_id_collision_is_an_error(tmp_path):
    src = tmp_path / "videos"
    src.mkdir()
    (src / "a b.mp4").write_bytes(b"")
    (src / "a_b.mp4").write_bytes(b"")
    with pytest.raises(BuildError, match="same id 'a_b'"):
        build_dataset(src, tmp_path / "m.jsonl")


def test_find_videos_sorted_and_filtered(corpus):
    rels = [p.relative_to(corpus).as_posix() for p in find_videos(corpus)]
    assert rels == sorted(rels) and len(rels) == 5 and ".hidden.mp4" not in rels


def test_ids_are_valid_and_splits_do_not_straddle(tmp_path):
    src = tmp_path / "videos"
    for i in range(8):
        make_video(src / f"set #{i}" / f"clip ({i}).mp4", 2.7, audio=None)  # 2.72 s: 3 clips of 0.907 s
    report = build_dataset(src, tmp_path / "m.jsonl", max_clip_s=1.0)
    assert len(report.clips) == 8 * 3
    splits: dict[str, set[str]] = {}
    for c in report.clips:
        assert ID_PATTERN.match(c.id)
        splits.setdefault(c.id.rsplit("-", 1)[0], set()).add(c.split)
    assert all(len(s) == 1 for s in splits.values())
    assert {c.split for c in report.clips} <= {"train", "val", "test"}


# ------------------------------------------------------------------ real test sets: rounding, windows, splits


def _by_source(clips) -> dict[str, list[tuple[float, float]]]:
    spans: dict[str, list[tuple[float, float]]] = {}
    for c in sorted(clips, key=lambda c: c.id):
        spans.setdefault(c.id.rsplit("-", 1)[0], []).append((c.start, c.end))
    return spans


@pytest.fixture(scope="module")
def real_set(tmp_path_factory) -> tuple[Path, Path]:
    """Videos of about 30 s as containers report them, at 25, 29.97 and 23.976 fps; a decode-probe cache."""
    root = tmp_path_factory.mktemp("real")
    make_video(root / "bgm.mp4", n_frames=751)  # 30.04 s, as BGM909's 30 s videos report
    make_video(root / "long.mp4", n_frames=765, audio=None)  # 30.6 s: really longer than one clip
    make_video(root / "ntsc.mp4", n_frames=899, fps=30000 / 1001, audio=None)  # 29.997 s
    make_video(root / "film.mp4", n_frames=720, fps=24000 / 1001, audio=None)  # 30.03 s
    return root, tmp_path_factory.mktemp("probe-cache")


def test_rounded_container_durations_and_odd_rates(real_set, tmp_path, monkeypatch):
    root, cache = real_set
    durations = {p.stem: round(probe_video(p).duration_s, 4) for p in find_videos(root)}
    assert durations == {"bgm": 30.04, "film": 30.03, "long": 30.6, "ntsc": 29.9966}
    report = build_dataset(root, tmp_path / "m.jsonl", cache=cache)
    assert report.skipped == []
    assert _by_source(report.clips) == {
        "bgm": [(0.0, 30.0)], "film": [(0.0, 30.0)], "ntsc": [(0.0, 29.996)],
        "long": [(0.0, 15.3), (15.3, 30.6)],
    }
    assert [c.reference for c in report.clips if c.id == "bgm-000"] == ["music/bgm.wav"]
    # `data check` accepts them all (no false truncation at 23.976 or 29.97 fps), reusing build's probes
    probed = []
    monkeypatch.setattr(check, "probe_decodable", lambda p: probed.append(p))
    _, problems = check_manifest(report.manifest, cache=cache)
    assert problems == [], format_problems(problems)
    assert probed == []


def test_cli_windows_one_split_and_ratios(real_set, tmp_path, monkeypatch, capsys):
    root, cache = real_set
    monkeypatch.setenv("VM_EVAL_CACHE", str(cache))
    out = tmp_path / "w.jsonl"
    base = ["data", "build", str(root), "--out", str(out), "--no-reference"]
    assert main([*base, "--window", "10", "--hop", "5", "--split", "test"]) == 0
    clips = load_manifest(out).clips
    assert {c.split for c in clips} == {"test"}
    grid = [(0.0, 10.0), (5.0, 15.0), (10.0, 20.0), (15.0, 25.0), (20.0, 30.0)]  # tails past 30 s dropped
    ntsc = [*grid[:-1], (20.0, 29.996)]  # 29.997 s: the last window misses 3 ms, within the tolerance
    assert _by_source(clips) == {"bgm": grid, "film": grid, "long": grid, "ntsc": ntsc}
    assert sorted(c.id for c in clips if c.id.startswith("bgm-")) == [f"bgm-{k:03d}" for k in range(5)]

    assert main([*base, "--split-ratios", "0,1,0"]) == 0
    assert {c.split for c in load_manifest(out).clips} == {"val"}
    capsys.readouterr()
    for bad in (["--split-ratios", "1,0"], ["--hop", "5"], ["--split", "a/b"], ["--window", "40"]):
        assert main([*base, *bad]) == 2
        assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(SystemExit):  # argparse: mutually exclusive options
        main([*base, "--split", "test", "--split-ratios", "1,0,0"])
    with pytest.raises(SystemExit):
        main([*base, "--window", "10", "--max-clip-seconds", "20"])


def test_build_help_documents_every_option():
    sub = build_parser()
    for name in ("data", "build"):
        sub = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    assert all(a.help for a in sub._actions), [a.dest for a in sub._actions if not a.help]
    text = sub.format_help()
    assert "0.5" in text and "30.04" in text and "dropped" in text
    assert sub.parse_args([".", "--out", "m.jsonl"]).window_tolerance == WINDOW_TOLERANCE_S


def test_build_skips_a_truncated_video_with_its_reason(tmp_path):
    src = tmp_path / "videos"
    make_video(src / "good.mp4", 1.0)
    truncated_faststart(make_video(tmp_path / "whole.mp4", 9.04), src / "cut.mp4")
    report = build_dataset(src, tmp_path / "m.jsonl", with_reference=False)
    assert [c.id for c in report.clips] == ["good-000"]  # not a 9.04 s clip of which 70% is one frozen frame
    reason = dict(report.skipped)[str(src / "cut.mp4")]
    assert reason.startswith("truncated video: it decodes") and "of the 9.040 s its header declares" in reason
