"""VidMuse adapter against a fake of upstream's infer.py (arguments and outputs as at the adapter's commit)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from baseline_fakes import adapter_factory, checkpoint_dir, demo_clips, fake_checkout, not_configured_message
from baselines.external.adapter import NotConfigured
from baselines.external.process import UpstreamError, UpstreamTimeout
from baselines.vidmuse import SPEC, VidMuse
from vm_eval.media import Audio


@pytest.fixture
def setup(tmp_path, monkeypatch, data_dir):
    checkout = fake_checkout(tmp_path / "VidMuse", {"infer.py": "vidmuse_infer.py"})
    ckpt = checkpoint_dir(tmp_path / "model", ("state_dict.bin", "compression_state_dict.bin"))

    make = adapter_factory(monkeypatch, VidMuse, checkout, {"model": ckpt})

    return make, demo_clips(data_dir, tmp_path / "cache", n=2)


def test_generates_validated_audio_of_the_clip_length(setup):
    make, clips = setup
    model = make()
    outs = model.generate(clips)
    for clip, out in zip(clips, outs):
        assert isinstance(out, Audio), out
        assert out.sample_rate == 32000 and out.channels == 1
        assert out.num_samples == round(clip.duration_s * 32000)
        # upstream writes int(seconds): the tail beyond the last whole second is silence
        whole = int(clip.duration_s) * 32000
        assert np.abs(out.samples[:, :whole]).max() > 0.1
        assert np.all(out.samples[:, whole:] == 0)
    log = model.log_path(clips[0]).read_text()
    assert f"seed {clips[0].seed % 2**32}" in log and "--topk 250" in log and "exit code 0" in log
    ids = {c["name"]: c for c in model.checkpoints()}
    assert set(ids) == {"vidmuse:model", "vidmuse:upstream-code"} and len(ids["vidmuse:model"]["sha256"]) == 64
    assert ids["vidmuse:upstream-code"]["git_commit"].startswith("unknown")  # the fake checkout is no git clone
    assert model.info.extra["upstream_commit"] == SPEC.commit and model.info.family == "baseline"


def test_same_seed_same_output_and_clips_differ(setup):
    make, clips = setup
    model = make()
    a = model.generate(clips)
    b = model.generate(clips[::-1])[::-1]  # order and batch mates do not matter: one process per clip
    assert np.array_equal(a[0].samples, b[0].samples) and np.array_equal(a[1].samples, b[1].samples)
    assert not np.array_equal(a[0].samples[:, :32000], a[1].samples[:, :32000])


@pytest.mark.parametrize("mode, message", [
    ("exit", "exited with code 1"), ("nooutput", "wrote no output"), ("short", "wrong duration"),
    ("wrongsr", "22050 Hz"), ("garbage", "does not decode"),
])
def test_upstream_failures_fail_the_clip_with_the_reason(setup, mode, message):
    make, clips = setup
    outs = make(mode=mode).generate(clips[:1])
    assert isinstance(outs[0], UpstreamError) and message in str(outs[0])
    if mode == "exit":
        assert "CUDA out of memory (fake)" in str(outs[0])  # the log's tail travels with the error


def test_hang_is_killed_at_the_timeout(setup):
    make, clips = setup
    t0 = time.perf_counter()
    outs = make(mode="hang", timeout_s=3).generate(clips)
    assert all(isinstance(o, UpstreamTimeout) for o in outs)
    assert time.perf_counter() - t0 < 30
    assert "killed after 3 s" in outs[0].log.read_text()


def test_not_configured_fails_at_once_naming_every_missing_piece(monkeypatch, tmp_path):
    msg = not_configured_message(monkeypatch, tmp_path, VidMuse)
    assert "checkout: not configured" in msg and "git clone https://github.com/ZeyueT/VidMuse" in msg
    assert "python: not configured" in msg and "checkpoint 'model'" in msg and "HKUSTAudio/VidMuse" in msg


def test_missing_checkpoint_file_is_named(setup, tmp_path):
    make, _ = setup
    (tmp_path / "model" / "compression_state_dict.bin").unlink()
    with pytest.raises(NotConfigured, match="missing compression_state_dict.bin"):
        make()
