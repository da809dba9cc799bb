"""GVMGen adapter against a fake of upstream's test.py (arguments, fixed output names, muxed AAC output)."""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from baseline_fakes import adapter_factory, checkpoint_dir, demo_clips, fake_checkout, not_configured_message
from baselines.external.adapter import NotConfigured
from baselines.external.process import UpstreamError, UpstreamTimeout
from baselines.gvmgen import SPEC, GVMGen, frames_for
from vm_eval.media import Audio, audio_stats
from vm_eval.models.api import NotApplicable


@pytest.fixture
def setup(tmp_path, monkeypatch, data_dir):
    checkout = fake_checkout(tmp_path / "GVMGen", {"test.py": "gvmgen_test.py"})
    ckpt = checkpoint_dir(tmp_path / "checkpoints", ("state_dict.bin", "compression_state_dict.bin"))

    make = adapter_factory(monkeypatch, GVMGen, checkout, {"model": ckpt})

    return make, demo_clips(data_dir, tmp_path / "cache", n=2), checkout


def test_generates_32khz_mono_of_the_clip_length_deterministically(setup):
    make, clips, checkout = setup
    model = make()
    outs = model.generate(clips)
    for clip, out in zip(clips, outs):
        assert isinstance(out, Audio), out
        assert out.sample_rate == 32000 and out.channels == 1
        assert out.num_samples == round(clip.duration_s * 32000)
        assert not audio_stats(out.crop(0, clip.duration_s - 0.1)).silent
        log = model.log_path(clip).read_text()
        # one sampled frame per second covering the clip; upstream's 44.1 kHz stereo AAC resampled to 32 kHz mono
        assert f"--fps 1 --duration {frames_for(clip.duration_s)}" in log and f"seed {clip.seed % 2**32}" in log
        assert "0.mp4: audio track 44100 Hz, 2 ch" in log and "-> mono, 32000 Hz" in log
    # the fixed names 0.wav / temp-audio.m4a / 0.mp4 stayed in each clip's own (removed) work folder
    assert not list(checkout.glob("0.*")) and not list(checkout.glob("temp-audio*"))
    assert not any((model._base(clips[0]) / "work").iterdir())
    ids = {c["name"]: c for c in model.checkpoints()}
    assert set(ids) == {"gvmgen:model", "gvmgen:upstream-code"} and len(ids["gvmgen:model"]["sha256"]) == 64
    assert model.info.extra["upstream_commit"] == SPEC.commit and model.info.sample_rate == 32000
    again = model.generate(clips[:1])[0]  # one process per clip with the clip's seed: same music
    assert np.array_equal(again.samples, outs[0].samples)
    assert not np.array_equal(outs[0].samples[:, :32000], outs[1].samples[:, :32000])


@pytest.mark.parametrize("mode, message", [
    ("exit", "exited with code 1"), ("nooutput", "wrote no output at"), ("short", "wrong duration"),
    ("garbage", "does not decode"),
])
def test_upstream_failures_fail_the_clip_with_the_reason(setup, mode, message):
    make, clips, _ = setup
    outs = make(mode=mode).generate(clips[:1])
    assert isinstance(outs[0], UpstreamError) and message in str(outs[0])
    if mode == "exit":
        assert "CUDA out of memory (fake)" in str(outs[0])  # the log's tail travels with the error
    if mode == "nooutput":  # upstream exits 0 after printing its muxing error: the log says so
        assert "exit code 0" in str(outs[0]) and "error：" in str(outs[0])


def test_hang_is_killed_at_the_timeout(setup):
    make, clips, _ = setup
    t0 = time.perf_counter()
    outs = make(mode="hang", timeout_s=2).generate(clips[:1])
    assert isinstance(outs[0], UpstreamTimeout) and time.perf_counter() - t0 < 20
    assert "killed after 2 s" in outs[0].log.read_text()


def test_frames_and_the_30_s_limit(setup, tmp_path):
    make, _, _ = setup
    assert [frames_for(d) for d in (0.4, 1.0, 9.9996, 10.0004, 10.2, 29.5, 30.0)] == [1, 1, 10, 10, 11, 30, 30]
    long = SimpleNamespace(id="long", duration_s=30.5, seed=1, cache_root=tmp_path)
    assert isinstance(make().generate([long])[0], NotApplicable)


def test_not_configured_names_every_missing_piece(monkeypatch, tmp_path):
    msg = not_configured_message(monkeypatch, tmp_path, GVMGen)
    assert "checkout: not configured" in msg and "git clone https://github.com/chouliuzuo/GVMGen" in msg
    assert "python: not configured" in msg and "checkpoint 'model'" in msg and "1OKVQlz7TPKEGTPEK-BiH1tJ3FYT11GON" in msg
    assert "ViT-L-14-336px.pt" in msg  # CLIP is downloaded when the model is built: pre-cache it


def test_a_checkpoint_file_instead_of_a_folder_is_refused(setup, tmp_path, monkeypatch):
    make, _, _ = setup
    make()  # configured with the folder: fine
    # README's example passes checkpoints/state_dict.bin; upstream's loader then reads that file for both models
    monkeypatch.setenv("VM_EVAL_GVMGEN_CKPT_MODEL", str(tmp_path / "checkpoints" / "state_dict.bin"))
    with pytest.raises(NotConfigured, match="folder not found"):
        GVMGen(device="cpu")
