"""FD-PaSST, FD-OpenL3 and FAD-MERT: each backbone against its reference pipeline, on random weights written under
the upstream file names and found through vm_eval.weights, and the Frechet distance on their embeddings.

Importable here: hear21passt (PaSST network and front end), torchopenl3 (a torch port of the OpenL3 network; the
network test is skipped without it), transformers (HubertModel, Wav2Vec2FeatureExtractor), torchaudio, soundfile,
pyloudnorm, soxr, resampy, librosa. Not importable: openl3 (TensorFlow; its build downloads the weights),
stable-audio-metrics and av-benchmark (no packages), fadtk (pins numpy<2, transformers<5). Their steps are replayed
from their source, each with the library call it makes:
- FD-PaSST: av-benchmark ``av_bench/data/audio_dataset.py`` AudioDataset.read_from_file, ``av_bench/extract.py``
  (pad or cut to 320 000 samples, ``get_basic_model(mode="all")`` output ``[:, 527:]``);
- FD-OpenL3: stable-audio-metrics ``src/openl3_fd.py`` extract_embeddings (peak -1 dB, soxr to 44.1 kHz, L and R),
  openl3 0.4.2 ``core._preprocess_audio_batch`` (resampy, centre, pad, frame) and the kapre 0.3.x front end as
  openl3's ``tests/migration/README.md`` writes it with librosa (``_mel_frontend_v1_2``);
- FAD-MERT: fadtk ``fad.py`` load_audio (torchaudio Resample, PCM_S16 WAV through soundfile), ``ModelLoader.load_wav``
  and ``MERTModel._get_embedding`` (processor, all hidden states stacked, layer index, float16).
Relative error = max |ours - reference| / max |reference|.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("hear21passt")
pytest.importorskip("h5py")
pytest.importorskip("transformers")

from backbone_helpers import isolate_weights, max_rel, signal  # noqa: E402
from metrics.backbones import checkpoint_identity  # noqa: E402
from metrics.base import MetricError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_blas_thread")
SR = 44_100


# ------------------------------------------------------------------------------ random checkpoints, upstream layouts
def write_openl3_h5(path, seed: int = 0) -> list[list[np.ndarray]]:
    """Random OpenL3 mel256 weights as openl3's Keras HDF5 weights file (gzip when the name ends in .gz): root
    ``layer_names`` in model order, weightless layers included, each layer's ``weight_names`` in Keras order.
    Returns the weights of the layers that have any, in order."""
    import h5py

    from metrics.backbones.openl3 import FILTERS, POOL_AFTER

    rng = np.random.default_rng(seed)
    names, layers, buf = [], [], io.BytesIO()
    with h5py.File(buf, "w") as f:
        def layer(name: str, weights: dict[str, np.ndarray]) -> None:
            g = f.create_group(name)
            keys = [f"{name}/{k}:0" for k in weights]
            for k, v in zip(keys, weights.values()):
                g.create_dataset(k, data=v.astype(np.float32))
            g.attrs["weight_names"] = [k.encode() for k in keys]
            names.append(name)
            if weights:
                layers.append([v.astype(np.float32) for v in weights.values()])

        def norm(name: str, c: int) -> None:
            layer(name, {"gamma": 1 + 0.1 * rng.standard_normal(c), "beta": 0.1 * rng.standard_normal(c),
                         "moving_mean": 0.1 * rng.standard_normal(c), "moving_variance": rng.uniform(0.5, 2.0, c)})

        layer("input_1", {})
        norm("batch_normalization_1", 1)
        for k, (c_in, c_out) in enumerate(zip((1,) + FILTERS[:-1], FILTERS)):
            layer("audio_embedding_layer" if k == len(FILTERS) - 1 else f"conv2d_{k + 1}",
                  {"kernel": rng.standard_normal((3, 3, c_in, c_out)) * np.sqrt(2.0 / (9 * c_in)),
                   "bias": 0.01 * rng.standard_normal(c_out)})
            if k < len(FILTERS) - 1:
                norm(f"batch_normalization_{k + 2}", c_out)
                layer(f"activation_{k + 1}", {})
            if k in POOL_AFTER:
                layer(f"max_pooling2d_{POOL_AFTER.index(k) + 1}", {})
        f.attrs["layer_names"] = [n.encode() for n in names]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(buf.getvalue(), compresslevel=1) if path.name.endswith(".gz") else buf.getvalue())
    return layers


MERT_TINY = dict(hidden_size=32, num_hidden_layers=12, num_attention_heads=4, intermediate_size=64,
                 conv_dim=[16] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)


def write_mert_folder(folder, seed: int = 0, **sizes):
    """A random MERT checkpoint folder as the m-a-p hub repository holds it: config.json of model_type mert_model
    (MERT-v1 defaults of configuration_MERT.py, sizes overridden), preprocessor_config.json and pytorch_model.bin
    with the legacy weight-norm names (weight_g, weight_v) of a transformers-4.25 save. Returns the in-memory
    HubertModel holding the same weights."""
    from transformers import HubertConfig, HubertModel

    cfg = dict(vocab_size=32, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
               hidden_act="gelu", feat_proj_layer_norm=True, layer_norm_eps=1e-5, feat_extract_norm="group",
               feat_extract_activation="gelu", conv_dim=[512] * 7, conv_stride=[5, 2, 2, 2, 2, 2, 2],
               conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_bias=False, num_conv_pos_embeddings=128,
               num_conv_pos_embedding_groups=16, do_stable_layer_norm=False, mask_time_prob=0.05)
    cfg.update(sizes)
    torch.manual_seed(seed)
    model = HubertModel(HubertConfig(**cfg)).eval()
    state = {k.replace("parametrizations.weight.original0", "weight_g")
              .replace("parametrizations.weight.original1", "weight_v"): v for k, v in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps({
        **cfg, "model_type": "mert_model", "architectures": ["MERTModel"],
        "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"},
        "feature_extractor_cqt": False, "feature_extractor_cqt_bins": 336, "deepnorm": False,
        "attention_relax": -1.0, "sample_rate": 24000}))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
        "padding_side": "right", "padding_value": 0, "return_attention_mask": True, "sampling_rate": 24000}))
    return model


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """All three checkpoints under their published names in an isolated weights folder."""
    from test_backbone_passt import random_passt

    from metrics.backbones import passt as P
    from metrics.backbones.openl3 import CHECKPOINT_FILES
    from vm_eval.weights import KNOWN

    tmp = tmp_path_factory.mktemp("fd-backbones")
    mp = pytest.MonkeyPatch()
    isolate_weights(mp, tmp)
    root = tmp / "weights"
    passt_net = random_passt(0).eval()
    (root / "passt").mkdir(parents=True)
    torch.save(passt_net.state_dict(), root / "passt" / P.CHECKPOINT_FILE)
    assert KNOWN["openl3-mel256-music"].files[0] == CHECKPOINT_FILES[0]
    l3_layers = write_openl3_h5(root / "openl3-mel256-music" / CHECKPOINT_FILES[0])
    mert = write_mert_folder(root / "mert-v1-95m", **MERT_TINY)
    yield {"root": root, "passt": passt_net, "openl3": l3_layers, "mert": mert}
    mp.undo()


# ---------------------------------------------------------------------------------------------------- FD-PaSST
@pytest.fixture(scope="module")
def passt_emb(weights):
    from metrics.backbones.passt import PasstEmbedding
    from vm_eval.weights import require

    return PasstEmbedding(require("passt"), device="cpu")  # parity on CPU (built metrics take a GPU when there is one)


def av_benchmark_input(audio: np.ndarray, sr: int, audio_length_s: float = 10.0):
    """AudioDataset.read_from_file (mono mean, DC removed, torchaudio Resample) + extract's pad / cut to 320000."""
    import torchaudio

    w = torch.from_numpy(audio).mean(dim=0)
    w = w - w.mean()
    w = torchaudio.transforms.Resample(sr, 32000)(w)
    w = w[:int(32000 * audio_length_s)].unsqueeze(0)
    return w[..., :320000] if w.size(-1) >= 320000 else torch.nn.functional.pad(w, (0, 320000 - w.size(-1)))


@pytest.mark.parametrize("seconds", [2.0, 11.5])
def test_passt_input_is_av_benchmarks(passt_emb, seconds):
    audio = signal(seconds, seed=3) + 0.05  # a DC offset, which av-benchmark removes
    assert torch.equal(passt_emb.prepare(audio, SR)[None], av_benchmark_input(audio, SR))


def test_passt_embedding_matches_av_benchmark(weights, passt_emb):
    """The features of mode="all". On 1 s of input: the 10 s input prepare() gives (tested above) costs ten times the
    compute and goes through the same code."""
    from hear21passt.models.preprocess import AugmentMelSTFT
    from hear21passt.wrapper import PasstBasicWrapper

    with contextlib.redirect_stdout(io.StringIO()):  # what hear21passt.base.get_basic_model(mode="all") builds
        mel = AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=48, timem=192,
                             htk=False, fmin=0.0, fmax=None, norm=1, fmin_aug_range=10, fmax_aug_range=2000)
    upstream = PasstBasicWrapper(mel=mel, net=weights["passt"], mode="all").eval()
    wav = torch.from_numpy(signal(1.0, sr=32000, seed=4)[0])[None]
    mine = passt_emb.embed(wav)
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        ref = upstream(wav)[:, 527:].numpy()
    assert mine.shape == ref.shape == (1, 768) and mine.dtype == np.float32
    err = max_rel(mine, ref)
    print(f"PaSST embedding: max relative error {err:.2e}")
    assert err < 1e-5


def test_passt_embedding_identity(weights, passt_emb):
    from metrics.backbones.passt import PasstEmbedding

    assert passt_emb.info.name == "passt-embedding" and passt_emb.info.sample_rate is None
    assert passt_emb.info.params["audio_length_s"] == 10.0
    assert passt_emb.info.backbone == checkpoint_identity("passt", weights["root"] / "passt" /
                                                          passt_emb.path.name)
    with pytest.raises(MetricError):
        passt_emb.prepare(np.zeros((2, 0), np.float32), SR)
    with pytest.raises(ValueError, match="audio_length_s"):
        PasstEmbedding(passt_emb.path, audio_length_s=12.0)


# ---------------------------------------------------------------------------------------------------- FD-OpenL3
@pytest.fixture(scope="module")
def l3(weights):
    from metrics.backbones.openl3 import OpenL3Embedding
    from vm_eval.weights import require

    return OpenL3Embedding(require("openl3-mel256-music"), device="cpu")


def kapre_v2_mel(frame: np.ndarray) -> np.ndarray:
    """openl3 tests/migration/README.md ``_mel_frontend_v1_2`` (kapre 0.3.x right padding, kapre 0.1.4 dB), mel256."""
    import librosa

    a = np.pad(frame, (0, 2048 - 1))
    s = librosa.feature.melspectrogram(y=a, sr=48000, n_mels=256, n_fft=2048, hop_length=242, center=False, power=1.0)
    s = librosa.power_to_db(s, ref=1.0, amin=1e-10, top_db=80.0)
    return s - s.max()


def openl3_frames(y48: np.ndarray, hop_size: float = 0.5) -> np.ndarray:
    """openl3 0.4.2 core._preprocess_audio_batch after resampling (center=True)."""
    frame_len, hop_len = 48000, int(hop_size * 48000)
    audio = np.pad(y48, (int(frame_len / 2.0), 0), mode="constant", constant_values=0)
    n = audio.size
    pad = frame_len - n if n < frame_len else int(np.ceil((n - frame_len) / float(hop_len))) * hop_len - (n - frame_len)
    if pad > 0:
        audio = np.pad(audio, (0, pad), mode="constant", constant_values=0)
    n_frames = 1 + int((len(audio) - frame_len) / float(hop_len))
    return np.lib.stride_tricks.as_strided(audio, shape=(frame_len, n_frames),
                                           strides=(audio.itemsize, hop_len * audio.itemsize)).T


def sam_openl3(net, audio: np.ndarray, sr: int) -> np.ndarray:
    """stable-audio-metrics extract_embeddings (channels=2, samplingrate=44100, hop 0.5), for one file."""
    import pyloudnorm as pyln
    import resampy
    import soxr

    a = audio.T if audio.shape[0] > 1 else audio[0]  # librosa.load(sr=None, mono=False) then .T
    a = pyln.normalize.peak(a, -1.0).astype(np.float32)
    a = soxr.resample(a, sr, 44100)
    channels = [a, a] if a.ndim == 1 else [a[:, 0], a[:, 1]]
    out = []
    for ch in channels:
        y48 = resampy.resample(ch, sr_orig=44100, sr_new=48000, filter="kaiser_best")
        specs = np.stack([kapre_v2_mel(f) for f in openl3_frames(y48)])[:, None].astype(np.float32)  # float32 STFT
        with torch.no_grad():
            out.append(net(torch.from_numpy(specs)).numpy())
    return np.concatenate(out, axis=1)


def test_openl3_weights_load_in_keras_order(weights, l3):
    layers = weights["openl3"]
    assert len(layers) == 16  # 8 batch norms + 8 convolutions
    np.testing.assert_array_equal(l3.net.input_norm.running_var.numpy(), layers[0][3])
    np.testing.assert_array_equal(l3.net.convs[0].weight.numpy(), np.transpose(layers[1][0], (3, 2, 0, 1)))
    np.testing.assert_array_equal(l3.net.convs[-1].bias.numpy(), layers[-1][1])
    np.testing.assert_array_equal(l3.net.norms[-1].weight.numpy(), layers[-2][0])


def test_openl3_network_matches_torchopenl3(weights, l3):
    """Our network body against torchopenl3's port of the same Keras graph, same weights, same input images."""
    models = pytest.importorskip("torchopenl3.models")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its own (unused here) HTK mel basis warns about empty filters
        theirs = models.PytorchOpenl3(content_type="music", input_repr="mel256", embedding_size=512).eval()
    names = [n for i in range(1, 9) for n in (f"batch_normalization_{i}", f"conv2d_{i}" if i < 8
                                                 else "audio_embedding_layer")]
    state = {}
    for name, w in zip(names, weights["openl3"]):
        if name.startswith("batch"):
            state.update({f"{name}.{k}": torch.from_numpy(v) for k, v in
                          zip(("weight", "bias", "running_mean", "running_var"), w)})
        else:
            state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(np.transpose(w[0], (3, 2, 0, 1))))
            state[f"{name}.bias"] = torch.from_numpy(w[1])
    result = theirs.load_state_dict(state, strict=False)
    assert not result.unexpected_keys and all(k.startswith("speclayer.") for k in result.missing_keys)
    theirs.speclayer = torch.nn.Identity()  # feed both the same front-end output
    frames = np.stack([signal(1.0, sr=48000, seed=s)[0] for s in range(2)])
    specs = l3.front(torch.from_numpy(frames))
    with torch.no_grad():
        mine, ref = l3.net(specs), theirs(specs.squeeze(1).unsqueeze(-1))
    assert mine.shape == ref.shape == (2, 512)
    err = max_rel(mine.numpy(), ref.numpy())
    print(f"OpenL3 network vs torchopenl3: max relative error {err:.2e}")
    assert err < 1e-5


def test_openl3_front_end_matches_kapre_v2(l3):
    frames = np.stack([signal(1.0, sr=48000, seed=s)[s % 2] for s in range(2)])
    mine = l3.front(torch.from_numpy(frames)).numpy()
    assert mine.shape == (2, 1, 256, 199)
    for m, f in zip(mine, frames):
        ref = kapre_v2_mel(f)
        err = float(np.abs(m[0] - ref).max())
        print(f"OpenL3 front end vs librosa: max abs difference {err:.2e} dB")
        assert err < 2e-3 and m.max() == 0.0 and m.min() >= -80.0


@pytest.mark.parametrize("seconds, sr, channels", [(0.6, 44_100, 2), (0.4, 48_000, 1), (0.5, 32_000, 2)])
def test_openl3_embeddings_match_stable_audio_metrics(l3, seconds, sr, channels):
    audio = signal(seconds, sr=sr, seed=5)[:channels]
    mine = l3(audio, sr)
    ref = sam_openl3(l3.net, audio, sr)
    assert mine.shape == ref.shape and mine.shape[1] == 1024 and mine.dtype == np.float32
    err = max_rel(mine, ref)
    print(f"OpenL3 {seconds} s @ {sr} Hz x{channels}: {mine.shape[0]} frames, max relative error {err:.2e}")
    assert err < 1e-4
    if channels == 1:  # mono: the same embedding in both halves
        assert np.array_equal(mine[:, :512], mine[:, 512:])


@pytest.mark.parametrize("seconds, frames", [(0.3, 1), (0.5, 1), (0.6, 2), (1.0, 2), (2.3, 5)])
def test_openl3_frame_count(l3, seconds, frames):
    from metrics.backbones.openl3 import frame_audio

    n48 = int(round(seconds * 48000))
    assert frame_audio(np.zeros(n48, np.float32), l3.hop).shape == (frames, 48000)
    assert openl3_frames(np.zeros(n48, np.float32)).shape == (frames, 48000)


def test_openl3_refuses_what_it_cannot_embed(weights, l3, tmp_path):
    from metrics.backbones.openl3 import CHECKPOINT_FILES, OpenL3Embedding

    with pytest.raises(MetricError, match="silent"):
        l3(np.zeros((2, 4410), np.float32), SR)
    with pytest.raises(FileNotFoundError, match=CHECKPOINT_FILES[0].replace(".", r"\.")):
        OpenL3Embedding(tmp_path)
    short = tmp_path / CHECKPOINT_FILES[1]
    layers = write_openl3_h5(short)
    assert len(layers) == 16
    import h5py

    with h5py.File(short, "a") as f:  # drop the last convolution: 15 layers with weights
        f.attrs["layer_names"] = list(f.attrs["layer_names"])[:-1]
    with pytest.raises(ValueError, match="16 layers"):
        OpenL3Embedding(short)
    mono = OpenL3Embedding(weights["root"] / "openl3-mel256-music", channels=1)  # the channel mean, 512-d
    assert mono(signal(0.4, seed=1), SR).shape == (1, 512)


# ---------------------------------------------------------------------------------------------------- FAD-MERT
@pytest.fixture(scope="module")
def mert(weights):
    from metrics.backbones.mert import MertEmbedding
    from vm_eval.weights import require

    return MertEmbedding(require("mert-v1-95m"), device="cpu")  # layer 12 of a 12-layer model, as MERT-v1-95M


def fadtk_mert(model, folder, audio: np.ndarray, sr: int, layer: int, tmp_path) -> np.ndarray:
    """fadtk load_audio (TORCHAUDIO_RESAMPLING, PCM_S16 WAV via soundfile) + load_wav + MERTModel._get_embedding."""
    import soundfile
    import torchaudio
    from transformers import Wav2Vec2FeatureExtractor

    x = torch.mean(torch.from_numpy(audio), 0).unsqueeze(0)
    y = torchaudio.transforms.Resample(sr, 24000, lowpass_filter_width=64, rolloff=0.9475937167399596,
                                       resampling_method="sinc_interp_kaiser", beta=14.769656459379492)(x)
    wav = tmp_path / "convert.wav"
    soundfile.write(wav, y.numpy().T, 24000, subtype="PCM_16")  # torchaudio.save(backend="soundfile", PCM_S 16)
    data, _ = soundfile.read(wav, dtype="int16")
    data = data / 32768.0
    processor = Wav2Vec2FeatureExtractor.from_pretrained(str(folder))
    inputs = processor(data, sampling_rate=24000, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
        out = torch.stack(out.hidden_states).squeeze()[layer]
    return out.numpy().astype(np.float16)


def test_mert_frames_match_fadtk(weights, mert, tmp_path):
    audio = signal(1.7, seed=6)
    audio[0, :200] = 1.2  # clipped samples: the int16 round trip saturates them as libsndfile does
    mine = mert(audio, SR)
    ref = fadtk_mert(weights["mert"], weights["root"] / "mert-v1-95m", audio, SR, MERT_TINY["num_hidden_layers"],
                     tmp_path)
    assert mine.dtype == np.float32 and mine.shape == ref.shape == (127, MERT_TINY["hidden_size"])  # 75 Hz
    err = max_rel(mine, ref.astype(np.float32))
    print(f"MERT frames vs fadtk: max relative error {err:.2e}")
    assert err < 1e-6


def test_mert_int16_round_trip_is_libsndfiles(tmp_path):
    import soundfile

    from metrics.backbones.mert import int16_round_trip

    x = np.concatenate([np.random.default_rng(0).uniform(-1.3, 1.3, 50_000), [1.0, -1.0, 0.5, 2.5 / 32768]])
    soundfile.write(tmp_path / "q.wav", x.astype(np.float32), 24000, subtype="PCM_16")
    np.testing.assert_array_equal(int16_round_trip(x.astype(np.float32)),
                                  soundfile.read(tmp_path / "q.wav", dtype="int16")[0] / 32768.0)


@pytest.mark.parametrize("key, value", [("feature_extractor_cqt", True), ("deepnorm", True), ("attention_relax", 4.0)])
def test_mert_refuses_options_only_remote_code_has(weights, tmp_path, key, value):
    import shutil

    from metrics.backbones.mert import MertEmbedding

    folder = tmp_path / "mert"
    shutil.copytree(weights["root"] / "mert-v1-95m", folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, key: value}))
    with pytest.raises(NotImplementedError, match=key):
        MertEmbedding(folder)


def test_mert_checkpoint_must_load_completely(weights, tmp_path):
    import shutil

    from metrics.backbones.mert import FILES, MertEmbedding

    for change in ("drop", "extra"):
        folder = tmp_path / change
        shutil.copytree(weights["root"] / "mert-v1-95m", folder)
        state = torch.load(folder / "pytorch_model.bin", weights_only=True)
        if change == "drop":
            state.pop("encoder.layers.0.attention.k_proj.weight")
        else:
            state["feature_extractor_cqt.kernels"] = torch.zeros(3)
        torch.save(state, folder / "pytorch_model.bin")
        with pytest.raises(ValueError, match="does not load"):
            MertEmbedding(folder)
    with pytest.raises(FileNotFoundError, match=FILES[2]):
        MertEmbedding(tmp_path / "nowhere")


def test_mert_identity_and_limits(weights, mert):
    from metrics.backbones.mert import MertEmbedding

    assert mert.info.name == "mert-frames" and mert.info.params["layer"] == MERT_TINY["num_hidden_layers"]
    assert mert.info.backbone == checkpoint_identity("mert-v1-95m", weights["root"] / "mert-v1-95m" /
                                                     "pytorch_model.bin")
    assert mert.min_samples == 400
    with pytest.raises(MetricError, match="shorter"):
        mert(signal(0.01, seed=1), SR)  # 240 samples at 24 kHz
    with pytest.raises(ValueError, match="layer"):
        MertEmbedding(weights["root"] / "mert-v1-95m", layer=MERT_TINY["num_hidden_layers"] + 1)


# ---------------------------------------------------------------------------------------------- registry and FD
NAMES = {"fd-passt": "passt", "fd-openl3-music-mel256-512": "openl3-mel256-music", "fad-mert-v1-95m": "mert-v1-95m"}


@pytest.fixture(scope="module")
def built(weights):
    """The three registered metrics, built as a run builds them (weights resolved by vm_eval.weights)."""
    from vm_eval.registries import METRICS
    from vm_eval.scoring.resolve import build

    return {name: build(METRICS.get(name)) for name in NAMES}


def test_registered_and_built_under_their_names(built):
    for name, ckpt in NAMES.items():
        info = built[name].info
        assert info.name == name and info.kind == "set" and info.higher_is_better is False and info.standard
        assert info.backbone["name"] == ckpt and set(built[name].inputs) == {"audio", "reference"}
        assert "reference" in built[name].inputs["audio"].info.params


def test_listed_by_vm_eval_metrics_when_weights_are_absent(tmp_path, monkeypatch, capsys):
    from vm_eval.cli import main

    isolate_weights(monkeypatch, tmp_path)
    assert main(["metrics"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, ckpt in NAMES.items():
        i = next(i for i, ln in enumerate(lines) if ln.split()[1:2] == [name])
        assert lines[i].startswith("NO ") and f"weights:{ckpt}" in lines[i + 1]


def scipy_fd(gen: np.ndarray, ref: np.ndarray) -> float:
    """stable-audio-metrics / av-benchmark / fadtk: np.cov statistics and scipy.linalg.sqrtm (pytorch-fid form)."""
    from scipy import linalg

    mu1, s1, mu2, s2 = gen.mean(0), np.cov(gen, rowvar=False), ref.mean(0), np.cov(ref, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fad_mert_on_clips_matches_the_reference_formula(built):
    metric = built["fad-mert-v1-95m"]
    ext = metric.inputs["audio"]
    gen = {f"g{i}": {"audio": ext(signal(1.0, seed=10 + i), SR)} for i in range(3)}
    ref = [ext(0.5 * signal(1.0, seed=20 + i)[::-1].copy(), SR) for i in range(3)]
    score = metric.metric.score_set(gen, metric.metric.reference_statistics(ref), seed=0)
    pooled = np.concatenate([g["audio"] for g in gen.values()])
    assert score.n == 3 and score.extra["frames"] == pooled.shape[0] == 3 * 74
    assert score.value == pytest.approx(scipy_fd(pooled, np.concatenate(ref)), rel=1e-6)


def test_fd_openl3_of_mono_clips_is_twice_the_fd_of_one_channel(built):
    """L = R for mono clips: [e, e] rows double every term of the squared distance (hand-derived)."""
    from metrics.frechet import frechet_distance, gaussian_stats

    metric = built["fd-openl3-music-mel256-512"]
    ext = metric.inputs["audio"]
    gen = {f"g{i}": {"audio": ext(signal(0.4, seed=30 + i)[:1], SR)} for i in range(3)}  # one frame each
    ref = [ext(signal(0.4, seed=40 + i)[1:], SR) for i in range(3)]
    score = metric.metric.score_set(gen, metric.metric.reference_statistics(ref), seed=0)
    half = frechet_distance(*gaussian_stats(np.concatenate([g["audio"][:, :512] for g in gen.values()])),
                            *gaussian_stats(np.concatenate([r[:, :512] for r in ref])))
    assert score.value == pytest.approx(2 * half, rel=1e-5)  # 3 frames in 512 / 1024 dims: rank-deficient routes


def test_fd_passt_is_a_distance_between_clip_vectors(built):
    """One row per clip (768-d from PaSST; 16-d here, so that 60 clips make a full-rank covariance): the FD of the
    stacked rows; no per-clip FD (one row each)."""
    metric = built["fd-passt"].metric
    rng = np.random.default_rng(0)
    gen = {f"g{i:03d}": {"audio": rng.standard_normal((1, 16)).astype(np.float32) + 0.3} for i in range(60)}
    ref = [rng.standard_normal((1, 16)).astype(np.float32) for _ in range(60)]
    score = metric.score_set(gen, metric.reference_statistics(ref), seed=0)
    assert score.n == 60 and score.n_reference == 60 and score.per_clip == {}
    assert score.value == pytest.approx(scipy_fd(np.concatenate([g["audio"] for g in gen.values()]),
                                                 np.concatenate(ref)), rel=1e-6)
