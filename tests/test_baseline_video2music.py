"""Video2Music adapter against a fake of upstream's Python API (video2music.py + utilities/device.py at the commit).

The wrapper (baselines/external/wrappers/video2music_generate.py) runs for real under this interpreter; only
upstream's module is faked. The checkout is built here rather than by baseline_fakes.fake_checkout alone because the
fake needs a real utilities/__init__.py and chord.json (fake_checkout's extra files hold the bytes b"fake").
"""
from __future__ import annotations

import json
import time
from types import SimpleNamespace

import mido
import numpy as np
import pytest

from baseline_fakes import adapter_factory, checkpoint_dir, demo_clips, fake_checkout, not_configured_message
from baselines.external.adapter import NotConfigured, safe_stem
from baselines.external.config import DEFAULT_SOUNDFONTS
from baselines.external.midi import midi_duration_s, render_midi
from baselines.external.process import UpstreamError, UpstreamTimeout
from baselines.video2music import SPEC, Video2Music, truncate_midi, upstream_chord_name
from vm_eval.media import Audio, audio_stats
from vm_eval.models.api import NotApplicable

WEIGHTS = ("best_loss_weights.pickle", "best_rmse_weights.pickle")
ROOTS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
KINDS = ("", ":dim", ":sus4", ":min7", ":min", ":sus2", ":aug", ":dim7", ":maj6", ":hdim7", ":7", ":min6", ":maj7")


def make_checkout(root):
    checkout = fake_checkout(root, {"video2music.py": "video2music_api.py", "utilities/device.py": "video2music_device.py"})
    (checkout / "utilities" / "__init__.py").write_text("")
    chords = ["N"] + [r + k for r in ROOTS for k in KINDS]  # upstream's dataset/vevo_meta/chord.json keys
    (checkout / "dataset" / "vevo_meta").mkdir(parents=True)
    (checkout / "dataset" / "vevo_meta" / "chord.json").write_text(json.dumps({c: i for i, c in enumerate(chords)}))
    (checkout / "output").mkdir()
    (checkout / "output" / "keep.txt").write_text("a user's own result")  # upstream's generate() would delete it
    return checkout


@pytest.fixture
def setup(tmp_path, monkeypatch, data_dir):
    checkout = make_checkout(tmp_path / "Video2Music")
    ckpt = checkpoint_dir(tmp_path / "AMT", WEIGHTS)

    make = adapter_factory(monkeypatch, Video2Music, checkout, {"amt": ckpt})

    # a space in the cache path: upstream puts the video path unquoted into a shell command
    return make, demo_clips(data_dir, tmp_path / "cache dir", n=2), checkout


def test_generates_rendered_midi_of_the_clip_length_deterministically(setup):
    make, clips, checkout = setup
    model = make(keep_work=True)
    outs = model.generate(clips)
    for clip, out in zip(clips, outs):
        assert isinstance(out, Audio), out
        assert out.sample_rate == 32000 and out.num_samples == round(clip.duration_s * 32000)
        assert not audio_stats(out).silent
        # upstream wrote 300 s whatever the clip; what was rendered was cut 1 s after the clip's end
        out_dir = model._base(clip) / "work" / safe_stem(clip.id) / "out"
        assert midi_duration_s(out_dir / f"{safe_stem(clip.id)}.mid") >= 300
        assert abs(midi_duration_s(out_dir / f"{safe_stem(clip.id)}-clip.mid") - (clip.duration_s + 1)) < 0.01
    log = model.log_path(clips[0]).read_text()
    assert f"seed {clips[0].seed % 2**32}" in log and "primer='C Am F G', key='C major'" in log
    assert "fake Video2music(device='cpu'), CUDA_VISIBLE_DEVICES=''" in log and "exit code 0" in log
    # the checkout is untouched: upstream's ./feature and ./output lived in the clip's private folder
    assert (checkout / "output" / "keep.txt").read_text() == "a user's own result"
    assert not (checkout / "feature").exists() and not list(checkout.glob("temp-audio*"))
    ids = {c["name"] for c in model.checkpoints()}
    assert "video2music:amt" in ids and "soundfont:FluidR3_GM.sf2" in ids
    assert model.info.output == "midi" and model.info.extra["key"] == "C major"
    again = make().generate(clips[:1])[0]  # one process per clip: same seed, same music
    assert np.array_equal(again.samples, outs[0].samples)
    assert not np.array_equal(outs[0].samples[:, :32000], outs[1].samples[:, :32000])


@pytest.mark.parametrize("mode, message", [
    ("exit", "exited with code 1"), ("nooutput", "generate() returned but wrote no"),
    ("short", "wrong duration"),
])
def test_upstream_failures_fail_the_clip_with_the_reason(setup, mode, message):
    make, clips, _ = setup
    outs = make(mode=mode).generate(clips[:1])
    assert isinstance(outs[0], UpstreamError) and message in str(outs[0])
    if mode == "exit":
        assert "CUDA out of memory (fake)" in str(outs[0])  # the log's tail travels with the error


def test_hang_is_killed_at_the_timeout(setup):
    make, clips, _ = setup
    t0 = time.perf_counter()
    outs = make(mode="hang", timeout_s=2).generate(clips[:1])
    assert isinstance(outs[0], UpstreamTimeout) and time.perf_counter() - t0 < 20
    assert "killed after 2 s" in outs[0].log.read_text()


def test_cuda_device_turns_upstreams_cuda_switch_on(setup):
    # upstream's utilities/device.py starts with USE_CUDA = False: a CUDA model would meet CPU tensors (the fake
    # raises that device mismatch); the wrapper calls use_cuda(True) and uses cuda:0 of the selected GPU
    make, clips, checkout = setup
    model = make(device="cuda:1", primer="", key="A minor")
    out = model.generate(clips[:1])[0]
    assert isinstance(out, Audio), out
    log = model.log_path(clips[0]).read_text()
    assert "fake Video2music(device='cuda:0'), CUDA_VISIBLE_DEVICES='1'" in log and "key='A minor'" in log
    # the work folder (with its symlinks into the checkout and the weights) was removed, not what they point to
    assert not any((model._base(clips[0]) / "work").iterdir())
    assert (checkout / "dataset" / "vevo_meta" / "chord.json").is_file() and (checkout / "video2music.py").is_file()
    assert all((model.config.checkpoints["amt"] / f).is_file() for f in WEIGHTS)


def test_options_are_checked_before_any_clip_runs(setup):
    make, _, _ = setup
    with pytest.raises(ValueError, match="not one of upstream's"):
        make(key="H major")
    with pytest.raises(ValueError, match="no chord 'Cb', 'Xm'"):
        make(primer="C Cb Am Xm")
    with pytest.raises(ValueError, match="'cpu' or 'cuda"):
        make(device="mps")
    model = make(primer="  BbM7 F#m7  Ebdim Gsus4 E7 ")
    assert model.primer == "BbM7 F#m7 Ebdim Gsus4 E7"
    assert [upstream_chord_name(c) for c in model.primer.split()] == ["A#:maj7", "F#:min7", "D#:dim", "G:sus4", "E:7"]


def test_clips_beyond_300_s_are_not_applicable(setup, tmp_path):
    make, _, _ = setup
    long = SimpleNamespace(id="long", duration_s=300.5, seed=1, cache_root=tmp_path)
    assert isinstance(make().generate([long])[0], NotApplicable)
    assert SPEC.max_duration_s == 300.0 and SPEC.output == "midi"


def test_truncated_midi_renders_like_the_whole_file_up_to_the_cut(tmp_path):
    mid = mido.MidiFile(ticks_per_beat=480)
    tempo, notes = mido.MidiTrack(), mido.MidiTrack()
    mid.tracks += [tempo, notes]  # MIDIUtil's layout: a tempo track, then the notes
    tempo.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(120), time=0))
    rng = np.random.default_rng(0)
    events = []
    for i in range(40):  # a note every beat lasting 2 beats: two notes sound across the cut
        n = int(48 + rng.integers(0, 24))
        events += [(i * 480, "note_on", n, 90), ((i + 2) * 480, "note_off", n, 0)]
    last = 0
    for tick, kind, n, vel in sorted(events, key=lambda e: (e[0], e[1] == "note_on")):
        notes.append(mido.Message(kind, note=n, velocity=vel, time=tick - last))
        last = tick
    whole = tmp_path / "whole.mid"
    mid.save(str(whole))
    cut = truncate_midi(whole, tmp_path / "cut.mid", 5.25)
    assert abs(midi_duration_s(cut) - 5.25) < 1e-3 and midi_duration_s(whole) == pytest.approx(20.5)
    events = [m for m in mido.MidiFile(str(cut)).tracks[1] if m.type in ("note_on", "note_off")]
    on = sum(m.type == "note_on" and m.velocity > 0 for m in events)
    assert on == sum(m.type == "note_off" or m.velocity == 0 for m in events) == 11  # every note ends
    sf2 = DEFAULT_SOUNDFONTS[0]
    a = render_midi(whole, sf2, tmp_path / "whole.wav").crop(0, 5.0)
    b = render_midi(cut, sf2, tmp_path / "cut.wav").crop(0, 5.0)
    assert not audio_stats(a).silent and np.allclose(a.samples, b.samples, atol=1e-6)


def test_not_configured_names_every_missing_piece(monkeypatch, tmp_path):
    msg = not_configured_message(monkeypatch, tmp_path, Video2Music)
    assert "checkout: not configured" in msg and "git clone https://github.com/AMAAI-Lab/Video2Music" in msg
    assert "python: not configured" in msg and "checkpoint 'amt'" in msg and "1qpcBXF04pgdy9hqRexr0mTx7L9_CAFpt" in msg
    assert "clip.load('ViT-L/14@336px'" in msg  # CLIP is downloaded on first use: pre-cache it


def test_missing_weight_file_is_named(setup, tmp_path):
    make, _, _ = setup
    (tmp_path / "AMT" / "best_rmse_weights.pickle").unlink()
    with pytest.raises(NotConfigured, match="missing best_rmse_weights.pickle"):
        make()
