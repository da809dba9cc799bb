"""PANN Cnn14 backbones: our extractors against frechet_audio_distance's own PANN path (its Cnn14 classes, its
load_audio_task reading and resampling a file), on seeded random weights written as the published checkpoints
({"model": state_dict, ...} with numpy training state) and found through vm_eval.weights."""
from __future__ import annotations

import importlib
import importlib.util
import shutil
import sys
import types
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from metrics.backbones.pann import Cnn14, PannClassifier, PannEmbedding, frontend_kernels, read_state_dict
from metrics.base import MetricError
from vm_eval import weights as W
from backbone_helpers import SR, assert_close, isolate_weights, max_rel, signal

FILE_16K = "Cnn14_16k_mAP=0.438.pth"
FILE_32K = "Cnn14_mAP=0.431.pth"


def upstream_module(name: str):
    """frechet_audio_distance's own ``models/pann.py`` or ``utils.py``, unmodified, loaded from the installed
    package under a private package name. Importing ``frechet_audio_distance`` itself would run its
    ``__init__``, which imports laion_clap and transformers (about 6 s here) for nothing this test uses."""
    alias = "_upstream_fad"
    if alias not in sys.modules:
        base = Path(importlib.util.find_spec("frechet_audio_distance").submodule_search_locations[0])
        for pkg, folder in ((alias, base), (f"{alias}.models", base / "models")):
            module = types.ModuleType(pkg)
            module.__path__ = [str(folder)]
            sys.modules[pkg] = module
    return importlib.import_module(f"{alias}.{name}")








def randomise_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics, so the test sees whether bn0 and the block norms are applied alike."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)


def published_checkpoint(model: torch.nn.Module, path, legacy: bool) -> None:
    """The audioset_tagging_cnn release layout: model weights plus numpy-valued sampler state (in the 2020
    release's pre-zip torch format when ``legacy``; both formats load)."""
    ckpt = {"iteration": 540000, "model": model.state_dict(),
            "sampler": {"indexes_per_class": [np.arange(5), np.arange(3)], "queue": [np.int64(2)],
                        "pointers_of_classes": [0, 1]}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)


@pytest.fixture(scope="module")
def pann(tmp_path_factory):
    upstream = upstream_module("models.pann")
    UpCnn14, UpCnn14_16k = upstream.Cnn14, upstream.Cnn14_16k

    root = tmp_path_factory.mktemp("pann")
    torch.manual_seed(20240612)
    # the constructor arguments frechet_audio_distance uses for its 16 kHz and 32 kHz models
    up16 = UpCnn14_16k(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50, fmax=8000,
                       classes_num=527).eval()
    up32 = UpCnn14(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=16000,
                   classes_num=527).eval()
    randomise_batchnorm(up16)
    randomise_batchnorm(up32)
    published_checkpoint(up16, root / "weights" / "pann-cnn14-16k" / FILE_16K, legacy=False)
    published_checkpoint(up32, root / "weights" / "pann-cnn14" / FILE_32K, legacy=True)
    with pytest.MonkeyPatch.context() as mp:
        isolate_weights(mp, root)
        p16, p32 = W.require("pann-cnn14-16k"), W.require("pann-cnn14")
        yield SimpleNamespace(up16=up16, up32=up32, p16=p16, p32=p32, root=root,
                              emb=PannEmbedding(p16, device="cpu"), cls=PannClassifier(p32, device="cpu"))
    shutil.rmtree(root, ignore_errors=True)


def fad_load(root, audio: np.ndarray, sr: int, target: int) -> np.ndarray:
    """frechet_audio_distance's own reading path: a float32 file through load_audio_task (mean + resampy)."""
    load_audio_task = upstream_module("utils").load_audio_task
    path = root / f"clip-{audio.shape[-1]}.wav"
    sf.write(path, audio.T, sr, subtype="FLOAT")
    return load_audio_task(str(path), target, 1, "float32")


def upstream_run(model, wave: np.ndarray) -> dict:
    """frechet_audio_distance's model call (eval mode), plus the logits from a hook on fc_audioset."""
    captured = {}
    hook = model.fc_audioset.register_forward_hook(lambda m, i, o: captured.__setitem__("logits", o.clone()))
    try:
        with torch.no_grad():
            out = model(torch.tensor(wave).float().unsqueeze(0), None)
    finally:
        hook.remove()
    return {"embedding": out["embedding"].numpy(), "clipwise": out["clipwise_output"].numpy(),
            "logits": captured["logits"].numpy()}


def test_found_through_weights_lookup(pann):
    assert pann.emb.info.name == "pann-cnn14-16k-emb" and pann.cls.info.name == "pann-cnn14"
    assert pann.emb.info.backbone["name"] == "pann-cnn14-16k" and pann.emb.info.backbone["file"] == FILE_16K
    assert pann.cls.info.backbone["name"] == "pann-cnn14" and pann.cls.info.backbone["file"] == FILE_32K
    assert pann.cls.info.backbone["sha256"] == W.identity("pann-cnn14")["sha256"]
    for ex in (pann.emb, pann.cls):
        assert ex.info.sample_rate is None and ex.info.mono is True
        assert {"resampler", "window_s", "hop_s", "layer", "partial_window"} <= set(ex.info.params)
    assert pann.cls.info.params["window_s"] == 10.0 and pann.emb.info.params["window_s"] is None


def test_our_frontend_equals_torchlibrosa():
    """A bare Cnn14 of ours computes the STFT kernels and mel bank the published checkpoints carry."""
    from torchlibrosa.stft import LogmelFilterBank, Spectrogram

    for rate, (n_fft, hop, fmax) in {16000: (512, 160, 8000), 32000: (1024, 320, 16000)}.items():
        spec = Spectrogram(n_fft=n_fft, hop_length=hop, win_length=n_fft, window="hann", center=True,
                           pad_mode="reflect", freeze_parameters=True)
        mel = LogmelFilterBank(sr=rate, n_fft=n_fft, n_mels=64, fmin=50, fmax=fmax, ref=1.0, amin=1e-10,
                               top_db=None, freeze_parameters=True)
        real, imag, melw = frontend_kernels(rate)
        np.testing.assert_allclose(real, spec.stft.conv_real.weight.numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(imag, spec.stft.conv_imag.weight.numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(melw, mel.melW.numpy(), rtol=1e-6, atol=1e-9)


def test_embedding_matches_frechet_audio_distance(pann):
    audio = signal(2.0)
    ours = pann.emb(audio, SR)
    ref = upstream_run(pann.up16, fad_load(pann.root, audio, SR, 16000))["embedding"]
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (1, 2048)
    assert_close(ours, ref)
    print(f"pann-cnn14-16k-emb max relative error vs frechet_audio_distance: {max_rel(ours, ref):.3g}")


def test_classifier_logits_match_upstream(pann):
    audio = signal(2.0)  # shorter than the 10 s window: one window, the whole clip
    ours = pann.cls(audio, SR)
    ref = upstream_run(pann.up32, fad_load(pann.root, audio, SR, 32000))
    assert ours.shape == (1, 527)
    assert_close(ours, ref["logits"])
    probabilities = 1 / (1 + np.exp(-ours.astype(np.float64)))
    np.testing.assert_allclose(probabilities, ref["clipwise"], rtol=1e-5, atol=1e-6)
    print(f"pann-cnn14 logits max relative error vs upstream Cnn14: {max_rel(ours, ref['logits']):.3g}")


def test_classifier_windows_match_upstream_per_window(pann):
    cls = pann.cls.with_window(1.0, min_window_s=0.5)
    assert cls.net is pann.cls.net and cls.info.params["window_s"] == 1.0
    assert pann.cls.info.params["window_s"] == 10.0
    audio = signal(2.7, seed=3)  # two full 1 s windows and a 0.7 s tail (>= 0.5 s: kept, at its own length)
    ours = cls(audio, SR)
    wave = fad_load(pann.root, audio, SR, 32000)
    spans = [(0, 32000), (32000, 64000), (64000, len(wave))]
    ref = np.concatenate([upstream_run(pann.up32, wave[a:b])["logits"] for a, b in spans])
    assert ours.shape == (3, 527)
    assert_close(ours, ref)
    print(f"pann-cnn14 windowed logits max relative error: {max_rel(ours, ref):.3g}")


def test_window_counts(pann):
    cls = pann.cls.with_window(2.0)  # minimum 1 s
    n32 = lambda s: int(int(round(s * SR)) * (32000 / SR))  # noqa: E731  resampy's output length
    assert cls.windows(n32(1.5)) == [(0, n32(1.5))]  # shorter than a window: one window, its own length
    assert cls.windows(n32(4.5)) == [(0, 64000), (64000, 128000)]  # 0.5 s tail dropped
    assert cls.windows(n32(5.5)) == [(0, 64000), (64000, 128000), (128000, n32(5.5))]  # 1.5 s tail kept
    assert cls.windows(n32(20.0))[-1] == (576000, 640000)
    assert cls.windows(31999) == [] and cls.windows(32000) == [(0, 32000)]
    assert pann.cls.windows(n32(25.0)) == [(0, 320000), (320000, 640000), (640000, n32(25.0))]
    assert pann.emb.windows(10 ** 6) == [(0, 10 ** 6)]  # whole clip
    assert pann.cls.with_window(1.0)(signal(2.4, seed=1), SR).shape == (2, 527)  # 0.4 s tail dropped
    assert pann.emb(signal(1.2, seed=2)[:1, ::2], SR // 2).shape == (1, 2048)  # other rates, mono input
    assert pann.emb.with_window(1.0)(signal(2.2, seed=2), SR).shape == (2, 2048)  # 0.2 s tail dropped
    with pytest.raises(ValueError):
        pann.cls.with_window(0.5, min_window_s=1.0)


def test_shorter_than_minimum_raises(pann):
    for ex in (pann.emb, pann.cls):
        with pytest.raises(MetricError, match="shorter than"):
            ex(signal(0.5), SR)
        with pytest.raises(MetricError):
            ex(np.zeros((2, 0), np.float32), SR)


def test_downmix_and_determinism(pann):
    mono = signal(1.0, seed=4)[:1]
    np.testing.assert_array_equal(pann.emb(mono, SR), pann.emb(np.concatenate([mono, mono]), SR))


def test_missing_checkpoint_names_the_file(pann, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="Cnn14_16k_mAP=0.438.pth"):
        PannEmbedding(tmp_path)
    with pytest.raises(FileNotFoundError, match="Cnn14_mAP=0.431.pth"):
        PannClassifier(tmp_path / "nowhere" / FILE_32K)
    monkeypatch.setenv("VM_EVAL_WEIGHTS", str(tmp_path))
    with pytest.raises(W.WeightsMissing, match="Cnn14_mAP=0.431.pth"):
        W.require("pann-cnn14")


def test_wrong_variant_is_refused(pann, tmp_path):
    (tmp_path / FILE_16K).symlink_to(pann.p32 / FILE_32K)  # the 32 kHz weights under the 16 kHz name
    with pytest.raises(ValueError, match="does not fit Cnn14 at 16000 Hz"):
        PannEmbedding(tmp_path)


def test_identity_follows_the_weights(pann, tmp_path):
    state = {k: v.clone() for k, v in pann.up32.state_dict().items()}
    state["fc_audioset.bias"] += 0.5
    torch.save({"model": state}, tmp_path / FILE_32K)  # zip format, no training state: loads too
    changed = PannClassifier(tmp_path, device="cpu")
    assert changed.info.backbone["file"] == FILE_32K
    assert changed.info.backbone["sha256"] != pann.cls.info.backbone["sha256"]
    audio = signal(1.0, seed=5)
    np.testing.assert_allclose(changed(audio, SR) - pann.cls(audio, SR), 0.5, atol=1e-5)


def test_loader_reads_numpy1_training_state(tmp_path):
    """Released checkpoints were pickled under NumPy 1 ("numpy.core..." names): still a weights-only load."""
    ckpt = {"iteration": 1, "model": {"module.fc1.bias": torch.arange(3.0)},
            "sampler": {"indexes_per_class": [np.arange(4)], "queue": [np.int64(3)]}}
    torch.save(ckpt, tmp_path / "new.pth")
    with zipfile.ZipFile(tmp_path / "new.pth") as zin, zipfile.ZipFile(tmp_path / "old.pth", "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                data = data.replace(b"numpy._core", b"numpy.core")
            zout.writestr(item, data)
    assert b"numpy.core.multiarray" in zipfile.ZipFile(tmp_path / "old.pth").read("new/data.pkl")
    for name in ("new.pth", "old.pth"):
        state = read_state_dict(tmp_path / name)
        assert list(state) == ["fc1.bias"]  # a DataParallel "module." prefix is dropped
        torch.testing.assert_close(state["fc1.bias"], torch.arange(3.0))


def test_bare_module_layout_matches_upstream(pann):
    for rate, up in ((16000, pann.up16), (32000, pann.up32)):
        with torch.device("meta"):
            ours = Cnn14(rate)
        assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
            {k: tuple(v.shape) for k, v in up.state_dict().items()}
