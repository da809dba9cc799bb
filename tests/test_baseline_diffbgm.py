"""Diff-BGM adapter against a fake of upstream's inference_sdf.py + dirs.py (cwd-relative paths, split loop, bare
except and outputs as at the adapter's commit)."""
from __future__ import annotations

import pickle
import time
from concurrent.futures import ThreadPoolExecutor

import mido
import numpy as np
import pytest

from baseline_fakes import adapter_factory, demo_clips, fake_checkout, not_configured_message
from baselines.diffbgm import SPEC, DiffBGM, midi_window
from baselines.external.adapter import safe_stem
from baselines.external.midi import RENDER_RATE
from baselines.external.process import UpstreamError, UpstreamTimeout
from vm_eval.data.manifest import Clip, Manifest
from vm_eval.media import Audio
from vm_eval.models.api import ClipInput, NotApplicable

SCRIPTS = {"diffbgm/inference_sdf.py": "diffbgm_inference_sdf.py", "diffbgm/dirs.py": "diffbgm_dirs.py"}


def add_song(data, song: str, n_seg: int = 1) -> None:
    """BGM909's four files for one song, in the formats upstream reads (contents are placeholders)."""
    pop = data / "POP909_4_bin_pnt_8bar"
    feats = data / "bgm909"
    for d in (pop, feats / "new_raw_video_feats", feats / "caption_feats", feats / "detection"):
        d.mkdir(parents=True, exist_ok=True)
    n_beats = 32 * n_seg
    np.savez(pop / f"{song}.npz", notes=np.zeros((3, 0, 5)), start_table=np.zeros((3, 4 * n_beats), dtype=int),
             db_pos=np.arange(0, 4 * n_beats, 16), db_pos_filter=np.ones(2 * n_seg * 4, dtype=bool),
             chord=np.zeros((n_beats, 14), dtype=int))
    (feats / "new_raw_video_feats" / f"{song}.pth").write_bytes(b"PTH!fake tensor")
    np.save(feats / "caption_feats" / f"{song}.npy", np.zeros((12, 768), dtype=np.float32))
    (feats / "detection" / f"{song}_scenes.txt").write_text("0 40\n41 99\n")


@pytest.fixture
def setup(tmp_path, monkeypatch, data_dir):
    checkout = fake_checkout(tmp_path / "Diff-BGM", SCRIPTS)
    (checkout / "README.md").write_text("fake")
    model_dir = tmp_path / "weights"
    (model_dir / "chkpts").mkdir(parents=True)
    (model_dir / "params.json").write_text('{"cond_type": "c_v", "cond_mode": "mix"}')
    (model_dir / "chkpts" / "weights_best.pt").write_bytes(b"weights")
    add_song(checkout / "data", "demo-000")
    demo = Manifest(path=data_dir / "demo" / "manifest.jsonl", clips=[])

    def clip(cid, video, start, end):
        return ClipInput(Clip(id=cid, video=video, start=start, end=end, split="test"), demo, 0, tmp_path / "cache" /
                         "media")

    make = adapter_factory(monkeypatch, DiffBGM, checkout, {"model": model_dir})

    return make, demo_clips(data_dir, tmp_path / "cache", n=2), clip, checkout


def test_runs_bgm909_songs_and_skips_every_other_clip(setup):
    make, clips, clip, checkout = setup
    # a user's own earlier run in the checkout: a stale output and a 50-song split must not be used
    (checkout / "exp" / "visual+caption_mask2").mkdir(parents=True)
    (checkout / "exp" / "visual+caption_mask2" / "demo-000.mid").write_bytes(b"stale")
    (checkout / "data" / "train_split_pnt").mkdir()
    (checkout / "data" / "train_split_pnt" / "pop909_new.pickle").write_bytes(
        pickle.dumps(([], [f"{i:03d}.npz" for i in range(50)])))
    model = make(keep_work=True)
    same_song = clip("demo-000-b", "videos/demo-000.mp4", 0.0, 9.04)  # another clip of song demo-000
    out, skipped, other = model.generate(clips + [same_song])
    assert isinstance(out, Audio), out
    assert out.sample_rate == RENDER_RATE and out.num_samples == round(clips[0].duration_s * RENDER_RATE)
    assert np.abs(out.samples).max() > 0.01
    assert isinstance(skipped, NotApplicable)
    msg = str(skipped)
    assert "precomputed features" in msg and "no feature" in msg and "extractor" in msg
    assert str(checkout / "data" / "POP909_4_bin_pnt_8bar" / "demo-001.npz") in msg
    assert str(checkout / "data" / "bgm909" / "caption_feats" / "demo-001.npy") in msg
    log = model.log_path(clips[0]).read_text()
    assert "diffbgm/inference_sdf.py" in log and "--uncond_scale 5.0" in log
    assert f"--seed {clips[0].seed % 2**32}" in log and "exit code 0" in log
    # the private tree: a one-song split at index 0 (protocol 4), its own exp/; the checkout is untouched
    tree = model._base(clips[0]) / "work" / safe_stem(clips[0].id) / "tree"
    raw = (tree / "data" / "train_split_pnt" / "pop909_new.pickle").read_bytes()
    assert raw[:2] == b"\x80\x04" and pickle.loads(raw) == ([], ["demo-000.npz"])
    assert (tree / "exp" / "visual+caption_mask2" / "demo-000.mid").stat().st_size > 100
    assert (tree / "diffbgm").is_symlink() and (tree / "result" / "symmv").is_dir()
    assert sorted(p.name for p in checkout.iterdir()) == ["README.md", "data", "diffbgm", "exp"]
    assert sorted(p.name for p in (checkout / "exp").rglob("*")) == ["demo-000.mid", "visual+caption_mask2"]
    # same seed, same music; another clip of the same song has its own seed
    assert isinstance(other, Audio)
    assert np.array_equal(model.generate(clips[:1])[0].samples, out.samples)
    assert not np.array_equal(other.samples, out.samples)
    ids = {c["name"]: c for c in model.checkpoints()}
    assert len(ids["diff-bgm:model"]["sha256"]) == 64 and model.info.extra["upstream_commit"] == SPEC.commit


def test_exit_zero_without_output_fails_the_clip(setup):
    make, clips, _, checkout = setup
    model = make()
    out = make(mode="nooutput").generate(clips[:1])[0]
    assert isinstance(out, UpstreamError) and "exited 0 but wrote no exp/visual+caption_mask2/demo-000.mid" in str(out)
    # a feature file that exists but does not load: upstream's bare except skips the song and exits 0
    (checkout / "data" / "bgm909" / "caption_feats" / "demo-000.npy").write_bytes(b"not numpy")
    out = model.generate(clips[:1])[0]
    assert isinstance(out, UpstreamError) and "bare `except: continue`" in str(out) and "exit code 0" in str(out)


@pytest.mark.parametrize("mode, message", [
    ("exit", "exited with code 1"), ("short", "wrong duration"), ("garbage", "does not parse"),
])
def test_upstream_failures_fail_the_clip_with_the_reason(setup, mode, message):
    make, clips, _, _ = setup
    out = make(mode=mode).generate(clips[:1])[0]
    assert isinstance(out, UpstreamError) and message in str(out), out
    if mode == "exit":
        assert "CUDA out of memory (fake)" in str(out)


def test_hang_is_killed_at_the_timeout(setup):
    make, clips, _, _ = setup
    t0 = time.perf_counter()
    out = make(mode="hang", timeout_s=2).generate(clips[:1])[0]
    assert isinstance(out, UpstreamTimeout) and time.perf_counter() - t0 < 20
    assert "killed after 2 s" in out.log.read_text()


def test_the_clips_span_is_cut_from_the_song(setup):
    make, _, clip, checkout = setup
    add_song(checkout / "data", "demo-004", n_seg=2)  # 32 s of music for a 21 s video
    add_song(checkout / "data", "demo-013", n_seg=1)  # 16 s of music
    model = make(keep_work=True)
    inside, beyond = model.generate([clip("late", "videos/demo-004.mp4", 10.0, 18.0),
                                     clip("past", "videos/demo-013.mp4", 20.0, 25.0)])
    assert isinstance(inside, Audio) and inside.num_samples == 8 * RENDER_RATE
    assert np.abs(inside.samples[:, -RENDER_RATE:]).max() > 0.01
    cut = model._base(clip("late", "", 0, 1)) / "work" / safe_stem("late") / "demo-004-window.mid"
    assert mido.MidiFile(str(cut)).length == pytest.approx(32.0 - 10.0, abs=0.01)
    assert isinstance(beyond, UpstreamError) and "wrong duration" in str(beyond)
    assert "lasts 16.00 s" in str(beyond) and "span 20.00-25.00 s" in str(beyond)


def test_song_id_from_clip_id_or_video_stem(setup):
    make, _, clip, checkout = setup
    add_song(checkout / "data", "s001")
    c = clip("s001", "videos/demo-003.mp4", 0.0, 6.08)
    assert isinstance(make(id_from="clip-id").generate([c])[0], Audio)
    skipped = make().generate([c])[0]  # by video stem the song is demo-003, which has no features
    assert isinstance(skipped, NotApplicable) and "song 'demo-003', from its video-stem" in str(skipped)
    dotted = make(id_from="clip-id").generate([clip("s001.v2", "videos/demo-003.mp4", 0.0, 6.08)])[0]
    assert isinstance(dotted, NotApplicable) and "no dots" in str(dotted)
    with pytest.raises(ValueError, match="id_from"):
        make(id_from="title")


def test_data_dir_option_and_concurrent_clips_of_one_song(setup, tmp_path):
    make, clips, clip, _ = setup
    add_song(tmp_path / "bgm909-elsewhere", "demo-001")
    model = make(data_dir=str(tmp_path / "bgm909-elsewhere"))
    a, b = clips[1], clip("demo-001-b", "videos/demo-001.mp4", 0.0, 7.96)
    with ThreadPoolExecutor(2) as pool:  # two clips of one song at once: private trees, no collision
        outs = list(pool.map(lambda c: model.generate([c])[0], [a, b]))
    assert all(isinstance(o, Audio) for o in outs), outs
    assert isinstance(model.generate(clips[:1])[0], NotApplicable)  # demo-000 is not in that data folder


def test_midi_window_shifts_and_restarts_held_notes(tmp_path):
    src = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    src.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(60), time=0))  # 1 s per beat
    tr.append(mido.Message("program_change", program=5, time=0))
    tr.append(mido.Message("note_on", note=60, velocity=70, time=0))  # 0-3 s, held across the cut at 2 s
    tr.append(mido.Message("note_on", note=62, velocity=90, time=480))  # 1-1.5 s, gone before the cut
    tr.append(mido.Message("note_off", note=62, velocity=0, time=240))
    tr.append(mido.Message("note_off", note=60, velocity=0, time=720))  # 3 s
    tr.append(mido.Message("note_on", note=64, velocity=80, time=480))  # 4-5 s
    tr.append(mido.Message("note_on", note=64, velocity=0, time=480))
    src.save(str(tmp_path / "in.mid"))
    out = mido.MidiFile(str(midi_window(tmp_path / "in.mid", tmp_path / "out.mid", 2.0)))
    t, events = 0.0, []
    for msg in out:  # iterating a MidiFile yields times in seconds
        t += msg.time
        if msg.type in ("note_on", "note_off", "program_change"):
            events.append((round(t, 3), msg.type, getattr(msg, "note", None), getattr(msg, "velocity", None)))
    assert events == [(0.0, "program_change", None, None), (0.0, "note_on", 60, 70), (1.0, "note_off", 60, 0),
                      (2.0, "note_on", 64, 80), (3.0, "note_on", 64, 0)]
    assert out.length == pytest.approx(3.0)


def test_not_configured_names_every_missing_piece(monkeypatch, tmp_path):
    msg = not_configured_message(monkeypatch, tmp_path, DiffBGM)
    assert "git clone https://github.com/sizhelee/Diff-BGM" in msg and "python: not configured" in msg
    assert "checkpoint 'model'" in msg and "1QzmJjNsSDQKpAEATD3XbSZalI1AULx1O" in msg
