"""CMT adapter against fakes of upstream's four scripts (arguments, cwd-relative files and caches as at the commit)."""
from __future__ import annotations

import json
import time

import mido
import numpy as np
import pytest

from baseline_fakes import adapter_factory, demo_clips, fake_checkout, not_configured_message
from baselines.cmt import CMT, SPEC, cmt_stem, gpu_argument, read_tempo
from baselines.external.adapter import NotConfigured
from baselines.external.midi import RENDER_RATE
from baselines.external.process import UpstreamError, UpstreamTimeout
from vm_eval.media import Audio

SCRIPTS = {"src/gen_midi_conditional.py": "cmt_gen_midi_conditional.py",
           "src/video2npz/optical_flow.py": "cmt_optical_flow.py",
           "src/video2npz/video2metadata.py": "cmt_video2metadata.py",
           "src/video2npz/metadata2numpy_mix.py": "cmt_metadata2numpy_mix.py"}


@pytest.fixture
def setup(tmp_path, monkeypatch, data_dir):
    checkout = fake_checkout(tmp_path / "video-bgm-generation", SCRIPTS)
    ckpt = tmp_path / "exp" / "loss_8_params.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights")

    make = adapter_factory(monkeypatch, CMT, checkout, {"model": ckpt})

    clips = demo_clips(data_dir, tmp_path / "cache", n=7)
    # the two shortest test clips (6.08 s and 6.84 s at 25 fps): every clip costs four upstream processes
    return make, [clips[3], clips[6]], checkout, clips[3]


def _work(model, clip):
    return model._base(clip) / "work" / cmt_stem(clip.id)


def test_generates_rendered_midi_of_the_clip_length_at_the_videos_tempo(setup, monkeypatch):
    make, clips, checkout, _ = setup
    # stale state in the checkout's own src/video2npz (a user's earlier run) must not leak into a clip
    v2n = checkout / "src" / "video2npz"
    (v2n / "metadata.json").write_text(json.dumps({"duration": 1.0, "tempo": 300.0, "vbeats": [],
                                                   "flow_magnitude_per_bar": [0.0]}))
    (v2n / "flow").mkdir()
    np.savez(v2n / "flow" / f"{cmt_stem(clips[0].id)}.npz", flow=np.zeros(3))
    monkeypatch.setenv("FAKE_CMT_TEMPO", "60")
    model = make(keep_work=True)
    outs = model.generate(clips)
    for clip, out in zip(clips, outs):
        assert isinstance(out, Audio), out
        assert out.sample_rate == RENDER_RATE and out.num_samples == round(clip.duration_s * RENDER_RATE)
        assert np.abs(out.samples).max() > 0.01
    clip = clips[0]
    log = model.log_path(clip).read_text()
    for step in ("optical_flow.py", "video2metadata.py", "metadata2numpy_mix.py", "gen_midi_conditional.py"):
        assert step in log
    assert "-g 9999" in log and "-n 1" in log and f"seed {clip.seed % 2**32}" in log
    assert "visual tempo from metadata.json: 60.000 BPM" in log

    # the tempo: 6.08 s at 25 fps = 151 flow values, 100 frames per bar at 60 BPM -> 2 bars
    work = _work(model, clip)
    meta = json.loads((work / "tree" / "src" / "video2npz" / "metadata.json").read_text())
    assert meta["tempo"] == 60.0 and len(meta["flow_magnitude_per_bar"]) == 2
    raw = work / "tree" / "inference" / f"{cmt_stem(clip.id)}.npz_0.mid"
    timed = work / f"{cmt_stem(clip.id)}-tempo.mid"
    assert mido.MidiFile(str(raw)).length == pytest.approx(4.0, abs=0.01)  # 2 bars at upstream's implicit 120 BPM
    assert mido.MidiFile(str(timed)).length == pytest.approx(8.0, abs=0.01)  # 2 bars at 60 BPM
    tempos = [m.tempo for t in mido.MidiFile(str(timed)).tracks for m in t if m.type == "set_tempo"]
    assert tempos == [mido.bpm2tempo(60)]
    # at 120 BPM the music would stop at 4 s; at the restored tempo the clip's last second still sounds
    assert np.abs(outs[0].samples[:, -RENDER_RATE:]).max() > 0.01

    # nothing was written into the checkout; the planted stale files are untouched and unused
    assert sorted(p.name for p in v2n.iterdir()) == ["fakelib.py", "flow", "metadata.json", "metadata2numpy_mix.py",
                                                      "optical_flow.py", "video2metadata.py"]
    assert json.loads((v2n / "metadata.json").read_text())["tempo"] == 300.0
    assert not (checkout / "videos").exists() and not (checkout / "inference").exists()
    # same seed, same music, whatever the batch; different clips differ
    again = model.generate(clips[:1])[0]
    assert np.array_equal(again.samples, outs[0].samples)
    n = min(outs[0].num_samples, outs[1].num_samples)
    assert not np.array_equal(outs[0].samples[:, :n], outs[1].samples[:, :n])
    ids = {c["name"]: c for c in model.checkpoints()}
    assert len(ids["cmt:model"]["sha256"]) == 64 and any(k.startswith("soundfont:") for k in ids)
    assert model.info.output == "midi" and model.info.extra["upstream_commit"] == SPEC.commit


@pytest.mark.parametrize("mode, message", [
    ("exit", "gen_midi_conditional.py: upstream exited with code 1"), ("nooutput", "wrote no MIDI"),
    ("short", "wrong duration"), ("garbage", "does not parse"),
])
def test_upstream_failures_fail_the_clip_with_the_reason(setup, mode, message):
    make, _, _, short = setup
    out = make(mode=mode).generate([short])[0]
    assert isinstance(out, UpstreamError) and message in str(out), out
    if mode == "exit":
        assert "CUDA out of memory (fake)" in str(out)  # the log's tail travels with the error


def test_a_failed_feature_step_stops_the_clip(setup, monkeypatch):
    """video2npz.sh has no `set -e`: the adapter checks each step and never converts what a failed step left."""
    make, _, _, short = setup
    model = make()
    monkeypatch.setenv("FAKE_CMT_FAIL_STEP", "video2metadata")
    out = model.generate([short])[0]
    assert isinstance(out, UpstreamError) and "video2metadata.py: upstream exited with code 1" in str(out)
    assert "ffmpeg failed (fake video2metadata)" in str(out)
    assert "metadata2numpy_mix.py" not in model.log_path(short).read_text()
    monkeypatch.delenv("FAKE_CMT_FAIL_STEP")
    monkeypatch.setenv("FAKE_CMT_SILENT_STEP", "optical_flow")
    out = model.generate([short])[0]
    assert isinstance(out, UpstreamError) and "optical_flow.py exited 0 but wrote no" in str(out)


def test_hang_is_killed_within_the_clip_budget(setup):
    make, _, _, short = setup
    t0 = time.perf_counter()
    out = make(mode="hang", timeout_s=3).generate([short])[0]
    assert isinstance(out, UpstreamTimeout) and "clip budget 3 s" in str(out)
    assert time.perf_counter() - t0 < 30
    assert "killed after" in out.log.read_text()


def test_helpers():
    assert "." not in cmt_stem("a.b.c") and cmt_stem("a.b") != cmt_stem("a_b")
    assert gpu_argument("cuda:1") == "1" and gpu_argument("cuda") == "0" and gpu_argument("cpu") == "9999"
    with pytest.raises(ValueError):
        gpu_argument("mps")


def test_read_tempo(tmp_path):
    p = tmp_path / "metadata.json"
    p.write_text(json.dumps({"tempo": [103.36]}))
    assert read_tempo(p) == pytest.approx(103.36)
    for bad in ({"tempo": None}, {"tempo": 1000.0}, {}):
        p.write_text(json.dumps(bad))
        with pytest.raises(ValueError):
            read_tempo(p)


def test_not_configured_names_every_missing_piece(monkeypatch, tmp_path):
    msg = not_configured_message(monkeypatch, tmp_path, CMT)
    assert "git clone https://github.com/wzk1015/video-bgm-generation" in msg and "python: not configured" in msg
    assert "checkpoint 'model'" in msg and "1KvIRRm0KqTlEFDjAgs4fMtLRQBq0rBWy" in msg


def test_missing_feature_script_is_named(setup):
    make, _, checkout, _ = setup
    (checkout / "src" / "video2npz" / "video2metadata.py").unlink()
    with pytest.raises(NotConfigured, match="src/video2npz/video2metadata.py not found"):
        make()
