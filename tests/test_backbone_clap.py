"""LAION-CLAP audio and text extractors against laion_clap's own CLAP_Module, on random weights.

laion_clap's `CLAP_Module(amodel="HTSAT-tiny")` is built with seeded random weights. Its constructor would
fetch roberta-base from the hub (`RobertaModel.from_pretrained`); the test swaps in a small random RoBERTa of
the same family (hidden size 768, as CLAP's text projection expects), since only the layout matters here. The
weights are saved in the published checkpoint layout (`{"state_dict": {"module.<key>": tensor}}`, with the
`text_branch.embeddings.position_ids` entry that laion_clap's loader deletes, and numpy scalars beside the
tensors) as `630k-audioset-best.pt` in a temporary weights folder; `vm_eval.weights.require` finds it,
upstream loads it with its own `load_ckpt`, ours with `ClapAudio` / `ClapText`.

Upstream audio path: `get_audio_embedding_from_filelist` (librosa.load at 48 kHz, int16 quantisation,
repeat-pad) on a WAV file of the 44.1 kHz stereo signal when it is at most one window long, and
`get_audio_embedding_from_data` on upstream-resampled 10 s windows when it is longer (upstream would randomly
crop it). Text: upstream `get_text_embedding` with our tokenizer passed in (the real roberta-base tokenizer
files are not available offline, so a small byte-level BPE vocabulary written by the test stands in). Relative
error = max |ours - upstream| / max |upstream|.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("laion_clap")
pytest.importorskip("librosa")
sf = pytest.importorskip("soundfile")

from backbone_helpers import isolate_weights, max_rel  # noqa: E402
from metrics.backbones import checkpoint_identity  # noqa: E402
from metrics.backbones import clap as C  # noqa: E402
from metrics.base import MetricError  # noqa: E402

RTOL = 1e-5
SR_IN = 44_100
FILE = "630k-audioset-best.pt"
NAME = "clap-630k-audioset"
SAVED: dict = {}


def stereo(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR_IN))
    t = np.arange(n) / SR_IN
    tone = 0.3 * np.sin(2 * np.pi * 330.0 * t) * (1 + np.sin(2 * np.pi * 0.7 * t))
    return (np.stack([tone, -0.5 * tone]) + 0.1 * rng.standard_normal((2, n))).astype(np.float32)


# ------------------------------------------------------------------------------------------------ tokenizer
def byte_level_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (GPT-2's table)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_toy_tokenizer(folder) -> int:
    """vocab.json + merges.txt of a tiny byte-level BPE with roberta's special tokens; returns its size."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for ch in byte_level_alphabet():
        vocab.setdefault(ch, len(vocab))
    merges = [("Ġ", "p"), ("i", "a"), ("n", "o"), ("Ġp", "ia"), ("Ġpia", "no"), ("e", "r"), ("Ġ", "d")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<mask>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                       encoding="utf-8")
    return len(vocab)


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def env(tmp_path_factory):
    import laion_clap  # HF_HUB_OFFLINE=1 (conftest): its import-time tokenizer loads do not hang
    from transformers import RobertaConfig, RobertaModel

    import clap_module.model as clap_model  # laion_clap put its own folder on sys.path

    tmp = tmp_path_factory.mktemp("clap")
    mp = pytest.MonkeyPatch()
    isolate_weights(mp, tmp)
    n_vocab = write_toy_tokenizer(tmp / "tokenizer")

    class SmallRoberta(RobertaModel):
        @classmethod
        def from_pretrained(cls, name, *args, **kwargs):  # instead of downloading roberta-base
            return RobertaModel(RobertaConfig(
                vocab_size=n_vocab + 3, hidden_size=768, num_hidden_layers=2, num_attention_heads=12,
                intermediate_size=256, max_position_embeddings=80, type_vocab_size=1, layer_norm_eps=1e-5,
                pad_token_id=1, bos_token_id=0, eos_token_id=2))

    mp.setattr(clap_model, "RobertaModel", SmallRoberta)
    torch.manual_seed(0)
    ref = laion_clap.CLAP_Module(enable_fusion=False, amodel="HTSAT-tiny", device="cpu")
    with torch.no_grad():
        for p in ref.model.parameters():
            p.add_(0.02 * torch.randn_like(p))
        bn = ref.model.audio_branch.bn0
        bn.running_mean.normal_(0.0, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    state = {f"module.{k}": v for k, v in ref.model.state_dict().items()}
    state.setdefault("module.text_branch.embeddings.position_ids", torch.arange(80).expand((1, -1)))
    folder = tmp / "weights" / NAME
    folder.mkdir(parents=True)
    torch.save({"epoch": 45, "state_dict": state, "best_metric": np.float64(0.5), "dim": np.int64(512)},
               folder / FILE)
    ref.load_ckpt(ckpt=str(folder / FILE), verbose=False)  # upstream's own loader reads the file back
    ref.model.eval()
    SAVED["ref"] = ref
    yield tmp
    mp.undo()


@pytest.fixture(scope="module")
def upstream(env):
    return SAVED["ref"]


@pytest.fixture(scope="module")
def ours(env):
    from vm_eval.weights import require

    return C.ClapAudio(require(NAME), device="cpu")


@pytest.fixture(scope="module")
def text(env):
    from vm_eval.weights import require

    return C.ClapText(require(NAME), tokenizer=env / "tokenizer", device="cpu")


# ---------------------------------------------------------------------------------------- audio parity
def test_short_clip_matches_upstream_file_pipeline(env, ours, upstream):
    """3 s of 44.1 kHz stereo: one window; upstream reads the WAV (librosa.load, sr=48000), repeat-pads."""
    audio = stereo(3.0, seed=1)
    wav = env / "short.wav"
    sf.write(wav, audio.T, SR_IN, subtype="FLOAT")
    ref = upstream.get_audio_embedding_from_filelist([str(wav)])
    mine = ours(audio, SR_IN)
    assert mine.shape == ref.shape == (1, 512)
    err = max_rel(mine, ref)
    print(f"clap audio 3 s (file pipeline): max relative error {err:.2e}")
    assert err < RTOL
    np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(mine, ours(audio, SR_IN))  # deterministic


def test_windows_match_upstream_per_window(env, ours, upstream):
    """12 s: a full 10 s window plus a 2 s tail, each compared with upstream get_audio_embedding_from_data."""
    import librosa

    audio = stereo(12.0, seed=2)
    wav = env / "long.wav"
    sf.write(wav, audio.T, SR_IN, subtype="FLOAT")
    y, _ = librosa.load(str(wav), sr=48000)  # upstream's resampling, as in get_audio_embedding_from_filelist
    np.testing.assert_array_equal(C.quantise_int16(y), ours.prepare(audio, SR_IN))
    ref = upstream.get_audio_embedding_from_data([y[:480000], y[480000:]])
    mine = ours(audio, SR_IN)
    assert mine.shape == ref.shape == (2, 512)
    err = max_rel(mine, ref)
    print(f"clap audio 12 s (2 windows): max relative error {err:.2e}")
    assert err < RTOL
    assert float(mine[0] @ mine[1]) < 0.999  # the random network does tell the windows apart
    clip = C.pool_windows(mine)  # what embed_clip returns
    expected = mine.mean(axis=0) / np.linalg.norm(mine.mean(axis=0))
    np.testing.assert_allclose(clip, expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------- audio behaviour
@pytest.mark.parametrize("seconds, hop, expected", [
    (0.5, 10.0, [(0.0, 0.5)]),  # shorter than a window: one window, repeat-padded
    (10.0, 10.0, [(0.0, 10.0)]),
    (10.5, 10.0, [(0.0, 10.0)]),  # 0.5 s tail < min_tail_s (1 s): dropped
    (25.0, 10.0, [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]),
    (12.5, 1.0, [(0.0, 10.0), (1.0, 11.0), (2.0, 12.0), (3.0, 12.5)]),
])
def test_window_spans(seconds, hop, expected):
    sr = C.SAMPLE_RATE
    spans = C.window_spans(int(seconds * sr), C.CLIP_SAMPLES, int(hop * sr), sr)
    assert [(s / sr, e / sr) for s, e in spans] == expected


def test_fill_matches_upstream_repeatpad():
    from laion_clap.training.data import get_audio_features

    seg = np.random.default_rng(3).standard_normal(70_001).astype(np.float32)
    up = get_audio_features({}, torch.from_numpy(seg), 480000, data_truncating="rand_trunc",
                            data_filling="repeatpad", audio_cfg={})["waveform"].numpy()
    np.testing.assert_array_equal(C.fill_window(seg, 480000, "repeatpad"), up)
    z = C.fill_window(seg, 480000, "zeropad")
    assert z.shape == (480000,) and not z[70_001:].any()


def test_quantisation_matches_upstream():
    from laion_clap.training.data import float32_to_int16, int16_to_float32

    y = np.random.default_rng(4).uniform(-1.2, 1.2, 10_000).astype(np.float32)
    np.testing.assert_array_equal(C.quantise_int16(y), int16_to_float32(float32_to_int16(y)))


def test_audio_input_forms(ours):
    audio = stereo(1.0, seed=5)
    mono = ours.prepare(audio[0], SR_IN)  # [n] is read as one channel
    assert mono.dtype == np.float32 and mono.shape == ours.prepare(audio, SR_IN).shape
    assert ours.prepare(mono, C.SAMPLE_RATE).shape == mono.shape  # no resampling at 48 kHz
    with pytest.raises(MetricError):
        ours(np.zeros((2, 0), np.float32), SR_IN)


def test_audio_info_and_identity(env, ours):
    path = env / "weights" / NAME / FILE
    assert ours.amodel == "HTSAT-tiny"
    assert ours.info.sample_rate is None and ours.info.mono is False
    assert ours.info.backbone == checkpoint_identity(NAME, path)
    assert ours.info.backbone["file"] == FILE
    assert ours.info.params["window_s"] == 10.0 and ours.info.params["fill"] == "repeatpad"


# ------------------------------------------------------------------------------------------------ checkpoints
def test_file_name_names_the_checkpoint_and_its_encoder(env, tmp_path):
    assert C.CHECKPOINTS["music_audioset_epoch_15_esc_90.14.pt"] == ("clap-music", "HTSAT-base")
    assert C.CHECKPOINTS[FILE] == (NAME, "HTSAT-tiny")
    # HTSAT-tiny weights under the music file name: the published music checkpoint is HTSAT-base, so refuse
    music = tmp_path / "music_audioset_epoch_15_esc_90.14.pt"
    music.symlink_to(env / "weights" / NAME / FILE)
    with pytest.raises(ValueError, match="HTSAT-base"):
        C.ClapAudio(music)
    with pytest.raises(ValueError, match="HTSAT-base"):
        C.ClapAudio(env / "weights" / NAME / FILE, amodel="HTSAT-base")


def test_identity_changes_with_the_weights(env, tmp_path):
    state = {f"module.{k}": v for k, v in SAVED["ref"].model.state_dict().items()}
    key = "module.audio_projection.2.bias"
    state[key] = state[key] + 1.0
    other = tmp_path / FILE
    torch.save({"state_dict": state}, other)
    a = checkpoint_identity(NAME, env / "weights" / NAME / FILE)
    b = checkpoint_identity(NAME, other)
    assert a["file"] == b["file"] and a["sha256"] != b["sha256"]


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"630k-audioset-best\.pt"):
        C.ClapAudio(tmp_path / FILE)
    with pytest.raises(FileNotFoundError, match=r"music_audioset_epoch_15_esc_90\.14\.pt"):
        C.ClapAudio(tmp_path)  # a folder without any published CLAP file
    with pytest.raises(NotImplementedError, match="fusion"):
        (tmp_path / "630k-audioset-fusion-best.pt").write_bytes(b"x")
        C.ClapAudio(tmp_path / "630k-audioset-fusion-best.pt")


# ------------------------------------------------------------------------------------------------ text
def test_text_matches_upstream(text, upstream):
    texts = ["a piano melody", "upbeat drums with bass", "piano"]
    tok = text.tokenize(texts)
    assert tok["input_ids"].shape == (3, 77)
    assert (tok["input_ids"][:, 0] == 0).all() and (tok["input_ids"][0, -1] == 1)  # <s> ... <pad>
    assert (tok["input_ids"] != 3).all()  # no <unk>: the toy vocabulary covers every byte
    mine = text(texts)
    ref = upstream.get_text_embedding(texts, tokenizer=text.tokenize)
    assert mine.shape == ref.shape == (3, 512)
    err = max_rel(mine, ref)
    print(f"clap text: max relative error {err:.2e}")
    assert err < RTOL
    long = text.tokenize(["piano " * 200])["input_ids"]
    assert long.shape == (1, 77) and long[0, -1] == 2  # truncated to 77 and closed with </s>


def test_text_info(env, text):
    assert text.info.backbone == checkpoint_identity(NAME, env / "weights" / NAME / FILE)
    assert len(text.info.params["tokenizer_sha256"]) == 64


def test_text_without_tokenizer_files_names_them(env, monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError, match=r"vocab\.json and merges\.txt"):
        C.ClapText(env / "weights" / NAME / FILE)
    with pytest.raises(FileNotFoundError, match=r"vocab\.json"):
        C.ClapText(env / "weights" / NAME / FILE, tokenizer=tmp_path)
