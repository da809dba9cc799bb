"""The synthesised demo dataset: coverage, media and ground truth, checked against the generated files."""
from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from vm_eval.data import demo
from vm_eval.data.demo import DEMO_VERSION, ClipTruth, load_ground_truth, make_demo
from vm_eval.data.manifest import CATEGORIES, SOURCES, load_manifest
from vm_eval.media import MediaError, decode_frames, load_audio, probe_video

FPS = 25


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    """One generation of the demo, shared by the module (it takes seconds)."""
    root = tmp_path_factory.mktemp("demo") / "demo"
    calls: list[tuple[int, int]] = []
    t0 = time.perf_counter()
    manifest_path = make_demo(root, progress=lambda done, total: calls.append((done, total)))
    elapsed = time.perf_counter() - t0
    manifest = load_manifest(manifest_path)
    return SimpleNamespace(root=root, manifest_path=manifest_path, manifest=manifest, clips=manifest.clips,
                           truth=load_ground_truth(root), elapsed=elapsed, progress=calls)


def _music_clips(ds):
    return [c for c in ds.clips if c.reference is not None]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def _frame_diffs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decoded frames [T, H, W, 3] and d[k] = mean |frame k - frame k-1| (d[0] = 0)."""
    frames = decode_frames(path, fps=FPS).astype(np.float32)
    return frames, np.r_[0.0, np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))]


def _onsets(path: Path) -> np.ndarray:
    """Onset strength per 10 ms hop: the rise of the signal's energy from one hop to the next (numpy only)."""
    audio = load_audio(path, mono=True)
    assert audio.sample_rate == 44100
    x, hop = audio.samples[0].astype(np.float64), 441
    energy = np.square(x[: len(x) // hop * hop]).reshape(-1, hop).sum(axis=1)
    return np.maximum(0.0, np.diff(energy, prepend=0.0))


def _frame(t: float) -> int:
    return round(t * FPS)


# --- manifest, coverage, durations -------------------------------------------------------------------------


def test_manifest_counts_and_test_split_coverage(ds):
    assert ds.manifest_path == ds.root / "manifest.jsonl"
    assert len(ds.clips) >= 20
    assert all(re.fullmatch(r"demo-\d{3}", c.id) for c in ds.clips)
    assert set(ds.manifest.splits()) == {"train", "val", "test"}
    assert set(ds.truth) == {c.id for c in ds.clips}
    test = ds.manifest.split("test")
    assert len(test) >= 8
    assert {c.category for c in test} == set(CATEGORIES)
    assert {c.source for c in test} == set(SOURCES)
    ai_silent = [c for c in test if c.source == "ai-generated" and c.reference is None]
    assert len(ai_silent) >= 2
    captions = [c.caption for c in test if c.caption]
    assert captions and all(3 <= len(cap.split()) <= 15 for cap in captions)
    assert any(c.caption is None for c in ds.clips)  # captions are optional, some clips have none
    for c in ds.clips:
        assert c.start == 0.0 and c.video == f"videos/{c.id}.mp4"
        assert ds.manifest.resolve(c.video).is_file()
        if c.source == "ai-generated":
            assert c.reference is None
        else:
            assert c.reference == f"music/{c.id}.wav" and ds.manifest.resolve(c.reference).is_file()
    assert len({c.video for c in ds.clips}) == len(ds.clips)  # each clip is its own source video
    assert ds.progress == [(i, len(ds.clips)) for i in range(1, len(ds.clips) + 1)]
    assert (ds.root / demo.STAMP).read_text().strip() == str(DEMO_VERSION)


def test_durations_from_decoded_media(ds):
    for c in ds.clips:
        info = probe_video(ds.manifest.resolve(c.video))
        truth = ds.truth[c.id]
        assert 5.0 <= info.duration_s <= 30.0, c.id
        assert info.duration_s == pytest.approx(c.end, abs=0.05) and truth.duration_s == pytest.approx(c.end)
        assert info.fps == pytest.approx(FPS) and truth.fps == FPS
        assert (info.width, info.height) == (128, 128)
        assert info.has_audio == (c.reference is not None), c.id
        if c.reference is not None:
            wav = sf.info(str(ds.manifest.resolve(c.reference)))
            assert (wav.samplerate, wav.channels) == (44100, 2)
            assert wav.frames / wav.samplerate == pytest.approx(truth.duration_s, abs=1e-6)


# --- ground truth: tempos, phases, cuts on beats ------------------------------------------------------------


def test_tempo_plan_and_cuts_on_beats(ds):
    music = _music_clips(ds)
    tempos = [ds.truth[c.id].tempo_bpm for c in music]
    phases = [ds.truth[c.id].beat_phase_s for c in music]
    assert all(70 <= t <= 170 for t in tempos)
    assert len({round(t, 3) for t in tempos}) >= 4
    assert len({round(p, 3) for p in phases}) >= 4
    for c in music:
        t: ClipTruth = ds.truth[c.id]
        period = 60.0 / t.tempo_bpm
        beats = np.array(t.beat_times)
        assert beats[0] == pytest.approx(t.beat_phase_s) and 0 <= t.beat_phase_s < period
        assert np.allclose(np.diff(beats), period, atol=1e-6)
        assert beats[-1] < t.duration_s and beats[-1] + period >= t.duration_s  # the grid covers the clip
        assert t.cut_times and t.key
        for cut in t.cut_times:
            assert np.abs(beats - cut).min() <= 0.010, (c.id, cut)
    for c in ds.clips:
        if c.reference is None:
            t = ds.truth[c.id]
            assert t.tempo_bpm is None and t.beat_phase_s is None and not t.beat_times and t.cut_times


def test_ground_truth_events_are_well_formed(ds):
    for c in ds.clips:
        t = ds.truth[c.id]
        assert t.cut_times and t.flash_times and t.motion_bursts and t.calm_spans, c.id
        assert t.cut_times == sorted(t.cut_times) and all(0 < x < t.duration_s for x in t.cut_times)
        assert all(0 < x < t.duration_s for x in t.flash_times)
        for a, b in t.motion_bursts:
            assert 0.45 <= b - a <= 1.55 and 0 < a < b < t.duration_s
        for a, b in [*t.motion_bursts, *t.calm_spans]:
            assert not any(a < x < b for x in t.cut_times)  # spans lie within one shot
        for a, b in t.calm_spans:
            assert not any(a <= x < b for x in t.flash_times)


# --- the events are really in the media ---------------------------------------------------------------------


def test_visual_events_in_decoded_frames(ds):
    for c in ds.clips:
        t = ds.truth[c.id]
        frames, d = _frame_diffs(ds.manifest.resolve(c.video))
        assert len(frames) == _frame(t.duration_s)
        cuts = [_frame(x) for x in t.cut_times]
        flashes = [_frame(x) for x in t.flash_times]
        for k in cuts:  # a hard cut: the frame changes completely, and only there
            assert d[k] > 40 and d[k] == d[k - 2 : k + 3].max(), (c.id, k / FPS, d[k - 2 : k + 3])
        flash_edges = set()
        for k in flashes:  # 1-2 near-white frames between normal ones
            end = k + next(i for i in range(1, 4) if frames[k + i].mean() < 200)
            assert end - k in (1, 2) and frames[k - 1].mean() < 200 and frames[k:end].mean() > 230, (c.id, k)
            flash_edges |= {k, end}
        jumps = set(np.nonzero(d > 40)[0].tolist())
        assert jumps == set(cuts) | flash_edges, (c.id, sorted(jumps), cuts, flashes)  # no unknown events
        calm_means = []
        for a, b in t.calm_spans:
            inner = d[_frame(a) + 1 : _frame(b)]
            assert inner.max() < 4.0, (c.id, a, b, inner.max())
            calm_means.append(inner.mean())
        assert max(calm_means) < 1.5
        for a, b in t.motion_bursts:
            burst = d[_frame(a) + 1 : _frame(b)].mean()
            assert burst > 2.0 and burst > 2 * max(calm_means), (c.id, a, b, burst, calm_means)


def test_music_onsets_at_beat_times(ds):
    strongest = []  # per beat: is its onset the strongest within a quarter beat either side?
    for c in _music_clips(ds):
        t = ds.truth[c.id]
        onset = _onsets(ds.manifest.resolve(c.reference))
        quarter_hops = round(100 * 60 / t.tempo_bpm) // 4

        def peak_near(time_s: float, radius: int = 2) -> float:  # radius in 10 ms hops
            i = round(time_s * 100)
            return onset[max(0, i - radius) : i + radius + 1].max()

        at_beats = np.array([peak_near(b) for b in t.beat_times])
        assert at_beats.min() > 0.15 * onset.max(), c.id  # every beat has a strong onset (within 20 ms)
        for b, v in zip(t.beat_times, at_beats):
            assert v >= 0.5 * peak_near(b, quarter_hops), (c.id, b)
            strongest.append(v == peak_near(b, quarter_hops))
        quarter = 60 / t.tempo_bpm / 4
        off_grid = [peak_near(b + q) for b in t.beat_times for q in (quarter, 3 * quarter)
                    if b + q < t.duration_s]
        assert at_beats.mean() > 8 * np.mean(off_grid), c.id  # and little happens between beats
        first = round(t.beat_times[0] * 100)  # silence before the first beat
        assert first <= 2 or onset[: first - 2].max() < 1e-6 * onset.max(), c.id
    # with a plain energy envelope the kick can blur into the decaying bass now and then, hence not all
    assert np.mean(strongest) >= 0.97, np.mean(strongest)


def test_video_soundtrack_matches_reference(ds):
    for c in _music_clips(ds):
        ref = load_audio(ds.manifest.resolve(c.reference))
        track = load_audio(ds.manifest.resolve(c.video))  # the AAC soundtrack
        assert (track.sample_rate, track.channels) == (ref.sample_rate, ref.channels) == (44100, 2)
        assert abs(track.num_samples - ref.num_samples) <= 1024, c.id
        n = min(track.num_samples, ref.num_samples)
        for ch in range(2):
            r, v = ref.samples[ch, :n].astype(np.float64), track.samples[ch, :n].astype(np.float64)
            assert np.corrcoef(r, v)[0, 1] > 0.99, (c.id, ch)
            lags = range(-16, 17)
            xc = [np.dot(r[100:n - 100], v[100 + lag : n - 100 + lag]) for lag in lags]
            assert list(lags)[int(np.argmax(xc))] == 0, c.id  # aligned to the sample


def test_ai_generated_videos_have_no_audio(ds):
    ai = [c for c in ds.clips if c.source == "ai-generated"]
    assert ai
    for c in ai:
        path = ds.manifest.resolve(c.video)
        assert not probe_video(path).has_audio
        with pytest.raises(MediaError):
            load_audio(path)


# --- determinism, idempotency, force, interruption ---------------------------------------------------------


def test_deterministic_and_idempotent(ds, tmp_path):
    assert ds.elapsed < 60, f"generation took {ds.elapsed:.1f} s"
    again = tmp_path / "again"
    assert make_demo(again) == again / "manifest.jsonl"
    first, second = _hashes(ds.root), _hashes(again)
    assert demo.STAMP in first and len(first) == len(ds.clips) + len(_music_clips(ds)) + 3
    assert second == first  # byte-identical, every file
    before = _mtimes(again)
    t0 = time.perf_counter()
    assert make_demo(again) == again / "manifest.jsonl"
    assert time.perf_counter() - t0 < 0.5
    assert _mtimes(again) == before  # nothing rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no partial/old folders left behind


@pytest.fixture
def small(monkeypatch):
    """A 3-clip demo (same code path) for the mechanics tests."""
    monkeypatch.setattr(demo, "SPLITS", ("test", "val", "train"))


def test_force_regenerates(small, tmp_path):
    out = tmp_path / "d"
    make_demo(out)
    hashes, mtimes = _hashes(out), _mtimes(out)
    time.sleep(0.01)
    make_demo(out, force=True)
    new_mtimes = _mtimes(out)
    assert set(new_mtimes) == set(mtimes) and all(new_mtimes[k] > mtimes[k] for k in hashes)
    assert _hashes(out) == hashes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_stale_or_other_version_is_regenerated(small, tmp_path):
    out = tmp_path / "d"
    make_demo(out)
    (out / demo.STAMP).write_text(f"{DEMO_VERSION - 1}\n")  # a dataset of an older version
    (out / "videos" / "demo-000.mp4").write_bytes(b"")
    make_demo(out)
    assert (out / demo.STAMP).read_text().strip() == str(DEMO_VERSION)
    assert probe_video(out / "videos" / "demo-000.mp4").duration_s > 5
    (out / demo.STAMP).unlink()  # an incomplete dataset (no stamp)
    make_demo(out)
    assert (out / demo.STAMP).is_file()


def test_interrupted_generation_leaves_nothing(small, tmp_path, monkeypatch):
    calls = []

    def failing_write_video(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated interruption")
        return real(*args, **kwargs)

    real = demo.write_video
    monkeypatch.setattr(demo, "write_video", failing_write_video)
    with pytest.raises(KeyboardInterrupt):
        make_demo(tmp_path / "d")
    assert list(tmp_path.iterdir()) == []  # neither the dataset nor a partial folder
    monkeypatch.setattr(demo, "write_video", real)
    make_demo(tmp_path / "d")
    assert demo.is_complete(tmp_path / "d")


def test_refuses_to_replace_a_foreign_folder(small, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        make_demo(out, force=True)
    assert (out / "notes.txt").read_text() == "keep me"
