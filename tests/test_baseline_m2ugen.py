"""M2UGen adapter against a fake of upstream's M2UGen/inference.py (arguments and outputs as at its commit)."""
from __future__ import annotations

import json
import subprocess
import time
from types import SimpleNamespace

import numpy as np
import pytest

from baseline_fakes import adapter_factory, checkpoint_dir, demo_clips, fake_checkout, not_configured_message
from baselines.external.adapter import NotConfigured, safe_stem
from baselines.external.process import UpstreamError, UpstreamTimeout
from baselines.m2ugen import DEFAULT_PROMPT, SPEC, M2UGen, duration_tolerance_s, upstream_seconds
from vm_eval.media import Audio
from vm_eval.models.api import NotApplicable

HF_CONFIG = ("config.json", "preprocessor_config.json")


def _checkpoints(root):
    llama = checkpoint_dir(root / "LLaMA", ("tokenizer.model",))
    checkpoint_dir(llama / "7B", ("params.json",))
    shards = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    musicgen = checkpoint_dir(root / "musicgen-medium", ("config.json", "generation_config.json",
                                                         "preprocessor_config.json", *shards))
    index = {"weight_map": {"a": shards[0], "b": shards[1]}}
    (musicgen / "model.safetensors.index.json").write_text(json.dumps(index))
    return {
        "model": checkpoint_dir(root / "M2UGen-MusicGen-medium", ("checkpoint.pth",)) / "checkpoint.pth",
        "llama": llama,
        "mert": checkpoint_dir(root / "MERT-v1-330M", HF_CONFIG + ("configuration_MERT.py", "modeling_MERT.py",
                                                                    "pytorch_model.bin")),
        "vit": checkpoint_dir(root / "vit", HF_CONFIG + ("model.safetensors", "pytorch_model.bin")),
        "vivit": checkpoint_dir(root / "vivit", HF_CONFIG + ("pytorch_model.bin",)),
        "musicgen": musicgen,
    }


@pytest.fixture(scope="module")
def media_cache(tmp_path_factory):
    """One run cache for the module: each clip's silent video is cut once (logs and work folders are per clip)."""
    return tmp_path_factory.mktemp("m2ugen-cache")


@pytest.fixture
def setup(tmp_path, monkeypatch, data_dir, media_cache):
    checkout = fake_checkout(tmp_path / "M2UGen", {"M2UGen/inference.py": "m2ugen_inference.py"})
    ckpts = _checkpoints(tmp_path / "ckpts")

    make = adapter_factory(monkeypatch, M2UGen, checkout, ckpts, device="cuda:0")

    return make, demo_clips(data_dir, media_cache, n=2), ckpts


def _window(model, clip):
    return [line for line in model.log_path(clip).read_text().splitlines() if line.startswith("[fake] frame window")]


def test_generates_clip_length_audio_deterministic_per_seed(setup):
    make, clips, ckpts = setup
    model = make()
    a = model.generate(clips)
    windows = [_window(model, c) for c in clips]
    for clip, out in zip(clips, a):
        assert isinstance(out, Audio), out
        assert out.sample_rate == 32000 and out.channels == 1
        assert out.num_samples == round(clip.duration_s * 32000)
        # upstream's music is longer than the clip (1.024 x round(seconds)): trimmed, never padded with silence
        assert np.abs(out.samples[:, -3200:]).max() > 0.1
        assert not (model._base(clip) / "work" / safe_stem(clip.id)).exists()  # work folder cleaned
    log = model.log_path(clips[0]).read_text()
    assert f"seed {clips[0].seed % 2**32}" in log and "exit code 0" in log
    assert f"--vit_path {ckpts['vit']} --vivit_path {ckpts['vivit']}" in log
    assert f"--music_decoder_path {ckpts['musicgen']}" in log and f"--prompt {DEFAULT_PROMPT} --video_file" in log
    assert "Generated Audio: temp/" in log

    b = model.generate(clips[:1])  # alone, not after its batch mate: one process per clip, the clip's own seed
    assert _window(model, clips[0]) == windows[0] and len(windows[0]) == 1  # the random frame window is seeded
    assert windows[0] != windows[1]
    assert np.array_equal(a[0].samples, b[0].samples)
    assert not np.array_equal(a[0].samples[:, :32000], a[1].samples[:, :32000])


@pytest.mark.parametrize("mode, message", [
    ("exit", "exited with code 1"), ("nooutput", "did not emit all 8 [AUD] tokens"), ("short", "wrong duration"),
    ("wrongsr", "22050 Hz"),
])
def test_upstream_failures_fail_the_clip_with_the_reason(setup, mode, message):
    make, clips, _ = setup
    outs = make(mode=mode).generate(clips[:1])
    assert isinstance(outs[0], UpstreamError) and message in str(outs[0]), outs[0]
    if mode == "exit":
        assert "CUDA out of memory (fake)" in str(outs[0])  # the log's tail travels with the error
    if mode == "nooutput":
        assert "calm piano piece" in str(outs[0])  # upstream's text answer is kept with the failure


def test_hang_is_killed_at_the_timeout(setup):
    make, clips, _ = setup
    t0 = time.perf_counter()
    outs = make(mode="hang", timeout_s=2).generate(clips[:1])
    assert isinstance(outs[0], UpstreamTimeout)
    assert time.perf_counter() - t0 < 30
    assert "killed after 2 s" in outs[0].log.read_text()


@pytest.mark.parametrize("stdout", ["quiet", "decoy"])
def test_output_found_from_stdout_or_the_only_wav(setup, monkeypatch, stdout):
    make, clips, _ = setup
    model = make()
    monkeypatch.setenv("FAKE_M2UGEN_STDOUT", stdout)
    out = model.generate(clips[:1])[0]
    # quiet: no "Generated Audio:" line, the only wav under temp/ is taken; decoy: the reported one, not the other
    assert isinstance(out, Audio) and out.sample_rate == 32000, out
    assert ("Generated Audio:" in model.log_path(clips[0]).read_text()) == (stdout == "decoy")


def test_zero_frame_video_fails_before_upstream_runs(setup, monkeypatch):
    make, clips, _ = setup
    model = make()

    def stage_mkv(clip, folder):  # an MKV's stream reports 0 frames, as some mp4/webm files do
        folder.mkdir(parents=True, exist_ok=True)
        dst = folder / f"{safe_stem(clip.id)}.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clip.silent_video()), "-c", "copy", "-f", "matroska",
                        str(dst)], check=True)
        return dst

    monkeypatch.setattr(model, "stage_video", stage_mkv)
    out = model.generate(clips[:1])[0]
    assert isinstance(out, UpstreamError) and "reports 0 frames" in str(out)
    assert "$ (cd" not in model.log_path(clips[0]).read_text()  # the 7B model was never loaded


def test_clips_rounding_to_zero_seconds_are_not_applicable(setup, tmp_path):
    make, _, _ = setup
    model = make()
    tiny = SimpleNamespace(id="tiny", duration_s=0.4, seed=1, cache_root=tmp_path / "c")
    assert isinstance(model.generate([tiny])[0], NotApplicable)
    model._check_duration(SimpleNamespace(id="short", duration_s=0.6))  # 1 s of music: allowed


def test_length_model_and_tolerance():
    assert upstream_seconds(9.04) == pytest.approx(9.14) and upstream_seconds(7.96) == pytest.approx(8.12)
    assert upstream_seconds(0.4) == 0
    for d in np.arange(0.6, 180, 0.01):  # the staged video may probe up to 0.05 s off the clip
        worst = max(abs(upstream_seconds(d + e) - d) for e in (-0.05, 0.05))
        assert worst <= duration_tolerance_s(d), d
        if d >= 1.5:
            assert abs(upstream_seconds(d) / 4 - d) > duration_tolerance_s(d)  # a quarter-length output still fails
    assert duration_tolerance_s(60) > SPEC.duration_tolerance_s + 1  # grows: no upper cap on the clip


def test_checkpoint_identities_cover_the_loaded_weights(setup):
    make, _, ckpts = setup
    model = make()
    ids = {c["name"]: c["sha256"] for c in model.checkpoints()}
    assert set(ids) == {f"m2ugen:{r}" for r in ("model", "llama", "mert", "vit", "vivit", "musicgen")}
    (ckpts["musicgen"] / "model-00002-of-00002.safetensors").write_bytes(b"other weights, other length")
    (ckpts["vit"] / "model.safetensors").write_bytes(b"other weights, other length")
    again = {c["name"]: c["sha256"] for c in model.checkpoints()}
    assert again["m2ugen:musicgen"] != ids["m2ugen:musicgen"] and again["m2ugen:vit"] != ids["m2ugen:vit"]
    assert again["m2ugen:model"] == ids["m2ugen:model"]
    assert model.info.extra["prompt"] == DEFAULT_PROMPT and model.info.extra["upstream_commit"] == SPEC.commit


def test_set_up_problems_are_named(setup, monkeypatch, tmp_path):
    make, _, ckpts = setup
    with pytest.raises(NotConfigured, match="CUDA only"):
        make(device="cpu")
    (ckpts["vivit"] / "pytorch_model.bin").unlink()
    with pytest.raises(NotConfigured, match="checkpoint 'vivit'.*no model.safetensors"):
        make()
    (ckpts["llama"] / "7B" / "params.json").unlink()
    with pytest.raises(NotConfigured, match="missing 7B/params.json"):
        make()


def test_not_configured_fails_at_once_naming_every_missing_piece(monkeypatch, tmp_path):
    roles = ("model", "llama", "mert", "vit", "vivit", "musicgen")
    msg = not_configured_message(monkeypatch, tmp_path, M2UGen)
    assert "checkout: not configured" in msg and "git clone https://github.com/shansongliu/M2UGen" in msg
    assert "python: not configured" in msg and "M2UGen/M2UGen-MusicGen-medium" in msg
    assert "meta-llama/Llama-2-7b" in msg and "vivit-b-16x2-kinetics400" in msg
    for role in roles:
        assert f"checkpoint '{role}'" in msg
