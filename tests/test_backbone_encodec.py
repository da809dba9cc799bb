"""EnCodec 24 kHz encoder embeddings: our extractor against the encodec package's documented path
(encodec.utils.convert_audio, then model.encoder, as fadtk's "encodec-emb" does after loading), on seeded
random weights written as the published checkpoint file (encodec_24khz-d7cc33bc.th) and found through
vm_eval.weights."""
from __future__ import annotations

import math
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from metrics.backbones.encodec_emb import CHECKPOINT_FILE, EncodecEmbedding
from metrics.base import MetricError
from vm_eval import weights as W
from backbone_helpers import SR, assert_close, isolate_weights, max_rel, signal









@pytest.fixture(scope="module")
def enc(tmp_path_factory):
    from encodec import EncodecModel

    root = tmp_path_factory.mktemp("encodec")
    torch.manual_seed(20240613)
    upstream = EncodecModel.encodec_model_24khz(pretrained=False)  # published architecture, random weights
    folder = root / "weights" / "encodec-24khz"
    folder.mkdir(parents=True)
    torch.save(upstream.state_dict(), folder / CHECKPOINT_FILE)  # the whole model's state dict, as published
    with pytest.MonkeyPatch.context() as mp:
        isolate_weights(mp, root)
        path = W.require("encodec-24khz")
        ex = EncodecEmbedding(path, device="cpu")
        yield SimpleNamespace(upstream=upstream.eval(), path=path, root=root, ex=ex)
    shutil.rmtree(root, ignore_errors=True)


def upstream_embeddings(model, audio: np.ndarray, sr: int) -> np.ndarray:
    """encodec's documented preprocessing + the encoder: [frames, 128]."""
    from encodec.utils import convert_audio

    wav = convert_audio(torch.from_numpy(audio), sr, model.sample_rate, model.channels)  # [1, n] at 24 kHz
    with torch.no_grad():
        return model.encoder(wav.unsqueeze(0))[0].T.numpy()


def test_found_through_weights_lookup(enc):
    info = enc.ex.info
    assert info.name == "encodec-24khz-emb"
    assert info.backbone["name"] == "encodec-24khz" and info.backbone["file"] == CHECKPOINT_FILE
    assert info.backbone["sha256"] == W.identity("encodec-24khz")["sha256"]
    assert info.sample_rate is None and info.mono is True
    assert info.params["frame_rate_hz"] == 75.0 and info.params["dim"] == 128
    assert {"resampler", "layer", "chunk_s"} <= set(info.params)


@pytest.mark.parametrize("seconds", [1.5, 0.01])
def test_matches_encodec_pipeline(enc, seconds):
    audio = signal(seconds)
    ours = enc.ex(audio, SR)
    ref = upstream_embeddings(enc.upstream, audio, SR)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    assert ours.shape == (math.ceil(math.ceil(audio.shape[1] * 80 / 147) / 320), 128)  # 24000/44100 = 80/147
    assert_close(ours, ref)
    print(f"encodec-24khz-emb ({seconds} s) max relative error vs encodec: {max_rel(ours, ref):.3g}")


@pytest.mark.parametrize("seconds, frames", [(0.005, 1), (0.5, 38), (1.0, 75)])
def test_frames_at_75_hz(enc, seconds, frames):
    assert enc.ex(signal(seconds, sr=24_000)[:1], 24_000).shape == (frames, 128)


def test_empty_audio_raises(enc):
    with pytest.raises(MetricError):
        enc.ex(np.zeros((2, 0), np.float32), SR)


def test_long_audio_is_encoded_in_independent_chunks(enc):
    chunked = EncodecEmbedding(enc.path, device="cpu", chunk_s=0.4)  # 9600 samples = 30 frames
    audio = signal(1.0, sr=24_000, seed=1)[:1]
    ours = chunked(audio, 24_000)
    x = torch.from_numpy(audio)[None]
    with torch.no_grad():
        ref = torch.cat([enc.upstream.encoder(x[..., a:a + 9600])[0].T for a in (0, 9600, 19200)]).numpy()
    assert ours.shape == (75, 128)
    assert_close(ours, ref)
    with pytest.raises(ValueError):
        EncodecEmbedding(enc.path, chunk_s=0.01)  # not a whole number of 320-sample frames


def test_downmix_and_determinism(enc):
    mono = signal(0.5, seed=2)[:1]
    a = enc.ex(mono, SR)
    np.testing.assert_array_equal(a, enc.ex(np.concatenate([mono, mono]), SR))
    np.testing.assert_array_equal(a, enc.ex(mono[0], SR))


def test_missing_checkpoint_names_the_file(enc, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=CHECKPOINT_FILE):
        EncodecEmbedding(tmp_path)
    with pytest.raises(FileNotFoundError, match=CHECKPOINT_FILE):
        EncodecEmbedding(tmp_path / "nowhere" / CHECKPOINT_FILE)
    monkeypatch.setenv("VM_EVAL_WEIGHTS", str(tmp_path))
    with pytest.raises(W.WeightsMissing, match=CHECKPOINT_FILE):
        W.require("encodec-24khz")


def test_identity_follows_the_weights(enc, tmp_path):
    state = {k: v.clone() for k, v in enc.upstream.state_dict().items()}
    state["encoder.model.15.conv.conv.bias"] += 0.25  # the encoder's last conv: a shift of every output
    torch.save(state, tmp_path / CHECKPOINT_FILE)
    changed = EncodecEmbedding(tmp_path, device="cpu")
    assert changed.info.backbone["file"] == CHECKPOINT_FILE
    assert changed.info.backbone["sha256"] != enc.ex.info.backbone["sha256"]
    audio = signal(0.5, seed=3)
    np.testing.assert_allclose(changed(audio, SR) - enc.ex(audio, SR), 0.25, atol=1e-5)


def test_a_foreign_state_dict_is_refused(enc, tmp_path):
    state = {k: v for k, v in enc.upstream.state_dict().items() if not k.startswith("decoder.")}
    torch.save(state, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(RuntimeError, match="Missing key"):
        EncodecEmbedding(tmp_path)
