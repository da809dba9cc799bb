"""VGGish backbone: our extractor against torchvggish's own pipeline, on seeded random weights written as the
published checkpoint file (vggish-10086976.pth) and found through vm_eval.weights."""
from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from metrics.backbones import checkpoint_identity
from metrics.backbones.vggish import CHECKPOINT_FILE, VGGishEmbedding
from metrics.base import MetricError
from vm_eval import weights as W
from backbone_helpers import SR, isolate_weights, max_rel, signal









@pytest.fixture(scope="module")
def vgg(tmp_path_factory):
    from torchvggish.torchvggish import VGG, make_layers

    root = tmp_path_factory.mktemp("vggish")
    torch.manual_seed(20240611)
    upstream = VGG(make_layers(), postprocess=False).eval()  # published architecture, random weights
    folder = root / "weights" / "vggish"
    folder.mkdir(parents=True)
    # the 2019 release predates torch's zip format: write the legacy format, plain state dict, as published
    torch.save(upstream.state_dict(), folder / CHECKPOINT_FILE, _use_new_zipfile_serialization=False)
    with pytest.MonkeyPatch.context() as mp:
        isolate_weights(mp, root)
        path = W.require("vggish")
        yield SimpleNamespace(upstream=upstream, path=path, root=root, ex=VGGishEmbedding(path, device="cpu"))
    shutil.rmtree(root, ignore_errors=True)


def upstream_embeddings(upstream, audio: np.ndarray, sr: int):
    """torchvggish's documented path: vggish_input.waveform_to_examples (downmix + resampy + log-mel) -> VGG.

    Returns (output of the last Linear, i.e. before the final ReLU; the model's own output, after it)."""
    from torchvggish import vggish_input

    captured = {}
    # the model's final ReLU is in place: clone the Linear's output before it is overwritten
    hook = upstream.embeddings[4].register_forward_hook(
        lambda m, i, o: captured.__setitem__("pre", o.clone()))
    try:
        examples = vggish_input.waveform_to_examples(audio.T, sr)  # it expects [samples, channels]
        with torch.no_grad():
            final = upstream(examples)
    finally:
        hook.remove()
    return captured["pre"].numpy(), final.numpy(), examples.detach().numpy()[:, 0]


def test_found_through_weights_lookup(vgg):
    assert vgg.path == vgg.root / "weights" / "vggish"  # a folder: the extractor finds the file in it
    info = vgg.ex.info
    assert info.backbone["name"] == "vggish" and info.backbone["file"] == CHECKPOINT_FILE
    assert info.backbone["sha256"] == W.identity("vggish")["sha256"]
    assert info.sample_rate is None and info.mono is True
    for key in ("resampler", "window_s", "hop_s", "layer"):
        assert key in info.params
    assert info.params["window_s"] == pytest.approx(0.96)


def test_matches_torchvggish_end_to_end(vgg):
    audio = signal(3.5)
    ours = vgg.ex(audio, SR)
    pre_relu, final, patches = upstream_embeddings(vgg.upstream, audio, SR)
    assert ours.dtype == np.float32 and ours.shape == pre_relu.shape == (3, 128)
    np.testing.assert_allclose(vgg.ex.examples(audio, SR), patches, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours, pre_relu, rtol=1e-5, atol=1e-6 * np.abs(pre_relu).max())
    print(f"vggish max relative error vs torchvggish: {max_rel(ours, pre_relu):.3g}")
    # the published model ends in a ReLU; ours is the same values without it
    assert (ours < 0).any()
    np.testing.assert_allclose(np.maximum(ours, 0), final, rtol=1e-5, atol=1e-6 * np.abs(final).max())


@pytest.mark.parametrize("seconds", [0.975, 1.0, 2.0, 5.0])
def test_examples_per_duration_at_16k(vgg, seconds):
    n = int(round(seconds * 16_000))
    frames = 1 + (n - 400) // 160
    out = vgg.ex(signal(seconds, sr=16_000)[:1], 16_000)
    assert out.shape == (frames // 96, 128)


@pytest.mark.parametrize("seconds", [1.5, 4.0])
def test_examples_per_duration_at_44k(vgg, seconds):
    n16 = int(int(round(seconds * SR)) * (16_000 / SR))  # resampy's output length
    assert vgg.ex(signal(seconds), SR).shape == ((1 + (n16 - 400) // 160) // 96, 128)


@pytest.mark.parametrize("seconds", [0.0, 0.5, 0.97])
def test_shorter_than_one_example_raises(vgg, seconds):
    with pytest.raises(MetricError, match="shorter than one VGGish example"):
        vgg.ex(signal(seconds, sr=16_000), 16_000)
    with pytest.raises(MetricError, match="shorter than one VGGish example"):
        vgg.ex(signal(seconds), SR)  # also when it resamples first


def test_downmix_and_determinism(vgg):
    mono = signal(2.0)[:1]
    both = np.concatenate([mono, mono])
    a = vgg.ex(mono, SR)
    np.testing.assert_array_equal(a, vgg.ex(both, SR))
    np.testing.assert_array_equal(a, vgg.ex(mono, SR))
    np.testing.assert_array_equal(a, vgg.ex(mono[0], SR))  # 1-D input is mono too


def test_missing_checkpoint_names_the_file(vgg, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=CHECKPOINT_FILE):
        VGGishEmbedding(tmp_path)  # a folder without the file
    with pytest.raises(FileNotFoundError, match=CHECKPOINT_FILE):
        VGGishEmbedding(tmp_path / "nowhere" / CHECKPOINT_FILE)
    monkeypatch.setenv("VM_EVAL_WEIGHTS", str(tmp_path))
    with pytest.raises(W.WeightsMissing, match=CHECKPOINT_FILE):
        W.require("vggish")


def test_identity_follows_the_weights(vgg, tmp_path):
    same = tmp_path / "same"
    same.mkdir()
    shutil.copy(vgg.path / CHECKPOINT_FILE, same / CHECKPOINT_FILE)
    # identity is content, not location (checkpoint_identity is what the extractor records)
    assert checkpoint_identity("vggish", same / CHECKPOINT_FILE) == vgg.ex.info.backbone
    state = {k: v.clone() for k, v in vgg.upstream.state_dict().items()}
    state["embeddings.4.bias"] += 0.01
    other = tmp_path / "other"
    other.mkdir()
    torch.save(state, other / CHECKPOINT_FILE)  # zip format: both formats load
    changed = VGGishEmbedding(other)
    assert changed.info.backbone["file"] == CHECKPOINT_FILE
    assert changed.info.backbone["sha256"] != vgg.ex.info.backbone["sha256"]
    audio = signal(1.2)
    np.testing.assert_allclose(changed(audio, SR) - vgg.ex(audio, SR), 0.01, rtol=0, atol=1e-5)
