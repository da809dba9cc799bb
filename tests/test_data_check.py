"""`vm-eval data check`: every problem of a manifest is reported at once, with its kind and clip id."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from vm_eval.cli import main
from vm_eval.data import check
from vm_eval.data.build import build_dataset
from vm_eval.data.check import Problem, check_manifest, format_problems
from vm_eval.media import Audio, probe_video, write_video, write_wav

FPS = 25
SR = 16000


def make_video(path: Path, seconds: float, with_audio: bool = True) -> Path:
    """64x64, 25 fps, with a 440 Hz stereo tone unless `with_audio` is False."""
    n = round(seconds * FPS)
    frames = np.full((n, 64, 64, 3), 90, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, frames, FPS, audio=tone(seconds) if with_audio else None)


def tone(seconds: float, silent_from: float | None = None) -> Audio:
    t = np.arange(round(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * 440 * t)
    if silent_from is not None:
        x[t >= silent_from] = 0.0
    return Audio(np.stack([x, x]), SR)


def truncated_faststart(src: Path, dst: Path, keep: float = 0.3) -> Path:
    """`src` remuxed with its index first (mp4 faststart, as files are served for streaming), then cut to
    `keep` of its bytes as an interrupted download leaves it: the header still declares the whole duration."""
    import av

    whole = dst.with_name(dst.stem + ".whole.mp4")
    faststart = {"movflags": "faststart"}
    with av.open(str(src)) as i, av.open(str(whole), "w", format="mp4", options=faststart) as o:
        outs = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for pkt in i.demux():
            if pkt.dts is not None:  # the demuxer's flush packets carry no data
                pkt.stream = outs[pkt.stream.index]
                o.mux(pkt)
    data = whole.read_bytes()
    whole.unlink()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def row(cid: str, video: str, start: float, end: float, reference: str | None = None, **kw) -> dict:
    return {"id": cid, "video": video, "reference": reference, "start": start, "end": end, "split": "test",
            **kw}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ds")
    make_video(root / "v3.mp4", 3.0, with_audio=False)
    (root / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    write_wav(root / "music" / "full.wav", tone(3.0, silent_from=2.0))  # silent over its last second
    write_wav(root / "music" / "short.wav", tone(1.0))
    (root / "music" / "garbage.wav").write_bytes(b"RIFF" + np.random.default_rng(1).bytes(500))
    return root


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_clean_manifest_has_no_problems(tmp_path):
    src = tmp_path / "videos"
    make_video(src / "promos" / "a.mp4", 2.4)
    make_video(src / "b.mp4", 1.2, with_audio=False)
    report = build_dataset(src, tmp_path / "out" / "manifest.jsonl", max_clip_s=1.0)
    calls = []
    manifest, problems = check_manifest(tmp_path / "out", progress=lambda i, n: calls.append((i, n)))
    assert problems == [], format_problems(problems)
    assert sorted(c.id for c in manifest.clips) == [c.id for c in report.clips]
    assert calls == [(1, 3), (2, 3), (3, 3)]  # two videos, one reference, each probed once
    assert format_problems(problems) == "no problems found"


def test_all_problems_reported_at_once(media):
    lines = [
        "",  # a blank line: file line numbers no longer equal row numbers
        row("good-000", "v3.mp4", 0.0, 1.5, "music/full.wav"),  # fine
        row("missing-000", "nowhere.mp4", 0.0, 1.0),
        row("corrupt-000", "corrupt.mp4", 0.0, 1.0),
        row("zero-000", "v3.mp4", 1.0, 1.0),
        row("good-000", "v3.mp4", 1.0, 2.0),  # duplicate id
        "{not json",
        row("short-000", "v3.mp4", 0.0, 2.0, "music/short.wav"),
        row("beyond-000", "v3.mp4", 2.0, 4.0),
        row("noref-000", "v3.mp4", 0.0, 1.0, "music/gone.wav"),
        row("silent-000", "v3.mp4", 2.0, 3.0, "music/full.wav"),
        row("garbled-000", "v3.mp4", 0.0, 1.0, "music/garbage.wav"),
        row("badcat-000", "v3.mp4", 0.0, 1.0, category="trailer"),
        ["not", "an", "object"],
        row("nan-000", "v3.mp4", 0.0, float("nan")),  # Clip accepts NaN; check must not
    ]
    path = write_jsonl(media / "manifest.jsonl", lines)
    manifest, problems = check_manifest(path)
    got = sorted((p.clip_id or "", p.kind) for p in problems)
    assert got == sorted([
        ("missing-000", "missing-file"),
        ("corrupt-000", "undecodable-video"),
        ("zero-000", "zero-length"),
        ("good-000", "duplicate-id"),
        ("", "schema"),  # line 7: not JSON
        ("short-000", "reference-short"),
        ("beyond-000", "span-beyond-video"),
        ("noref-000", "reference-missing"),
        ("silent-000", "reference-silent"),
        ("garbled-000", "reference-undecodable"),
        ("badcat-000", "schema"),
        ("", "schema"),  # line 14: not an object
        ("nan-000", "schema"),
    ]), format_problems(problems)
    by_kind = {p.kind: p for p in problems}
    assert "nowhere.mp4" in by_kind["missing-file"].message
    assert "missing-000" in by_kind["missing-file"].message
    assert "corrupt.mp4" in by_kind["undecodable-video"].message
    assert "short.wav" in by_kind["reference-short"].message
    assert "line 6" in by_kind["duplicate-id"].message  # file line numbers, not row numbers
    assert "(also line 2)" in by_kind["duplicate-id"].message
    assert any("line 7" in p.message and "JSON" in p.message for p in problems)
    # the manifest holds the rows that passed the schema, files or not
    assert sorted(c.id for c in manifest.clips) == sorted(
        ["good-000", "missing-000", "corrupt-000", "short-000", "beyond-000", "noref-000", "silent-000",
         "garbled-000"])

    text = format_problems(problems)
    assert text.splitlines()[0] == "13 problem(s)"
    assert text.index("schema (4):") < text.index("missing-file (1):") < text.index("reference-silent (1):")


def test_probe_only_skips_silence(media, tmp_path):
    path = write_jsonl(media / "probe.jsonl", [
        row("silent-000", "v3.mp4", 2.0, 3.0, "music/full.wav"),
        row("short-000", "v3.mp4", 0.0, 2.0, "music/short.wav"),
    ])
    _, problems = check_manifest(path, decode=False)
    assert [(p.clip_id, p.kind) for p in problems] == [("short-000", "reference-short")]


def test_unreadable_manifest(tmp_path):
    manifest, problems = check_manifest(tmp_path / "none.jsonl")
    assert manifest is None and [p.kind for p in problems] == ["unreadable"]
    (tmp_path / "m.csv").write_text("id\n")
    manifest, problems = check_manifest(tmp_path / "m.csv")
    assert manifest is None and "unknown manifest format" in problems[0].message
    (tmp_path / "empty.jsonl").write_text("\n")
    manifest, problems = check_manifest(tmp_path / "empty.jsonl")
    assert manifest is not None and manifest.clips == []
    assert problems == [Problem(None, "schema", f"{tmp_path / 'empty.jsonl'}: manifest has no rows")]


def test_parquet_manifest(media):
    import pandas as pd

    path = media / "m.parquet"
    rows = [row("good-000", "v3.mp4", 0.0, 1.0), row("beyond-000", "v3.mp4", 2.5, 3.5)]
    pd.DataFrame(rows).to_parquet(path)
    manifest, problems = check_manifest(path)
    assert len(manifest.clips) == 2
    assert [(p.clip_id, p.kind) for p in problems] == [("beyond-000", "span-beyond-video")]


def test_truncated_video_is_reported_and_its_decode_probe_cached(tmp_path, monkeypatch, capsys):
    whole = make_video(tmp_path / "whole.mp4", 9.04)  # 226 frames at 25 fps, with a soundtrack
    truncated_faststart(whole, tmp_path / "cut.mp4")
    assert probe_video(tmp_path / "cut.mp4").duration_s == pytest.approx(9.04)  # the header cannot tell
    path = write_jsonl(tmp_path / "m.jsonl", [
        row("cut-000", "cut.mp4", 0.0, 9.04),
        row("head-000", "cut.mp4", 0.0, 1.0),  # what decodes of a truncated file is fine
        row("whole-000", "whole.mp4", 0.0, 9.04),
    ])
    probed = []
    real_probe = check.probe_decodable
    monkeypatch.setattr(check, "probe_decodable", lambda p: probed.append(Path(p).name) or real_probe(p))
    cache = tmp_path / "cache"

    _, problems = check_manifest(path, cache=cache)
    got = [(p.clip_id, p.kind) for p in problems]
    assert got == [("cut-000", "truncated-video")], format_problems(problems)
    msg = problems[0].message
    m = re.search(r"decodes (\d+) frames, to ([\d.]+) s, of the 9\.040 s its header declares", msg)
    assert m and int(m.group(1)) < 226 * 0.5 and float(m.group(2)) < 9.04 * 0.5, msg
    assert "the clip ends at 9.040 s" in msg and "cut.mp4" in msg
    assert sorted(probed) == ["cut.mp4", "whole.mp4"]

    # Cached by content: the CLI's second check (cache from VM_EVAL_CACHE) decodes neither file to its end.
    monkeypatch.setenv("VM_EVAL_CACHE", str(cache))
    assert main(["data", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "truncated-video (1):" in out and "cut-000" in out
    assert len(probed) == 2

    # An entry that cannot be read is recomputed, never trusted.
    for entry in (cache / check.PROBE_DIR).rglob("*.json"):
        entry.write_text("{torn")
    _, again = check_manifest(path, cache=cache)
    assert again == problems and len(probed) == 4
